//! Tests of the Raft-replica storage (`replica.rs`): internal batches, lookups by index,
//! terms and epochs, restart, rolls, durability callbacks, truncation, purge, commit.

use std::path::Path;
use std::sync::{Arc, Mutex};

use bytes::{Bytes, BytesMut};
use proptest::prelude::*;

use super::*;
use crate::batch::ProducerFields;
use crate::config::{FlushPolicy, LogConfig, TopicConfig};
use crate::engine::LogEngine;
use crate::log::Record;
use crate::producer::Check;

pub(super) fn config(mode: FlushMode, segment_bytes: u64) -> LogConfig {
    LogConfig {
        flush: FlushPolicy {
            mode,
            interval_ms: 3_600_000,
            linger_us: 0,
        },
        segment_bytes,
        index_interval_bytes: 200,
        ..LogConfig::default()
    }
}

pub(super) fn open(dir: &Path, mode: FlushMode, segment_bytes: u64) -> Arc<LogEngine> {
    LogEngine::open(dir, config(mode, segment_bytes)).unwrap()
}

pub(super) async fn open_replica(
    dir: &Path,
    mode: FlushMode,
    segment_bytes: u64,
) -> (Arc<LogEngine>, ReplicaLog) {
    let engine = open(dir, mode, segment_bytes);
    engine.create_replicated_topic("r", 1, None).await.unwrap();
    let replica = engine.replica("r", 0).unwrap();
    (engine, replica)
}

pub(super) fn data_batch(pid: i64, seq: i32, n: usize) -> BytesMut {
    let records: Vec<Record> = (0..n)
        .map(|i| Record {
            partition: Some(0),
            key: Some(Bytes::from(format!("key-{i}"))),
            value: Some(Bytes::from(format!("value-{i}-{}", "x".repeat(50)))),
            headers: vec![],
            timestamp_ms: 5,
        })
        .collect();
    let refs: Vec<&Record> = records.iter().collect();
    let producer = if pid < 0 {
        ProducerFields::NONE
    } else {
        ProducerFields {
            producer_id: pid,
            producer_epoch: 0,
            base_sequence: seq,
        }
    };
    batch::encode(&refs, producer).unwrap()
}

pub(super) fn data(index: u64, term: u64, n: usize) -> Entry {
    Entry {
        index,
        term,
        payload: EntryPayload::Data(data_batch(-1, -1, n)),
    }
}

pub(super) fn blank(index: u64, term: u64) -> Entry {
    Entry {
        index,
        term,
        payload: EntryPayload::Blank,
    }
}

pub(super) fn membership(index: u64, term: u64, payload: &'static [u8]) -> Entry {
    Entry {
        index,
        term,
        payload: EntryPayload::Membership(Bytes::from_static(payload)),
    }
}

pub(super) fn ignore() -> OnDurable {
    Box::new(|_| {})
}

/// A callback and the receiver of its result.
pub(super) fn signal() -> (OnDurable, tokio::sync::oneshot::Receiver<Result<()>>) {
    let (tx, rx) = tokio::sync::oneshot::channel();
    (
        Box::new(move |r| {
            let _ = tx.send(r);
        }),
        rx,
    )
}

/// Appends and waits until durable.
pub(super) async fn append(replica: &ReplicaLog, entries: Vec<Entry>) {
    let (cb, rx) = signal();
    replica.append(entries, cb).unwrap();
    rx.await.unwrap().unwrap();
}

pub(super) fn all(replica: &ReplicaLog) -> Vec<StoredEntry> {
    let first = replica.state().purged.map_or(0, |p| p.index + 1);
    replica.entries(first..u64::MAX, usize::MAX).unwrap()
}

