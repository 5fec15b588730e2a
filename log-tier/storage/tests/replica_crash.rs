//! Crash test of the Raft-replica storage: a child process (this test binary re-executed)
//! appends Raft entries of every kind (blank, membership, data) with rising terms to two
//! replicated partitions (`every_append` and `interval`), logging each entry once its
//! `on_durable` callback reported it durable, and is SIGKILLed at random moments. After
//! every kill the log is reopened: each acknowledged entry reads back with its index, term,
//! kind and content; every stored entry is whole; Kafka offsets stay dense; the epoch cache
//! matches the log; Kafka reads of the committed log return exactly the data batches.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails by panicking

mod common;

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::io::Write;
use std::path::Path;

use std::sync::Arc;

use bytes::Bytes;
use headwater_log::batch::{self, ProducerFields};
use headwater_log::{
    Entry, EntryKind, EntryPayload, EpochEntry, FlushMode, FlushPolicy, LogConfig, LogEngine,
    Record, ReplicaLog, TopicConfig,
};
use rand::{Rng, SeedableRng};

const DIR_ENV: &str = "HEADWATER_REPLICA_CRASH_CHILD_DIR";
const KILLS: usize = 12;
const TOPICS: [&str; 2] = ["every", "interval"];

fn config() -> LogConfig {
    LogConfig {
        segment_bytes: 16 * 1024,
        index_interval_bytes: 512,
        ..LogConfig::default()
    }
}

fn topic_config(topic: &str) -> TopicConfig {
    let mode = if topic == "every" {
        FlushMode::EveryAppend
    } else {
        FlushMode::Interval
    };
    TopicConfig {
        flush: Some(FlushPolicy {
            mode,
            interval_ms: 5,
            linger_us: 0,
        }),
        ..TopicConfig::default()
    }
}

/// The value of record `j` of entry `seed`: derived, so any stored record can be checked.
fn value(seed: u64, j: usize) -> Bytes {
    Bytes::from(format!("{seed}:{j}:{}", "v".repeat((seed % 300) as usize)))
}

fn membership(seed: u64) -> Bytes {
    Bytes::from(format!("m{seed}"))
}

/// The payload of entry `seed`: kind from the seed.
fn payload(seed: u64) -> (EntryPayload, EntryKind) {
    match seed % 5 {
        0 => (EntryPayload::Blank, EntryKind::Blank),
        1 => (
            EntryPayload::Membership(membership(seed)),
            EntryKind::Membership,
        ),
        _ => {
            let records: Vec<Record> = (0..(seed % 4 + 1) as usize)
                .map(|j| Record {
                    partition: Some(0),
                    key: Some(Bytes::from(format!("{seed}:{j}"))),
                    value: Some(value(seed, j)),
                    headers: vec![],
                    timestamp_ms: 7,
                })
                .collect();
            let refs: Vec<&Record> = records.iter().collect();
            let bytes = batch::encode(&refs, ProducerFields::NONE).unwrap();
            (EntryPayload::Data(bytes), EntryKind::Data)
        }
    }
}

fn kind_name(kind: EntryKind) -> &'static str {
    match kind {
        EntryKind::Blank => "blank",
        EntryKind::Membership => "membership",
        EntryKind::Data => "data",
    }
}

async fn open(dir: &Path) -> Arc<LogEngine> {
    let engine = LogEngine::open(&dir.join("data"), config()).unwrap();
    for topic in TOPICS {
        engine
            .create_replicated_topic(topic, 1, Some(topic_config(topic)))
            .await
            .unwrap();
    }
    engine
}

