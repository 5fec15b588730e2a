//! Model test of the Raft-replica storage (`replica.rs`): random appends (every entry kind,
//! rising terms), truncations, purges (inside the log and past its end), commits and clean or
//! unclean restarts, checked after each step against a simple model, Kafka reads included.

use proptest::prelude::*;

use super::tests::{all, blank, data, ignore, membership, open, open_replica};
use super::*;

/// One step of the model test.
#[derive(Debug, Clone)]
enum Op {
    /// Entries: (kind 0 blank, 1 membership, 2+ data of that many - 1 records; term bump).
    Append(Vec<(u8, u8)>),
    /// Keep all but the last `n` entries (`None` at or past the first entry).
    Truncate(u64),
    /// Purge up to the entry `n` before the last (negative: past the end).
    Purge(i64),
    /// Commit the entry `n` before the last.
    Commit(u64),
    /// Reopen the engine, cleanly or not.
    Restart(bool),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => proptest::collection::vec((0u8..6, 0u8..3), 1..8).prop_map(Op::Append),
        1 => (0u64..12).prop_map(Op::Truncate),
        1 => (-3i64..30).prop_map(Op::Purge),
        1 => (0u64..5).prop_map(Op::Commit),
        1 => any::<bool>().prop_map(Op::Restart),
    ]
}

/// What the log should hold.
#[derive(Debug, Default)]
struct Model {
    /// (index, term, kind, base offset, next offset) after the purge point.
    entries: Vec<(u64, u64, EntryKind, i64, i64)>,
    purged: Option<Boundary>,
    epochs: Vec<EpochEntry>,
    term: u64,
    committed: i64,
}

impl Model {
    fn next_index(&self) -> u64 {
        self.entries
            .last()
            .map(|e| e.0 + 1)
            .or(self.purged.map(|b| b.last.index + 1))
            .unwrap_or(0)
    }
    fn next_offset(&self) -> i64 {
        self.entries
            .last()
            .map(|e| e.4)
            .or(self.purged.map(|b| b.next_offset))
            .unwrap_or(0)
    }
}

fn run_model(ops: Vec<Op>) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let dir = tempfile::tempdir().unwrap();
        let (mut engine, mut replica) = open_replica(dir.path(), FlushMode::Os, 4096).await;
        let mut model = Model::default();
        for op in ops {
            match op {
                Op::Append(specs) => {
                    let mut entries = vec![];
                    for (kind, bump) in specs {
                        model.term += u64::from(bump);
                        let index = model.next_index();
                        let base = model.next_offset();
                        let (entry, kind, width) = match kind {
                            0 => (blank(index, model.term), EntryKind::Blank, 0),
                            1 => (
                                membership(index, model.term, b"m"),
                                EntryKind::Membership,
                                0,
                            ),
                            n => (
                                data(index, model.term, usize::from(n - 1)),
                                EntryKind::Data,
                                i64::from(n - 1),
                            ),
                        };
                        if model.epochs.last().is_none_or(|e| model.term > e.term) {
                            model.epochs.push(EpochEntry {
                                term: model.term,
                                first_index: index,
                                first_offset: base,
                            });
                        }
                        model
                            .entries
                            .push((index, model.term, kind, base, base + width));
                        entries.push(entry);
                    }
                    replica.append(entries, ignore()).unwrap();
                }
                Op::Truncate(n) => {
                    let keep = model.entries.len().saturating_sub(n as usize);
                    let last = if keep == 0 {
                        model.purged.map(|b| b.last.index)
                    } else {
                        Some(model.entries[keep - 1].0)
                    };
                    replica.truncate_after(last).unwrap();
                    model.entries.truncate(keep);
                    let cut = model.next_index();
                    model.epochs.retain(|e| e.first_index < cut);
                    model.committed = model.committed.min(model.next_offset());
                }
                Op::Purge(n) => {
                    let boundary = if n < 0 || n as usize >= model.entries.len() {
                        if n >= 0 {
                            continue;
                        }
                        let index = model.next_index() + (-n) as u64 - 1;
                        Boundary {
                            last: EntryId {
                                index,
                                term: model.term + 1,
                            },
                            next_offset: model.next_offset() + 7,
                        }
                    } else {
                        let e = model.entries[model.entries.len() - 1 - n as usize];
                        Boundary {
                            last: EntryId {
                                index: e.0,
                                term: e.1,
                            },
                            next_offset: e.4,
                        }
                    };
                    replica.purge(boundary).unwrap();
                    let start = boundary.last.index + 1;
                    if start >= model.next_index() {
                        model.entries.clear();
                        model.epochs.clear();
                        model.term = model.term.max(boundary.last.term);
                        model.committed = boundary.next_offset;
                    } else {
                        model.entries.retain(|e| e.0 >= start);
                        if let Some(i) = model.epochs.iter().rposition(|e| e.first_index <= start) {
                            model.epochs.drain(..i);
                            model.epochs[0].first_index = start;
                            model.epochs[0].first_offset = boundary.next_offset;
                        }
                    }
                    model.purged = Some(boundary);
                }
                Op::Commit(n) => {
                    let Some(e) = model.entries.iter().rev().nth(n as usize).copied() else {
                        continue;
                    };
                    replica.commit(e.0).unwrap();
                    model.committed = model.committed.max(e.4);
                }
                Op::Restart(clean) => {
                    if clean {
                        engine.close().await.unwrap();
                    }
                    drop(replica);
                    drop(engine);
                    engine = open(dir.path(), FlushMode::Os, 4096);
                    replica = engine.replica("r", 0).unwrap();
                    model.committed = model.purged.map_or(0, |b| b.next_offset);
                }
            }
            // The log matches the model.
            let state = replica.state();
            let last = model
                .entries
                .last()
                .map(|e| EntryId {
                    index: e.0,
                    term: e.1,
                })
                .or(model.purged.map(|b| b.last));
            assert_eq!(state.last, last);
            assert_eq!(state.purged, model.purged.map(|b| b.last));
            assert_eq!(state.next_offset, model.next_offset());
            assert_eq!(state.committed_offset, model.committed, "{model:?}");
            let got: Vec<_> = all(&replica)
                .iter()
                .map(|e| (e.index, e.term, e.kind, e.base_offset, e.next_offset))
                .collect();
            assert_eq!(got, model.entries);
            assert_eq!(replica.leader_epochs(), model.epochs);
            // Kafka reads of everything committed: exactly the data entries, dense.
            let start = engine.partition_offsets("r", 0).unwrap().log_start;
            let mut offset = start;
            let mut data_seen = vec![];
            while offset < model.committed {
                let records = engine.read_raw("r", 0, offset, 1 << 20).unwrap().records;
                assert!(!records.is_empty());
                for (h, _) in batch::split_batches(records) {
                    assert!(!h.is_internal());
                    data_seen.push((h.base_offset, h.next_offset()));
                    offset = h.next_offset();
                }
            }
            let data_expected: Vec<(i64, i64)> = model
                .entries
                .iter()
                .filter(|e| e.2 == EntryKind::Data && e.4 <= model.committed)
                .map(|e| (e.3, e.4))
                .collect();
            assert_eq!(data_seen, data_expected);
        }
        engine.close().await.unwrap();
    });
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn replica_log_matches_a_model(ops in proptest::collection::vec(op(), 1..40)) {
        run_model(ops);
    }
}