proptest! {
    #[test]
    fn internal_batches_round_trip_with_checked_crc(
        membership in any::<bool>(),
        payload in proptest::collection::vec(any::<u8>(), 0..300),
        base in 0i64..i64::MAX / 2,
        term in 0i32..i32::MAX,
        ts in any::<i64>(),
        flip in any::<usize>(),
    ) {
        let kind = if membership { InternalKind::Membership } else { InternalKind::Blank };
        let bytes = batch::encode_internal(kind, &payload, base, term, ts).unwrap().freeze();
        let h = BatchHeader::parse(&bytes).unwrap();
        prop_assert!(h.is_internal());
        prop_assert!(h.check().is_ok());
        prop_assert_eq!(h.total_len(), bytes.len());
        prop_assert_eq!((h.base_offset, h.next_offset()), (base, base));
        prop_assert_eq!(h.partition_leader_epoch, term);
        prop_assert_eq!((h.producer_id, h.producer_epoch, h.base_sequence), (-1, -1, -1));
        prop_assert_eq!((h.base_timestamp, h.max_timestamp), (ts, ts));
        prop_assert!(batch::crc_ok(&bytes));
        let (k, p) = batch::parse_internal(&bytes).unwrap();
        prop_assert_eq!(k, kind);
        prop_assert_eq!(&p[..], &payload[..]);
        prop_assert_eq!(batch::data_prefix_len(&bytes), 0);
        // Clients can never write one.
        prop_assert!(batch::validate_for_append(&bytes).is_err());
        // Any flipped bit in the CRC-covered part is detected.
        let mut bad = bytes.to_vec();
        let i = 21 + flip % (bad.len() - 21);
        bad[i] ^= 1;
        prop_assert!(!batch::crc_ok(&bad));
    }
}

#[tokio::test]
async fn entries_read_back_by_index_with_terms_kinds_and_dense_offsets() {
    let dir = tempfile::tempdir().unwrap();
    let (engine, replica) = open_replica(dir.path(), FlushMode::EveryAppend, 1 << 20).await;
    append(
        &replica,
        vec![
            blank(0, 1),
            data(1, 1, 3),
            membership(2, 1, b"{\"voters\":[1,2,3]}"),
            data(3, 2, 2),
            blank(4, 3),
            data(5, 3, 1),
        ],
    )
    .await;
    let stored = all(&replica);
    let got: Vec<(u64, u64, EntryKind, i64, i64)> = stored
        .iter()
        .map(|e| (e.index, e.term, e.kind, e.base_offset, e.next_offset))
        .collect();
    assert_eq!(
        got,
        vec![
            (0, 1, EntryKind::Blank, 0, 0),
            (1, 1, EntryKind::Data, 0, 3),
            (2, 1, EntryKind::Membership, 3, 3),
            (3, 2, EntryKind::Data, 3, 5),
            (4, 3, EntryKind::Blank, 5, 5),
            (5, 3, EntryKind::Data, 5, 6),
        ]
    );
    assert_eq!(
        stored[2].membership().unwrap(),
        Bytes::from_static(b"{\"voters\":[1,2,3]}")
    );
    assert_eq!(stored[1].membership(), None);
    assert_eq!(replica.entries(2..4, 1).unwrap().len(), 1, "at least one");
    assert_eq!(replica.entries(3..5, usize::MAX).unwrap().len(), 2);
    assert!(replica.entries(6..9, usize::MAX).unwrap().is_empty());
    assert_eq!(
        replica.leader_epochs(),
        vec![
            EpochEntry {
                term: 1,
                first_index: 0,
                first_offset: 0
            },
            EpochEntry {
                term: 2,
                first_index: 3,
                first_offset: 3
            },
            EpochEntry {
                term: 3,
                first_index: 4,
                first_offset: 5
            },
        ]
    );
    assert_eq!(replica.offset_after(2).unwrap(), 3);
    assert_eq!(replica.offset_after(5).unwrap(), 6);
    assert!(replica.offset_after(6).is_err());
    let state = replica.state();
    assert_eq!(state.last, Some(EntryId { index: 5, term: 3 }));
    assert_eq!((state.purged, state.next_offset), (None, 6));
    // Durable, but not committed: Kafka readers see nothing yet.
    assert_eq!(state.committed_offset, 0);
    assert!(
        engine
            .read_raw("r", 0, 0, 1 << 20)
            .unwrap()
            .records
            .is_empty()
    );
    replica.commit(5).unwrap();
    // Kafka reads return only data batches, contiguous, from any offset.
    let records = engine.read_raw("r", 0, 0, 1 << 20).unwrap().records;
    let bases: Vec<i64> = batch::split_batches(records.clone())
        .map(|(h, _)| h.base_offset)
        .collect();
    assert_eq!(bases, vec![0], "stops before the membership batch");
    let mut offset = 0;
    let mut seen = vec![];
    while offset < 6 {
        let records = engine.read_raw("r", 0, offset, 1 << 20).unwrap().records;
        for (h, _) in batch::split_batches(records) {
            assert!(!h.is_internal());
            seen.push(h.base_offset);
            offset = h.next_offset();
        }
    }
    assert_eq!(seen, vec![0, 3, 5]);
    assert_eq!(
        engine
            .list_offset("r", 0, crate::OffsetSpec::Latest)
            .unwrap()
            .unwrap()
            .offset,
        6
    );
    // Wrong index, term too large, a control batch as data: refused, nothing written.
    assert!(replica.append(vec![blank(7, 3)], ignore()).is_err());
    assert!(replica.append(vec![blank(6, 1 << 31)], ignore()).is_err());
    assert!(
        replica.append(vec![blank(6, 2)], ignore()).is_err(),
        "term below the log's"
    );
    let control = batch::encode_internal(InternalKind::Blank, &[], 0, 3, 0).unwrap();
    let bad = Entry {
        index: 6,
        term: 3,
        payload: EntryPayload::Data(control),
    };
    assert!(replica.append(vec![bad], ignore()).is_err());
    assert_eq!(replica.state().last, Some(EntryId { index: 5, term: 3 }));
    // The Kafka paths refuse a replicated partition.
    let err = engine
        .append_batch("r", 0, data_batch(-1, -1, 1).freeze())
        .await
        .unwrap_err();
    assert!(matches!(err, LogError::InvalidArgument(_)), "{err}");
    assert!(engine.truncate("r", 0, 1).is_err());
    engine.create_topic_now("plain", 1).unwrap();
    assert!(engine.replica("plain", 0).is_err());
    assert!(engine.replica("r", 1).is_err());
    engine.create_replicated_topic("r", 1, None).await.unwrap();
    assert!(engine.create_replicated_topic("r", 2, None).await.is_err());
    engine.close().await.unwrap();
}

