//! Consumer-group offsets replicated through the cluster's internal topic [`OFFSETS_TOPIC`]
//! (one partition, Kafka's `__consumer_offsets`): the coordinator proposes each OffsetCommit
//! request as one RecordBatch, and every node applies the committed batches, in log order, to
//! its engine's offsets store ([`OffsetStoreHook`]), so every store converges.
//!
//! The encoding (one record per committed partition, JSON key and value):
//!
//! ```text
//! key   = {"group": "<group id>", "topic": "<topic>", "partition": <i32>}
//! value = {"offset": <i64>}
//! ```
//!
//! Nothing is compacted or snapshotted yet: a restarted node re-applies the whole log (its
//! store already holds what it applied before, so this only repeats the same writes in order).

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use futures::future::BoxFuture;
use headwater_log::batch::{self, ProducerFields};
use headwater_log::{LogEngine, LogError, Record};
use serde::{Deserialize, Serialize};

use crate::error::ReplicationError;
use crate::sm::ApplyHook;

/// The internal replicated topic holding committed consumer-group offsets. It lives in an
/// engine of its own (never offered to Kafka clients) on every node.
pub const OFFSETS_TOPIC: &str = "__consumer_offsets";

/// One committed offset of a consumer group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommittedOffset {
    /// The group id.
    pub group: String,
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: i32,
    /// The offset of the next record the group will read.
    pub offset: i64,
}

#[derive(Debug, Serialize, Deserialize)]
struct OffsetKey {
    group: String,
    topic: String,
    partition: i32,
}

#[derive(Debug, Serialize, Deserialize)]
struct OffsetValue {
    offset: i64,
}

/// One OffsetCommit request of `group` as one RecordBatch: `(topic, partition, offset)` each.
/// `InvalidArgument` for no offsets at all.
pub fn encode(group: &str, offsets: &[(&str, i32, i64)]) -> Result<Bytes, LogError> {
    let records: Vec<Record> = offsets
        .iter()
        .map(|&(topic, partition, offset)| Record {
            partition: None,
            key: Some(json(&OffsetKey {
                group: group.to_owned(),
                topic: topic.to_owned(),
                partition,
            })),
            value: Some(json(&OffsetValue { offset })),
            headers: Vec::new(),
            timestamp_ms: headwater_log::now_ms(),
        })
        .collect();
    let refs: Vec<&Record> = records.iter().collect();
    batch::encode(&refs, ProducerFields::NONE).map(|b| b.freeze())
}

/// The offsets a batch written by [`encode`] commits, in order.
pub fn decode(batch: &Bytes) -> Result<Vec<CommittedOffset>, String> {
    let records = batch::decode_records(batch).map_err(|e| e.to_string())?;
    records
        .into_iter()
        .map(|r| {
            let key = r.key.ok_or("a record without key")?;
            let value = r.value.ok_or("a record without value")?;
            let key: OffsetKey = serde_json::from_slice(&key).map_err(|e| format!("key: {e}"))?;
            let value: OffsetValue =
                serde_json::from_slice(&value).map_err(|e| format!("value: {e}"))?;
            Ok(CommittedOffset {
                group: key.group,
                topic: key.topic,
                partition: key.partition,
                offset: value.offset,
            })
        })
        .collect()
}

/// JSON of a key or value (they cannot fail to encode: strings and integers only).
fn json<T: Serialize>(value: &T) -> Bytes {
    Bytes::from(serde_json::to_vec(value).unwrap_or_default())
}

/// Applies committed offset batches to an engine's offsets store: what every node's state
/// machine of the offsets partition runs for each data entry.
///
/// A batch that does not decode, and offsets of topics or partitions this node does not have
/// (or past the store's entry limit), are skipped with a warning: every node skips them alike,
/// so the stores still agree. A failing store (I/O, closed) stops the group on this node.
pub struct OffsetStoreHook {
    engine: Arc<LogEngine>,
}

impl OffsetStoreHook {
    /// Applies to `engine`'s offsets store.
    pub fn new(engine: Arc<LogEngine>) -> Self {
        Self { engine }
    }

