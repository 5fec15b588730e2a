//! What the replication tests share: the log settings of a replica, batches of test records,
//! writes through a leader, and reading a replica's log back.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)] // each test uses a part

pub(crate) mod nodes;

use bytes::Bytes;
use headwater_log::batch::{self, ProducerFields};
use headwater_log::{
    EntryKind, FlushMode, FlushPolicy, LogConfig, Record, ReplicaLog, StoredEntry,
};
use headwater_raft::net::RaftNode;
use headwater_raft::{Applied, Batch};

/// A replica's log settings: fsync before an entry counts as flushed, small segments (so
/// lookups cross many of them).
pub(crate) fn log_config() -> LogConfig {
    LogConfig {
        flush: FlushPolicy {
            mode: FlushMode::EveryAppend,
            ..FlushPolicy::default()
        },
        segment_bytes: 4096,
        // The test records are stamped in 2023: no retention by age, which would cut the
        // logs under a long test (tests/retention.rs sets its own).
        retention_ms: i64::MAX as u64,
        ..LogConfig::default()
    }
}

/// One batch holding a record per value.
pub(crate) fn batch_of(values: &[String]) -> Batch {
    let records: Vec<Record> = values
        .iter()
        .map(|v| Record {
            partition: Some(0),
            key: None,
            value: Some(Bytes::from(v.clone())),
            headers: Vec::new(),
            timestamp_ms: 1_700_000_000_000,
        })
        .collect();
    let refs: Vec<&Record> = records.iter().collect();
    Batch(batch::encode(&refs, ProducerFields::NONE).unwrap().freeze())
}

/// Writes `n` batches of 3 records `{tag}-{i}-{r}` through `leader`; returns the offsets each
/// got.
pub(crate) async fn write(leader: &RaftNode, tag: &str, n: usize) -> Vec<(i64, i64)> {
    let mut out = Vec::new();
    for i in 0..n {
        let values: Vec<String> = (0..3).map(|r| format!("{tag}-{i}-{r}")).collect();
        let response = leader.client_write(batch_of(&values)).await.unwrap();
        match response.data {
            Applied::Data {
                base_offset,
                next_offset,
            } => out.push((base_offset, next_offset)),
            Applied::Internal => panic!("a data entry applied as internal"),
        }
    }
    out
}

/// Batches of 3 records at offsets that follow each other from `from`.
pub(crate) fn assert_dense(offsets: &[(i64, i64)], from: i64) {
    let mut next = from;
    for &(base, end) in offsets {
        assert_eq!(base, next, "offsets are dense: {offsets:?}");
        assert_eq!(end, base + 3);
        next = end;
    }
}

/// Every entry of a replica's log, from its start.
pub(crate) fn entries(log: &ReplicaLog) -> Vec<StoredEntry> {
    let state = log.state();
    let Some(last) = state.last else {
        return Vec::new();
    };
    let mut next = state.purged.map_or(0, |p| p.index + 1);
    let mut out = Vec::new();
    while next <= last.index {
        let got = log.entries(next..last.index + 1, 1 << 20).unwrap();
        next = got.last().unwrap().index + 1;
        out.extend(got);
    }
    out
}

/// The data batches of a log as `(index, term, base, next, bytes)`: what must be identical on
/// every replica.
pub(crate) fn data(log: &ReplicaLog) -> Vec<(u64, u64, i64, i64, Bytes)> {
    entries(log)
        .into_iter()
        .filter(|e| e.kind == EntryKind::Data)
        .map(|e| (e.index, e.term, e.base_offset, e.next_offset, e.bytes))
        .collect()
}