fn snapshot(replica: &ReplicaLog) -> (ReplicaLogState, Vec<StoredEntry>, Vec<EpochEntry>) {
    let mut state = replica.state();
    state.committed_offset = 0; // recovery starts with the high watermark at the log end
    (state, all(replica), replica.leader_epochs())
}

/// Rewrites every `.index` file of `pdir` in the layout before Raft indexes.
fn write_old_index_files(pdir: &Path) -> usize {
    use bytes::BufMut;
    let mut n = 0;
    for entry in std::fs::read_dir(pdir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "index") {
            let bytes = std::fs::read(&path).unwrap();
            let (_, t) = crate::index::OffsetIndex::decode(&bytes).unwrap();
            let mut old = Vec::new();
            old.put_u32(1);
            old.put_u32(100);
            old.put_i64(t.next_offset);
            old.put_u64(t.size);
            let crc = crc32c::crc32c(&old);
            old.put_u32(crc);
            std::fs::write(&path, old).unwrap();
            n += 1;
        }
    }
    n
}

#[tokio::test]
async fn restart_keeps_indexes_terms_epochs_and_rebuilds_old_index_files() {
    let dir = tempfile::tempdir().unwrap();
    let pdir = dir.path().join("topics/r/0");
    let before = {
        let (engine, replica) = open_replica(dir.path(), FlushMode::EveryAppend, 4096).await;
        let mut index = 0;
        for term in 1..=4u64 {
            append(&replica, vec![blank(index, term)]).await;
            index += 1;
            for _ in 0..15 {
                append(&replica, vec![data(index, term, 3)]).await;
                index += 1;
            }
            append(&replica, vec![membership(index, term, b"m")]).await;
            index += 1;
        }
        replica.commit(index - 1).unwrap();
        assert!(engine.partition("r", 0).unwrap().segment_count() > 3);
        let before = snapshot(&replica);
        engine.close().await.unwrap();
        before
    };
    // Clean restart: sealed indexes trusted.
    {
        let engine = open(dir.path(), FlushMode::EveryAppend, 4096);
        let replica = engine.replica("r", 0).unwrap();
        assert_eq!(snapshot(&replica), before);
        drop(replica);
        drop(engine); // unclean: no close
    }
    // Unclean restart with old-layout index files and no epoch cache: rebuilt by scanning.
    assert!(write_old_index_files(&pdir) > 2);
    std::fs::remove_file(pdir.join(EPOCH_FILE)).unwrap();
    {
        let engine = open(dir.path(), FlushMode::EveryAppend, 4096);
        let replica = engine.replica("r", 0).unwrap();
        assert_eq!(snapshot(&replica), before);
        // The old files were not trusted (removed, rebuilt in memory by scanning).
        let old = std::fs::read(pdir.join(crate::segment::file_name(0, "index")));
        assert!(
            old.ok()
                .and_then(|b| crate::index::OffsetIndex::decode(&b))
                .is_none()
        );
        // Appends go on after the last entry.
        let next = before.0.last.unwrap().index + 1;
        append(&replica, vec![data(next, 5, 1)]).await;
        assert_eq!(
            replica.state().last,
            Some(EntryId {
                index: next,
                term: 5
            })
        );
        engine.close().await.unwrap();
    }
    // The rewritten index files decode in the new layout after a roll/close.
    let engine = open(dir.path(), FlushMode::EveryAppend, 4096);
    let replica = engine.replica("r", 0).unwrap();
    assert_eq!(replica.leader_epochs().last().unwrap().term, 5);
    engine.close().await.unwrap();
}

