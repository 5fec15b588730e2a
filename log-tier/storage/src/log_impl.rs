//! `impl Log for LogEngine`: picks partitions, encodes one RecordBatch per partition, waits for
//! durability, and decodes stored batches back into records.

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use bytes::BytesMut;
use tracing::instrument;

use crate::batch::{self, ProducerFields};
use crate::engine::{FetchOptions, LogEngine, now_ms};
use crate::error::{LogError, Result};
use crate::log::{Appended, Log, PartitionOffsets, Record, StoredRecord, partition_for_key};
use crate::topic::Topic;

/// Chooses the partition of each record: explicit, else murmur2 of the key, else round-robin.
pub(crate) fn assign_partitions(
    topic: &Topic,
    records: &[Record],
) -> Result<BTreeMap<i32, Vec<usize>>> {
    let n = topic.partitions.len() as u32;
    let mut groups: BTreeMap<i32, Vec<usize>> = BTreeMap::new();
    for (i, r) in records.iter().enumerate() {
        let p = match (r.partition, &r.key) {
            (Some(p), _) => {
                topic.partition(p)?;
                p
            }
            (None, Some(key)) => partition_for_key(key, n),
            (None, None) => topic.next_round_robin(),
        };
        groups.entry(p).or_default().push(i);
    }
    Ok(groups)
}

/// Encodes records as batches of at most `max` bytes: one batch unless that is too large.
fn encode_chunks(records: &[&Record], max: usize) -> Result<Vec<(usize, BytesMut)>> {
    let batch = batch::encode(records, ProducerFields::NONE)?;
    if batch.len() <= max {
        return Ok(vec![(records.len(), batch)]);
    }
    if records.len() == 1 {
        return Err(LogError::MessageTooLarge {
            size: batch.len(),
            max,
        });
    }
    let (a, b) = records.split_at(records.len() / 2);
    let mut out = encode_chunks(a, max)?;
    out.extend(encode_chunks(b, max)?);
    Ok(out)
}

#[async_trait]
impl Log for LogEngine {
    #[instrument(level = "debug", skip_all, fields(topic = %topic, records = records.len()))]
    async fn append(&self, topic: &str, mut records: Vec<Record>) -> Result<Vec<Appended>> {
        if records.is_empty() {
            return Ok(Vec::new());
        }
        let t = self.topic_or_create(topic)?;
        let now = now_ms();
        for r in records.iter_mut().filter(|r| r.timestamp_ms < 0) {
            r.timestamp_ms = now;
        }
        let groups = assign_partitions(&t, &records)?;
        let mut out = vec![
            Appended {
                partition: 0,
                offset: 0
            };
            records.len()
        ];
        // Encode every partition's batches before writing any, so that a record too large for
        // the topic refuses the whole call with nothing stored (the gateway then isolates it).
        let mut encoded = Vec::with_capacity(groups.len());
        for (p, idxs) in groups {
            let partition = t.partition(p)?.clone();
            let refs: Vec<&Record> = idxs.iter().map(|&i| &records[i]).collect();
            let chunks = encode_chunks(&refs, partition.settings.max_message_bytes as usize)?;
            encoded.push((p, partition, idxs, chunks));
        }
        let mut pending = Vec::new();
        for (p, partition, idxs, chunks) in encoded {
            let mut done = 0;
            for (count, batch) in chunks {
                let header = batch::BatchHeader::parse(&batch).ok_or_else(|| {
                    LogError::InvalidBatch("encoder produced a short batch".to_owned())
                })?;
                let written = partition.write(batch, header)?;
                pending.push((
                    partition.clone(),
                    written,
                    p,
                    idxs[done..done + count].to_vec(),
                ));
                done += count;
            }
        }
        for (partition, written, p, idxs) in pending {
            partition.wait_durable(&written).await?;
            for (k, i) in idxs.into_iter().enumerate() {
                out[i] = Appended {
                    partition: p,
                    offset: written.base_offset + k as i64,
                };
            }
        }
        Ok(out)
    }

    #[instrument(level = "debug", skip(self))]
    async fn read(
        &self,
        topic: &str,
        partition: i32,
        offset: i64,
        max_bytes: usize,
        max_wait: Duration,
    ) -> Result<Vec<StoredRecord>> {
        let opts = FetchOptions {
            max_bytes,
            min_bytes: 1,
            max_wait,
        };
        let fetched = self.fetch(topic, partition, offset, opts).await?;
        let mut out = Vec::new();
        for (_, b) in batch::split_batches(fetched.records) {
            out.extend(
                batch::decode_records(&b)?
                    .into_iter()
                    .filter(|r| r.offset >= offset),
            );
        }
        Ok(out)
    }

    async fn offsets(&self, topic: &str, partition: i32) -> Result<PartitionOffsets> {
        self.partition_offsets(topic, partition)
    }

    async fn commit(&self, group: &str, topic: &str, partition: i32, offset: i64) -> Result<()> {
        self.topic(topic)?.partition(partition)?;
        self.commit_offset(group, topic, partition, offset).await
    }

    async fn committed(&self, group: &str, topic: &str, partition: i32) -> Result<Option<i64>> {
        Ok(self.committed_offset(group, topic, partition))
    }

    async fn create_topic(&self, topic: &str, partitions: u32) -> Result<()> {
        // Topic creation is rare and small (a few files and fsyncs): done inline.
        self.create_topic_now(topic, partitions)
    }

    async fn delete_topic(&self, topic: &str) -> Result<()> {
        LogEngine::delete_topic(self, topic).await
    }

    async fn partitions(&self, topic: &str) -> Result<u32> {
        Ok(self.topic_or_create(topic)?.partitions.len() as u32)
    }

    async fn list_topics(&self) -> Result<Vec<String>> {
        Ok(self.topic_names())
    }

    async fn flush(&self) -> Result<()> {
        LogEngine::flush(self).await
    }

    async fn check_writable(&self) -> Result<()> {
        self.check_writable_now()
    }
}