/// The child: one writer per replica appending entries of 1-3 in a row, logging each
/// acknowledged entry.
#[test]
#[ignore = "run by replica_crash_recovery_keeps_every_acknowledged_entry as a child process"]
fn replica_crash_child() {
    let Ok(dir) = std::env::var(DIR_ENV) else {
        return;
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let dir = Path::new(&dir);
        let engine = open(dir).await;
        let acks = Arc::new(std::sync::Mutex::new(
            OpenOptions::new()
                .create(true)
                .append(true)
                .open(dir.join("acks"))
                .unwrap(),
        ));
        let mut tasks = Vec::new();
        for topic in TOPICS {
            let replica = engine.replica(topic, 0).unwrap();
            let acks = acks.clone();
            tasks.push(tokio::spawn(async move {
                let mut rng = rand::rngs::StdRng::from_os_rng();
                let state = replica.state();
                let mut index = state.last.map_or(0, |l| l.index + 1);
                let mut term = state.last.map_or(1, |l| l.term) + 1;
                loop {
                    if rng.random_range(0..20) == 0 {
                        term += 1;
                    }
                    let mut entries = Vec::new();
                    let mut lines = String::new();
                    for _ in 0..rng.random_range(1..4) {
                        let seed: u64 = rng.random::<u64>() >> 8;
                        let (payload, kind) = payload(seed);
                        lines.push_str(&format!(
                            "{topic} {index} {term} {} {seed}\n",
                            kind_name(kind)
                        ));
                        entries.push(Entry {
                            index,
                            term,
                            payload,
                        });
                        index += 1;
                    }
                    let (tx, rx) = tokio::sync::oneshot::channel();
                    replica
                        .append(
                            entries,
                            Box::new(move |r| {
                                let _ = tx.send(r);
                            }),
                        )
                        .unwrap();
                    rx.await.unwrap().unwrap();
                    acks.lock().unwrap().write_all(lines.as_bytes()).unwrap();
                }
                #[allow(unreachable_code)]
                ()
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
    });
}

#[test]
fn replica_crash_recovery_keeps_every_acknowledged_entry() {
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let total_acked = common::kill_loop("replica_crash_child", DIR_ENV, dir.path(), KILLS, || {
        rt.block_on(verify(dir.path()))
    });
    assert!(
        total_acked > 50,
        "children acknowledged only {total_acked} entries"
    );
    eprintln!("{KILLS} kills, {total_acked} acknowledged entries verified");
}

/// Reopens the log and checks it against the acknowledgements; returns how many were checked.
async fn verify(dir: &Path) -> usize {
    let engine = open(dir).await;
    let acks = std::fs::read_to_string(dir.join("acks")).unwrap_or_default();
    let mut acked: BTreeMap<(String, u64), (u64, String, u64)> = BTreeMap::new();
    // A line torn by the kill has no newline: ignore it.
    for line in acks.split_inclusive('\n').filter(|l| l.ends_with('\n')) {
        let f: Vec<&str> = line.split_whitespace().collect();
        acked.insert(
            (f[0].to_owned(), f[1].parse().unwrap()),
            (
                f[2].parse().unwrap(),
                f[3].to_owned(),
                f[4].parse().unwrap(),
            ),
        );
    }
    for topic in TOPICS {
        let replica = engine.replica(topic, 0).unwrap();
        verify_replica(&engine, &replica, topic, &acked).await;
    }
    engine.close().await.unwrap();
    acked.len()
}

async fn verify_replica(
    engine: &LogEngine,
    replica: &ReplicaLog,
    topic: &str,
    acked: &BTreeMap<(String, u64), (u64, String, u64)>,
) {
    let state = replica.state();
    let end = state.last.map_or(0, |l| l.index + 1);
    let lost: Vec<_> = acked
        .keys()
        .filter(|(t, index)| t == topic && *index >= end)
        .collect();
    assert!(lost.is_empty(), "acknowledged but lost: {lost:?}");
    let entries = replica.entries(0..end, usize::MAX).unwrap();
    assert_eq!(entries.len() as u64, end);
    let mut next_offset = 0;
    let mut epochs: Vec<EpochEntry> = Vec::new();
    for e in &entries {
        assert_eq!(e.base_offset, next_offset, "dense offsets in {topic}");
        next_offset = e.next_offset;
        if epochs.last().is_none_or(|l| e.term > l.term) {
            epochs.push(EpochEntry {
                term: e.term,
                first_index: e.index,
                first_offset: e.base_offset,
            });
        }
        assert!(
            epochs.last().unwrap().term == e.term,
            "terms never decrease"
        );
        // Every stored entry is whole and holds what its seed says.
        let seed = match e.kind {
            EntryKind::Blank => None,
            EntryKind::Membership => {
                let m = e.membership().unwrap();
                Some(
                    std::str::from_utf8(&m[1..])
                        .unwrap()
                        .parse::<u64>()
                        .unwrap(),
                )
            }
            EntryKind::Data => {
                let records = batch::decode_records(&e.bytes).unwrap();
                let key = records[0].key.clone().unwrap();
                let key = std::str::from_utf8(&key).unwrap();
                let seed: u64 = key.split_once(':').unwrap().0.parse().unwrap();
                for (j, r) in records.iter().enumerate() {
                    assert_eq!(r.value.as_ref(), Some(&value(seed, j)));
                    assert_eq!(r.offset, e.base_offset + j as i64);
                }
                Some(seed)
            }
        };
        if let Some((term, kind, acked_seed)) = acked.get(&(topic.to_owned(), e.index)) {
            assert_eq!(e.term, *term, "{topic} entry {}", e.index);
            assert_eq!(kind_name(e.kind), kind, "{topic} entry {}", e.index);
            if let Some(seed) = seed {
                assert_eq!(seed, *acked_seed, "{topic} entry {}", e.index);
            }
        }
    }
    assert_eq!(state.next_offset, next_offset);
    assert_eq!(replica.leader_epochs(), epochs, "epoch cache of {topic}");
    // Committed, the log reads back through Kafka as exactly its data batches.
    if end > 0 {
        replica.commit(end - 1).unwrap();
    }
    let mut offset = 0;
    let mut data = entries.iter().filter(|e| e.kind == EntryKind::Data);
    while offset < next_offset {
        let records = engine
            .read_raw(topic, 0, offset, 64 * 1024)
            .unwrap()
            .records;
        assert!(!records.is_empty());
        for (h, b) in batch::split_batches(records) {
            let expected = data.next().unwrap();
            assert_eq!(b, expected.bytes, "{topic} batch at {}", h.base_offset);
            offset = h.next_offset();
        }
    }
    assert!(data.next().is_none());
}