#[tokio::test]
async fn lookups_across_many_segments_and_no_roll_without_a_data_record() {
    let dir = tempfile::tempdir().unwrap();
    let (engine, replica) = open_replica(dir.path(), FlushMode::Os, 4096).await;
    let p = engine.partition("r", 0).unwrap();
    // 100 blank entries (~6 KiB) exceed segment_bytes, but the segment holds no data record:
    // no roll (the next segment would collide with its base offset).
    let blanks: Vec<Entry> = (0..100).map(|i| blank(i, 1)).collect();
    replica.append(blanks, ignore()).unwrap();
    assert_eq!(p.segment_count(), 1);
    let mut expected = vec![];
    let mut offset = 0i64;
    for i in 0..300u64 {
        let index = 100 + i;
        let entry = if i % 3 == 0 {
            blank(index, 1 + i / 50)
        } else {
            data(index, 1 + i / 50, (i % 4 + 1) as usize)
        };
        let width = match &entry.payload {
            EntryPayload::Data(_) => (i % 4 + 1) as i64,
            _ => 0,
        };
        expected.push((index, 1 + i / 50, offset, offset + width));
        offset += width;
        replica.append(vec![entry], ignore()).unwrap();
    }
    assert!(p.segment_count() > 10, "{}", p.segment_count());
    for &(index, term, base, next) in &expected {
        let got = replica.entries(index..index + 1, 0).unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!((got[0].index, got[0].term), (index, term));
        assert_eq!((got[0].base_offset, got[0].next_offset), (base, next));
        assert_eq!(replica.offset_after(index).unwrap(), next);
    }
    let stored = replica.entries(100..400, usize::MAX).unwrap();
    assert_eq!(stored.len(), 300);
    // Every segment but the active holds data.
    {
        let st = p.state();
        for s in st.segments.values() {
            if !Arc::ptr_eq(s, &st.active) {
                assert!(s.next_offset() > s.base_offset);
            }
        }
    }
    // Recovery of zero-width batches (unclean: the active segment is rescanned).
    let state = replica.state();
    drop((p, replica));
    drop(engine);
    let engine = open(dir.path(), FlushMode::Os, 4096);
    let replica = engine.replica("r", 0).unwrap();
    assert_eq!(replica.state().last, state.last);
    assert_eq!(replica.state().next_offset, state.next_offset);
    assert_eq!(replica.entries(0..400, usize::MAX).unwrap().len(), 400);
    engine.close().await.unwrap();
}

#[tokio::test]
async fn on_durable_fires_after_one_shared_fsync_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let (engine, replica) = open_replica(dir.path(), FlushMode::EveryAppend, 1 << 20).await;
    append(&replica, vec![blank(0, 1)]).await;
    let fsyncs = replica.fsyncs();
    let order = Arc::new(Mutex::new(Vec::new()));
    let mut last = None;
    for i in 1..=3u64 {
        let seen = order.clone();
        let (cb, rx) = signal();
        replica
            .append(
                vec![data(i, 1, 1)],
                Box::new(move |r| {
                    seen.lock().unwrap().push(i);
                    cb(r);
                }),
            )
            .unwrap();
        last = Some(rx);
        // The current-thread runtime has not run the flusher: nothing is durable yet.
        assert!(order.lock().unwrap().is_empty());
        assert_eq!(replica.fsyncs(), fsyncs);
    }
    last.unwrap().await.unwrap().unwrap();
    assert_eq!(*order.lock().unwrap(), vec![1, 2, 3]);
    assert_eq!(
        replica.fsyncs(),
        fsyncs + 1,
        "group commit: one fsync for three appends"
    );
    // A zero-width entry adds bytes but no offset: it still needs (and gets) its fsync.
    append(&replica, vec![membership(4, 1, b"m")]).await;
    assert_eq!(replica.fsyncs(), fsyncs + 2);
    engine.close().await.unwrap();
}