    async fn apply_batch(&self, index: u64, batch: &Bytes) -> Result<(), ReplicationError> {
        let offsets = match decode(batch) {
            Ok(offsets) => offsets,
            Err(reason) => {
                tracing::warn!(index, %reason, "offsets entry does not decode; skipped");
                return Ok(());
            }
        };
        let mut by_group: BTreeMap<&str, Vec<(&str, i32, i64)>> = BTreeMap::new();
        for o in &offsets {
            by_group.entry(o.group.as_str()).or_default().push((
                o.topic.as_str(),
                o.partition,
                o.offset,
            ));
        }
        for (group, entries) in by_group {
            let results = self.engine.commit_offsets(group, &entries).await;
            for (result, (topic, partition, _)) in results.into_iter().zip(&entries) {
                match result {
                    Ok(()) => {}
                    Err(
                        e @ (LogError::UnknownTopic(_)
                        | LogError::UnknownPartition { .. }
                        | LogError::InvalidArgument(_)),
                    ) => {
                        tracing::warn!(index, group, topic, partition, error = %e,
                            "committed offset not applied");
                    }
                    Err(e) => return Err(ReplicationError::Log(e)),
                }
            }
        }
        Ok(())
    }
}

impl ApplyHook for OffsetStoreHook {
    fn apply<'a>(
        &'a self,
        index: u64,
        batch: &'a Bytes,
    ) -> BoxFuture<'a, Result<(), ReplicationError>> {
        Box::pin(self.apply_batch(index, batch))
    }
}

#[cfg(test)]
mod tests {
    use headwater_log::LogConfig;

    use super::*;

    #[test]
    fn a_commit_round_trips_through_one_batch() {
        let batch = encode("g", &[("t", 0, 5), ("u", 3, 42)]).unwrap();
        let header = batch::BatchHeader::parse(&batch).unwrap();
        assert_eq!(header.records_count, 2);
        let decoded = decode(&batch).unwrap();
        let want = |topic: &str, partition, offset| CommittedOffset {
            group: "g".to_owned(),
            topic: topic.to_owned(),
            partition,
            offset,
        };
        assert_eq!(decoded, [want("t", 0, 5), want("u", 3, 42)]);
        assert!(encode("g", &[]).is_err());
    }

    #[test]
    fn the_documented_json_is_what_is_written() {
        let batch = encode("orders-readers", &[("orders", 1, 7)]).unwrap();
        let record = batch::decode_records(&batch).unwrap().remove(0);
        assert_eq!(
            &record.key.unwrap()[..],
            br#"{"group":"orders-readers","topic":"orders","partition":1}"#
        );
        assert_eq!(&record.value.unwrap()[..], br#"{"offset":7}"#);
    }

    #[tokio::test]
    async fn the_hook_applies_known_partitions_and_skips_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let engine = LogEngine::open(dir.path(), LogConfig::default()).unwrap();
        engine.create_topic_now("t", 2).unwrap();
        let hook = OffsetStoreHook::new(engine.clone());
        let first = encode("g", &[("t", 0, 5), ("t", 9, 1), ("nope", 0, 3)]).unwrap();
        hook.apply(1, &first).await.unwrap();
        let second = encode("g", &[("t", 0, 8), ("t", 1, 2)]).unwrap();
        hook.apply(2, &second).await.unwrap();
        hook.apply(3, &Bytes::from_static(b"not a batch"))
            .await
            .unwrap();
        assert_eq!(engine.committed_offset("g", "t", 0), Some(8));
        assert_eq!(engine.committed_offset("g", "t", 1), Some(2));
        assert_eq!(engine.committed_offset("g", "t", 9), None);
        assert_eq!(engine.committed_offset("g", "nope", 0), None);
    }

    #[tokio::test]
    async fn a_closed_store_stops_the_hook() {
        let dir = tempfile::tempdir().unwrap();
        let engine = LogEngine::open(dir.path(), LogConfig::default()).unwrap();
        engine.create_topic_now("t", 1).unwrap();
        engine.close().await.unwrap();
        let hook = OffsetStoreHook::new(engine.clone());
        let batch = encode("g", &[("t", 0, 5)]).unwrap();
        assert!(hook.apply(1, &batch).await.is_err());
    }
}
