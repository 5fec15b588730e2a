//! `impl Log for LogEngine`: picks partitions, encodes one RecordBatch per partition, waits for
//! durability, and decodes stored batches back into records.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::BytesMut;
use tracing::instrument;

use crate::batch::{self, BatchRecord, ProducerFields};
use crate::engine::{FetchOptions, LogEngine, now_ms};
use crate::error::{LogError, Result};
use crate::log::{
    AppendError, Appended, Log, PartitionOffsets, PreparedRecord, Record, StoredRecord,
    partition_for_key,
};
use crate::partition::Partition;
use crate::topic::Topic;

/// Chooses the partition of each record: explicit, else murmur2 of the key, else round-robin.
pub(crate) fn assign_partitions<R: Appendable>(
    topic: &Topic,
    records: &[R],
) -> Result<BTreeMap<i32, Vec<usize>>> {
    let n = topic.partitions.len() as u32;
    let mut groups: BTreeMap<i32, Vec<usize>> = BTreeMap::new();
    for (i, r) in records.iter().enumerate() {
        let p = match (r.partition(), r.key()) {
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
fn encode_chunks<R: BatchRecord>(records: &[&R], max: usize) -> Result<Vec<(usize, BytesMut)>> {
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

/// Decodes stored batches into the records from `offset` on, stopping once `max_bytes` of
/// record bytes (decompressed) are decoded, after at least one batch: a read of 1 MiB of
/// compressed batches inflates at most about 1 MiB plus one batch, not every batch in it. Each
/// batch may inflate to at most `max_inflated` bytes (the topic's limit). A batch that cannot
/// be decoded (past that limit, or records malformed under a good CRC) ends the read before
/// it; when it is the first, the read is `Corrupt` with `resume_at` its end (its header is
/// covered by the CRC the engine checked, so its end is known).
fn decode_capped(
    raw: bytes::Bytes,
    offset: i64,
    max_bytes: usize,
    max_inflated: usize,
) -> Result<Vec<StoredRecord>> {
    let mut out = Vec::new();
    let mut decoded = 0usize;
    for (header, b) in batch::split_batches(raw) {
        if decoded > 0 && decoded >= max_bytes {
            break;
        }
        let (records, inflated) = match batch::decode_counted(&b, max_inflated) {
            Ok(decoded) => decoded,
            Err(_) if decoded > 0 => break,
            Err(e) => {
                let next = header.next_offset();
                return Err(e.resuming_at((next > offset).then_some(next)));
            }
        };
        decoded += inflated.max(1);
        out.extend(records.into_iter().filter(|r| r.offset >= offset));
    }
    Ok(out)
}

#[async_trait]
impl Log for LogEngine {
    async fn append(&self, topic: &str, records: Vec<Record>) -> Result<Vec<Appended>> {
        self.append_partial(topic, records)
            .await
            .map_err(|e| e.error)
    }

    /// Writes every partition's batches, then waits for each to be durable ([`append_records`]).
    #[instrument(level = "debug", skip_all, fields(topic = %topic, records = records.len()))]
    async fn append_partial(
        &self,
        topic: &str,
        records: Vec<Record>,
    ) -> std::result::Result<Vec<Appended>, AppendError> {
        append_records(self, topic, records).await
    }

    /// [`Log::append_partial`], each record's encoded headers copied into its batch as they are.
    #[instrument(level = "debug", skip_all, fields(topic = %topic, records = records.len()))]
    async fn append_prepared(
        &self,
        topic: &str,
        records: Vec<PreparedRecord>,
    ) -> std::result::Result<Vec<Appended>, AppendError> {
        append_records(self, topic, records).await
    }

    /// [`Log::append_prepared`] without copies: the records are encoded where they are.
    #[instrument(level = "debug", skip_all, fields(topic = %topic, records = records.len()))]
    async fn append_prepared_kept(
        &self,
        topic: &str,
        records: &[PreparedRecord],
    ) -> std::result::Result<Vec<Appended>, AppendError> {
        if records.iter().any(|r| r.timestamp_ms < 0) {
            // "Now" is filled in on copies.
            return append_records(self, topic, records.to_vec()).await;
        }
        append_encoded(records.len(), encode_records(self, topic, records)?).await
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
        let limit = self.max_inflated_bytes(topic);
        let raw = fetched.records;
        if !crate::partition::any_compressed(&raw) {
            return decode_capped(raw, offset, max_bytes, limit);
        }
        self.run_decompressing(move || decode_capped(raw, offset, max_bytes, limit))
            .await?
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

/// A record the engine appends: a [`Record`], or a [`PreparedRecord`] whose headers come
/// encoded.
pub(crate) trait Appendable: BatchRecord + Send + Sync {
    /// The partition asked for, if any.
    fn partition(&self) -> Option<i32>;
    /// Sets the create time.
    fn set_timestamp_ms(&mut self, ms: i64);
}

impl Appendable for Record {
    fn partition(&self) -> Option<i32> {
        self.partition
    }

    fn set_timestamp_ms(&mut self, ms: i64) {
        self.timestamp_ms = ms;
    }
}

impl Appendable for PreparedRecord {
    fn partition(&self) -> Option<i32> {
        None
    }

    fn set_timestamp_ms(&mut self, ms: i64) {
        self.timestamp_ms = ms;
    }
}

/// Writes every partition's batches, then waits for each to be durable. A write that fails
/// stops the writing; the batches already written are still waited for, and those that
/// became durable are reported in [`AppendError::written`].
async fn append_records<R: Appendable>(
    engine: &LogEngine,
    topic: &str,
    mut records: Vec<R>,
) -> std::result::Result<Vec<Appended>, AppendError> {
    let now = now_ms();
    for r in records.iter_mut().filter(|r| r.timestamp_ms() < 0) {
        r.set_timestamp_ms(now);
    }
    let encoded = encode_records(engine, topic, &records)?;
    // Encoded: the records (a header list each) are not held through the fsync wait.
    let count = records.len();
    drop(records);
    append_encoded(count, encoded).await
}

/// A partition's batches of an append: the partition, the places of its records in the call,
/// and the batches with how many records each holds.
type EncodedPartition = (i32, Arc<Partition>, Vec<usize>, Vec<(usize, BytesMut)>);

/// Encodes every partition's batches of `records` before any is written, so that a record too
/// large for the topic refuses the whole call with nothing stored (the gateway then isolates
/// it).
fn encode_records<R: Appendable>(
    engine: &LogEngine,
    topic: &str,
    records: &[R],
) -> Result<Vec<EncodedPartition>> {
    if records.is_empty() {
        return Ok(Vec::new());
    }
    let t = engine.topic_or_create(topic)?;
    let groups = assign_partitions(&t, records)?;
    let mut encoded = Vec::with_capacity(groups.len());
    for (p, idxs) in groups {
        let partition = t.partition(p)?.clone();
        let refs: Vec<&R> = idxs.iter().map(|&i| &records[i]).collect();
        let chunks = encode_chunks(&refs, partition.settings.max_message_bytes as usize)?;
        encoded.push((p, partition, idxs, chunks));
    }
    Ok(encoded)
}

/// Writes the encoded batches of an append of `count` records, then waits for each to be
/// durable: where each record landed, or which were durably written anyway.
async fn append_encoded(
    count: usize,
    encoded: Vec<EncodedPartition>,
) -> std::result::Result<Vec<Appended>, AppendError> {
    let mut out = vec![
        Appended {
            partition: 0,
            offset: 0
        };
        count
    ];
    let mut pending = Vec::new();
    let mut failure = None;
    'write: for (p, partition, idxs, chunks) in encoded {
        let mut done = 0;
        for (count, batch) in chunks {
            let written = batch::BatchHeader::parse(&batch)
                .ok_or_else(|| LogError::InvalidBatch("encoder produced a short batch".to_owned()))
                .and_then(|header| partition.write(batch, header));
            let written = match written {
                Ok(written) => written,
                Err(error) => {
                    failure = Some(error);
                    break 'write;
                }
            };
            pending.push((
                partition.clone(),
                written,
                p,
                idxs[done..done + count].to_vec(),
            ));
            done += count;
        }
    }
    let mut durable = Vec::new();
    for (partition, written, p, idxs) in pending {
        if let Err(error) = partition.wait_durable(&written).await {
            failure.get_or_insert(error);
            continue;
        }
        for (k, i) in idxs.into_iter().enumerate() {
            out[i] = Appended {
                partition: p,
                offset: written.base_offset + k as i64,
            };
            durable.push(i);
        }
    }
    match failure {
        None => Ok(out),
        Some(error) => {
            durable.sort_unstable();
            Err(AppendError {
                written: durable,
                error,
            })
        }
    }
}