#[tokio::test]
async fn on_durable_follows_interval_and_os_flushes() {
    let dir = tempfile::tempdir().unwrap();
    let engine = open(dir.path(), FlushMode::Interval, 1 << 20);
    engine.create_replicated_topic("i", 1, None).await.unwrap();
    let os = TopicConfig {
        flush: Some(FlushPolicy {
            mode: FlushMode::Os,
            interval_ms: 0,
            linger_us: 0,
        }),
        ..TopicConfig::default()
    };
    engine
        .create_replicated_topic("o", 1, Some(os))
        .await
        .unwrap();
    // Interval (one hour here): only the next interval flush (or any flush) fires it.
    let interval = engine.replica("i", 0).unwrap();
    let (cb, mut rx) = signal();
    interval.append(vec![blank(0, 1)], cb).unwrap();
    tokio::task::yield_now().await;
    assert!(rx.try_recv().is_err());
    let fsyncs = interval.fsyncs();
    engine.flush().await.unwrap();
    rx.await.unwrap().unwrap();
    assert!(interval.fsyncs() > fsyncs);
    // Os: right after the write, without an fsync.
    let os = engine.replica("o", 0).unwrap();
    let fsyncs = os.fsyncs();
    let (cb, mut rx) = signal();
    os.append(vec![data(0, 1, 2)], cb).unwrap();
    rx.try_recv().unwrap().unwrap();
    assert_eq!(os.fsyncs(), fsyncs);
    assert_eq!(
        os.state().committed_offset,
        0,
        "writes never move a replica's high watermark"
    );
    // Background: right after the write too; its interval fsync moves no high watermark.
    let background = TopicConfig {
        flush: Some(FlushPolicy {
            mode: FlushMode::Background,
            interval_ms: 3_600_000,
            linger_us: 0,
        }),
        ..TopicConfig::default()
    };
    engine
        .create_replicated_topic("b", 1, Some(background))
        .await
        .unwrap();
    let background = engine.replica("b", 0).unwrap();
    let (cb, mut rx) = signal();
    background.append(vec![data(0, 1, 2)], cb).unwrap();
    rx.try_recv().unwrap().unwrap();
    engine.flush().await.unwrap();
    assert_eq!(background.state().committed_offset, 0);
    // The settings given at creation survive a restart.
    engine.close().await.unwrap();
    let engine = open(dir.path(), FlushMode::Interval, 1 << 20);
    assert_eq!(
        engine.partition("o", 0).unwrap().settings.flush.mode,
        FlushMode::Os
    );
    engine.close().await.unwrap();
}

#[tokio::test]
async fn failed_fsync_fails_callbacks_without_rollback() {
    let dir = tempfile::tempdir().unwrap();
    let (engine, replica) = open_replica(dir.path(), FlushMode::EveryAppend, 1 << 20).await;
    append(&replica, vec![blank(0, 1)]).await;
    let pdir = dir.path().join("topics/r/0");
    crate::fault::set_sync_fails(&pdir, true);
    let (cb, rx) = signal();
    replica.append(vec![data(1, 1, 2)], cb).unwrap();
    let failed = rx.await.unwrap();
    crate::fault::set_sync_fails(&pdir, false);
    assert!(failed.is_err());
    // No rollback: the entry stays; the partition refuses appends until restart.
    assert_eq!(replica.state().last, Some(EntryId { index: 1, term: 1 }));
    assert!(replica.append(vec![blank(2, 1)], ignore()).is_err());
    drop(replica);
    drop(engine);
    let engine = open(dir.path(), FlushMode::EveryAppend, 1 << 20);
    let replica = engine.replica("r", 0).unwrap();
    assert_eq!(replica.state().last, Some(EntryId { index: 1, term: 1 }));
    append(&replica, vec![blank(2, 2)]).await;
    engine.close().await.unwrap();
}

fn producer_check(replica: &ReplicaLog, seq: i32) -> std::result::Result<Check, LogError> {
    let bytes = data_batch(9, seq, 3);
    let header = BatchHeader::parse(&bytes).unwrap();
    replica.partition().state().producers.check(&header)
}

#[tokio::test]
async fn truncate_then_reappend_keeps_producer_state_and_epochs_right() {
    for segment_bytes in [1 << 20, 4096] {
        let dir = tempfile::tempdir().unwrap();
        let (engine, replica) =
            open_replica(dir.path(), FlushMode::EveryAppend, segment_bytes).await;
        // Producer 9: ten batches of 3 (offsets 0..30), terms 1 then 2 from index 5.
        for i in 0..10u64 {
            let term = if i < 5 { 1 } else { 2 };
            let entry = Entry {
                index: i,
                term,
                payload: EntryPayload::Data(data_batch(9, i as i32 * 3, 3)),
            };
            append(&replica, vec![entry]).await;
        }
        append(&replica, vec![blank(10, 3)]).await;
        replica.commit(10).unwrap();
        assert_eq!(engine.partition_offsets("r", 0).unwrap().high_watermark, 30);
        assert_eq!(replica.leader_epochs().len(), 3);
        // Cut after the third batch.
        replica.truncate_after(Some(2)).unwrap();
        let state = replica.state();
        assert_eq!(state.last, Some(EntryId { index: 2, term: 1 }));
        assert_eq!((state.next_offset, state.committed_offset), (9, 9));
        assert_eq!(
            replica.leader_epochs(),
            vec![EpochEntry {
                term: 1,
                first_index: 0,
                first_offset: 0
            }]
        );
        assert_eq!(
            producer_check(&replica, 6).unwrap(),
            Check::Duplicate {
                base_offset: 6,
                next_offset: 9
            },
            "({segment_bytes})"
        );
        assert!(matches!(
            producer_check(&replica, 12),
            Err(LogError::OutOfOrderSequence { expected: 9, .. })
        ));
        assert_eq!(producer_check(&replica, 9).unwrap(), Check::Append);
        // Re-append with other terms.
        append(&replica, vec![blank(3, 4)]).await;
        let entry = Entry {
            index: 4,
            term: 4,
            payload: EntryPayload::Data(data_batch(9, 9, 3)),
        };
        append(&replica, vec![entry]).await;
        assert_eq!(
            replica.leader_epochs(),
            vec![
                EpochEntry {
                    term: 1,
                    first_index: 0,
                    first_offset: 0
                },
                EpochEntry {
                    term: 4,
                    first_index: 3,
                    first_offset: 9
                },
            ]
        );
        let last = replica.entries(4..5, usize::MAX).unwrap();
        assert_eq!(
            (last[0].term, last[0].base_offset, last[0].next_offset),
            (4, 9, 12)
        );
        assert_eq!(
            producer_check(&replica, 9).unwrap(),
            Check::Duplicate {
                base_offset: 9,
                next_offset: 12
            }
        );
        // Everything after the purge point (none): an empty log.
        replica.truncate_after(None).unwrap();
        assert_eq!(replica.state().last, None);
        assert_eq!(replica.state().next_offset, 0);
        assert!(replica.leader_epochs().is_empty());
        append(&replica, vec![blank(0, 5)]).await;
        engine.close().await.unwrap();
        let engine = open(dir.path(), FlushMode::EveryAppend, segment_bytes);
        let replica = engine.replica("r", 0).unwrap();
        assert_eq!(replica.state().last, Some(EntryId { index: 0, term: 5 }));
        engine.close().await.unwrap();
    }
}

#[tokio::test]
async fn purge_sealed_segments_and_past_the_end_then_append() {
    let dir = tempfile::tempdir().unwrap();
    let (engine, replica) = open_replica(dir.path(), FlushMode::EveryAppend, 4096).await;
    for i in 0..100u64 {
        replica
            .append(vec![data(i, 1 + i / 40, 2)], ignore())
            .unwrap();
    }
    engine.flush().await.unwrap();
    replica.commit(99).unwrap();
    let segments = engine.partition("r", 0).unwrap().segment_count();
    let boundary = Boundary {
        last: EntryId { index: 49, term: 2 },
        next_offset: replica.offset_after(49).unwrap(),
    };
    assert_eq!(boundary.next_offset, 100);
    replica.purge(boundary).unwrap();
    assert!(engine.partition("r", 0).unwrap().segment_count() < segments);
    assert!(replica.entries(49..50, usize::MAX).is_err());
    assert_eq!(
        replica.entries(50..51, usize::MAX).unwrap()[0].base_offset,
        100
    );
    let state = replica.state();
    assert_eq!(state.purged, Some(boundary.last));
    assert_eq!(state.last, Some(EntryId { index: 99, term: 3 }));
    assert_eq!(engine.partition_offsets("r", 0).unwrap().log_start, 100);
    assert_eq!(replica.offset_after(49).unwrap(), 100);
    assert_eq!(
        replica.leader_epochs(),
        vec![
            EpochEntry {
                term: 2,
                first_index: 50,
                first_offset: 100
            },
            EpochEntry {
                term: 3,
                first_index: 80,
                first_offset: 160
            },
        ]
    );
    assert!(replica.truncate_after(Some(10)).is_err());
    engine.close().await.unwrap();
    // Restart: the boundary and what follows it survive.
    let engine = open(dir.path(), FlushMode::EveryAppend, 4096);
    let replica = engine.replica("r", 0).unwrap();
    assert_eq!(replica.state().purged, Some(boundary.last));
    assert_eq!(replica.entries(50..100, usize::MAX).unwrap().len(), 50);
    assert_eq!(engine.partition_offsets("r", 0).unwrap().log_start, 100);
    // Past the end (a snapshot install on a lagging follower).
    let installed = Boundary {
        last: EntryId {
            index: 500,
            term: 7,
        },
        next_offset: 10_000,
    };
    replica.purge(installed).unwrap();
    let state = replica.state();
    assert_eq!(
        (state.purged, state.last),
        (Some(installed.last), Some(installed.last))
    );
    assert_eq!(
        (state.next_offset, state.committed_offset),
        (10_000, 10_000)
    );
    assert!(replica.append(vec![blank(500, 7)], ignore()).is_err());
    append(&replica, vec![data(501, 7, 3)]).await;
    let got = replica.entries(501..502, usize::MAX).unwrap();
    assert_eq!((got[0].base_offset, got[0].next_offset), (10_000, 10_003));
    drop(replica);
    drop(engine); // unclean
    let engine = open(dir.path(), FlushMode::EveryAppend, 4096);
    let replica = engine.replica("r", 0).unwrap();
    let state = replica.state();
    assert_eq!(state.purged, Some(installed.last));
    assert_eq!(
        state.last,
        Some(EntryId {
            index: 501,
            term: 7
        })
    );
    assert_eq!(
        replica.leader_epochs(),
        vec![EpochEntry {
            term: 7,
            first_index: 501,
            first_offset: 10_000
        }]
    );
    assert_eq!(engine.partition_offsets("r", 0).unwrap().log_start, 10_000);
    engine.close().await.unwrap();
}

#[tokio::test]
async fn commit_moves_the_high_watermark_and_fsync_alone_does_not() {
    let dir = tempfile::tempdir().unwrap();
    let (engine, replica) = open_replica(dir.path(), FlushMode::EveryAppend, 1 << 20).await;
    append(&replica, vec![data(0, 1, 2), blank(1, 1), data(2, 1, 3)]).await;
    engine.flush().await.unwrap();
    assert_eq!(engine.partition_offsets("r", 0).unwrap().high_watermark, 0);
    replica.commit(0).unwrap();
    assert_eq!(engine.partition_offsets("r", 0).unwrap().high_watermark, 2);
    replica.commit(1).unwrap();
    assert_eq!(replica.state().committed_offset, 2);
    // Never backwards, never past the log end.
    replica.commit(100).unwrap();
    assert_eq!(replica.state().committed_offset, 5);
    replica.commit(0).unwrap();
    assert_eq!(replica.state().committed_offset, 5);
    let waiter = {
        let engine = engine.clone();
        tokio::spawn(async move {
            engine
                .wait_for_data("r", 0, 5, std::time::Duration::from_secs(30))
                .await
        })
    };
    append(&replica, vec![data(3, 1, 1)]).await;
    assert!(!waiter.is_finished());
    replica.commit(3).unwrap();
    assert!(waiter.await.unwrap().unwrap());
    engine.close().await.unwrap();
    // After a restart nothing is readable until Raft commits again.
    let engine = open(dir.path(), FlushMode::EveryAppend, 1 << 20);
    let replica = engine.replica("r", 0).unwrap();
    assert_eq!(replica.state().committed_offset, 0);
    assert!(
        engine
            .read_raw("r", 0, 0, 1 << 20)
            .unwrap()
            .records
            .is_empty()
    );
    // A reader past the high watermark but within the log waits instead of being told it is
    // out of range.
    assert!(
        engine
            .read_raw("r", 0, 4, 1 << 20)
            .unwrap()
            .records
            .is_empty()
    );
    assert!(matches!(
        engine.read_raw("r", 0, 7, 1 << 20),
        Err(LogError::OffsetOutOfRange { .. })
    ));
    replica.commit(2).unwrap();
    assert_eq!(replica.state().committed_offset, 5);
    let records = engine.read_raw("r", 0, 2, 1 << 20).unwrap().records;
    assert_eq!(
        batch::split_batches(records).next().unwrap().0.base_offset,
        2
    );
    engine.close().await.unwrap();
}

#[tokio::test]
async fn a_failed_write_leaves_no_entry_and_no_epoch_behind() {
    let dir = tempfile::tempdir().unwrap();
    let (engine, replica) = open_replica(dir.path(), FlushMode::EveryAppend, 1 << 20).await;
    append(&replica, vec![data(0, 1, 2)]).await;
    let pdir = dir.path().join("topics/r/0");
    crate::fault::set_disk_full(&pdir, true);
    let err = replica.append(vec![blank(1, 2), data(2, 2, 1)], ignore());
    crate::fault::set_disk_full(&pdir, false);
    assert!(matches!(err, Err(LogError::DiskFull { .. })), "{err:?}");
    assert_eq!(replica.state().last, Some(EntryId { index: 0, term: 1 }));
    assert_eq!(replica.leader_epochs().len(), 1);
    append(&replica, vec![blank(1, 2), data(2, 2, 1)]).await;
    assert_eq!(replica.leader_epochs().len(), 2);
    assert_eq!(replica.state().next_offset, 3);
    engine.close().await.unwrap();
}

#[tokio::test]
async fn a_stale_or_corrupt_epoch_cache_is_rebuilt_from_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let pdir = dir.path().join("topics/r/0");
    let epochs = {
        let (engine, replica) = open_replica(dir.path(), FlushMode::EveryAppend, 4096).await;
        for i in 0..40u64 {
            append(&replica, vec![data(i, 1 + i / 10, 2)]).await;
        }
        engine.close().await.unwrap();
        replica.leader_epochs()
    };
    assert_eq!(epochs.len(), 4);
    for bad in [
        "0\n1\n9 0 0\n".to_owned(),
        "0\n2\n1 0 0\n".to_owned(),
        "garbage".to_owned(),
    ] {
        std::fs::write(pdir.join(EPOCH_FILE), bad).unwrap();
        let engine = open(dir.path(), FlushMode::EveryAppend, 4096);
        assert_eq!(engine.replica("r", 0).unwrap().leader_epochs(), epochs);
        engine.close().await.unwrap();
    }
}

#[tokio::test]
async fn wait_committed_resolves_only_once_the_commit_point_passes() {
    let dir = tempfile::tempdir().unwrap();
    let (_engine, replica) = open_replica(dir.path(), FlushMode::EveryAppend, 1 << 20).await;
    append(&replica, vec![blank(0, 1), data(1, 1, 3), data(2, 1, 2)]).await;
    let short = std::time::Duration::from_millis(50);
    assert!(
        !replica.wait_committed(3, short).await.unwrap(),
        "written and fsynced, not committed"
    );
    replica.commit(1).unwrap();
    assert!(replica.wait_committed(3, short).await.unwrap());
    assert!(!replica.wait_committed(5, short).await.unwrap());
    let waiting = {
        let replica = replica.clone();
        tokio::spawn(async move {
            replica
                .wait_committed(5, std::time::Duration::from_secs(30))
                .await
        })
    };
    replica.commit(2).unwrap();
    assert!(waiting.await.unwrap().unwrap(), "woken by the commit");
}
