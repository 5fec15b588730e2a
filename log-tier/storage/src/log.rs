//! The `Log` trait: the in-process seam the gateway and router use (append by partition or key,
//! read, offsets, consumer-group commits, topic admin), and its record types.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use tokio::sync::watch;

use crate::error::LogError;

/// One record header; keys may repeat, order is kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// Header name: borrowed when it is a constant (the envelope's `hw.*` names, which every
    /// record of the gateway carries, need no allocation), owned when read back or built.
    pub key: Cow<'static, str>,
    /// Header value; `None` is Kafka's null.
    pub value: Option<Bytes>,
}

impl From<(String, Bytes)> for Header {
    /// A header with a value (e.g. one of `Envelope::to_headers`).
    fn from((key, value): (String, Bytes)) -> Self {
        Self {
            key: Cow::Owned(key),
            value: Some(value),
        }
    }
}

/// A record to append.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Record {
    /// Target partition; `None` picks one by key (Kafka's murmur2), else round-robin.
    pub partition: Option<i32>,
    /// Record key (Headwater: the source id).
    pub key: Option<Bytes>,
    /// Record value (Headwater: the payload as received).
    pub value: Option<Bytes>,
    /// Record headers (Headwater: the envelope).
    pub headers: Vec<Header>,
    /// Create time in milliseconds since the epoch; negative means "now".
    pub timestamp_ms: i64,
}

/// Record headers already in RecordBatch v2 form: `count` headers laid end to end in
/// `encoded`, each a varint key length, the key, a varint value length (-1: null) and the value,
/// as [`crate::batch::HeadersWriter`] writes them. A writer that builds many records alike (the
/// gateway) writes them once, where it writes the values, instead of a [`Header`] list per
/// record that the log then copies into its batch.
///
/// Made only by [`crate::batch::HeadersWriter`] (or empty, by `default`), so the bytes are
/// always well formed: the log copies them into its batches without reading them again.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct EncodedHeaders {
    /// How many headers `encoded` holds.
    pub(crate) count: u32,
    /// The headers, encoded.
    pub(crate) encoded: Bytes,
}

impl EncodedHeaders {
    /// How many headers there are.
    #[must_use]
    pub fn count(&self) -> u32 {
        self.count
    }

    /// The headers as a list (names of the envelope borrowed, as a read gives them).
    pub fn decode(&self) -> Result<Vec<Header>, LogError> {
        crate::batch::decode_headers(self)
            .map_err(|e| LogError::InvalidArgument(format!("encoded headers: {e}")))
    }
}

/// A record to append whose headers come encoded ([`Log::append_prepared`]).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PreparedRecord {
    /// Record key; the partition is chosen by it (Kafka's murmur2), else round-robin.
    pub key: Option<Bytes>,
    /// Record value.
    pub value: Option<Bytes>,
    /// Record headers, encoded.
    pub headers: EncodedHeaders,
    /// Create time in milliseconds since the epoch; negative means "now".
    pub timestamp_ms: i64,
}

impl PreparedRecord {
    /// The same record with its headers as a list.
    pub fn into_record(self) -> Result<Record, LogError> {
        Ok(Record {
            partition: None,
            headers: self.headers.decode()?,
            key: self.key,
            value: self.value,
            timestamp_ms: self.timestamp_ms,
        })
    }
}

/// Where an appended record landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    /// Partition.
    pub partition: i32,
    /// Offset.
    pub offset: i64,
}

/// A failed [`Log::append_partial`]: the error, and which records were durably written before
/// it (partitions that succeeded before another failed).
#[derive(Debug)]
pub struct AppendError {
    /// Indices into the appended records of those durably written, ascending.
    pub written: Vec<usize>,
    /// Why the rest was not.
    pub error: LogError,
}

impl From<LogError> for AppendError {
    /// Nothing written.
    fn from(error: LogError) -> Self {
        Self {
            written: Vec::new(),
            error,
        }
    }
}

/// A record read back from the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRecord {
    /// Offset in its partition.
    pub offset: i64,
    /// Timestamp in milliseconds since the epoch.
    pub timestamp_ms: i64,
    /// Record key.
    pub key: Option<Bytes>,
    /// Record value.
    pub value: Option<Bytes>,
    /// Record headers in stored order.
    pub headers: Vec<Header>,
}

/// The readable range of a partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionOffsets {
    /// First offset still held (moves forward with retention).
    pub log_start: i64,
    /// Offset the next durable record gets; reads see offsets below it.
    pub high_watermark: i64,
}

/// The partitions a group member owns: `(topic, partition)` pairs, sorted.
pub type Assignment = Arc<[(String, i32)]>;

/// A live membership of a consumer group, from [`Log::join_group`]. The group's coordinator
/// splits the topics' partitions among its members and moves them on join, leave and session
/// timeout; dropping the membership leaves the group.
pub trait GroupMembership: Send + Sync {
    /// The partitions this member owns now; changes on every rebalance (empty while one is in
    /// progress or before the first assignment).
    fn assignment(&self) -> watch::Receiver<Assignment>;

    /// Says the member has stopped working on every partition it no longer owns (delivered and
    /// committed what it had). A rebalance that takes partitions away waits for this, up to a
    /// bound, before the group hands them to another member, so two members never work on one
    /// partition at once. Calling it when nothing is pending does nothing.
    fn released(&self) {}
}

/// The log as the gateway and router see it. Implemented by [`crate::LogEngine`] (durable,
/// embedded), [`crate::MemoryLog`] (tests) and, in crate `headwater-kafka-client`,
/// `KafkaLog` (Headwater log nodes or an Apache Kafka cluster over the Kafka protocol).
#[async_trait]
pub trait Log: Send + Sync + 'static {
    /// Appends; partition chosen by `record.partition`, else by key with Kafka's murmur2 default
    /// partitioner (so keys land where Kafka clients put them), else round-robin. Resolves only
    /// once durable under the topic's flush policy. Records for one partition go in as one
    /// RecordBatch. Returns one [`Appended`] per record, in input order. On error nothing is
    /// acknowledged, but records bound for other partitions may already be stored: retrying
    /// gives at-least-once, never loss. [`Log::append_partial`] says which.
    async fn append(&self, topic: &str, records: Vec<Record>) -> Result<Vec<Appended>, LogError>;

    /// [`Log::append`], saying on error which records were durably written anyway, so a caller
    /// that records what was written (the gateway's dedup) can retry only the rest. The default
    /// says none were: right for a log that writes all or nothing, and for one that cannot tell
    /// (at least once, as before).
    async fn append_partial(
        &self,
        topic: &str,
        records: Vec<Record>,
    ) -> Result<Vec<Appended>, AppendError> {
        Ok(self.append(topic, records).await?)
    }

    /// [`Log::append_partial`] for records whose headers come encoded. The default decodes
    /// each record's headers into a list and appends those records; [`crate::LogEngine`]
    /// copies the encoded headers into its batches as they are.
    async fn append_prepared(
        &self,
        topic: &str,
        records: Vec<PreparedRecord>,
    ) -> Result<Vec<Appended>, AppendError> {
        let records = records
            .into_iter()
            .map(PreparedRecord::into_record)
            .collect::<Result<Vec<_>, LogError>>()?;
        self.append_partial(topic, records).await
    }

    /// [`Log::append_prepared`] of records the caller keeps (to append them again, in parts,
    /// after the log refused them together as too large). The default appends copies of them;
    /// [`crate::LogEngine`] encodes them where they are.
    async fn append_prepared_kept(
        &self,
        topic: &str,
        records: &[PreparedRecord],
    ) -> Result<Vec<Appended>, AppendError> {
        self.append_prepared(topic, records.to_vec()).await
    }

    /// Reads records from `offset` on, at most about `max_bytes` of records as decoded (after
    /// decompression; at least one batch when any exists). When `offset` is the high watermark,
    /// waits up to `max_wait` for new records and returns an empty vector if none came. Offsets
    /// outside `[log_start, high_watermark]` fail with [`LogError::OffsetOutOfRange`]. Records
    /// that cannot be read back fail with [`LogError::Corrupt`], whose
    /// [`LogError::resume_at`], when known, is where a reader may go on past them.
    async fn read(
        &self,
        topic: &str,
        partition: i32,
        offset: i64,
        max_bytes: usize,
        max_wait: Duration,
    ) -> Result<Vec<StoredRecord>, LogError>;

    /// Log start and high watermark of a partition.
    async fn offsets(&self, topic: &str, partition: i32) -> Result<PartitionOffsets, LogError>;

    /// Durably stores a consumer group's next offset to read.
    async fn commit(
        &self,
        group: &str,
        topic: &str,
        partition: i32,
        offset: i64,
    ) -> Result<(), LogError>;

    /// The offset last committed by `group`, if any.
    async fn committed(
        &self,
        group: &str,
        topic: &str,
        partition: i32,
    ) -> Result<Option<i64>, LogError>;

    /// Creates a topic; Ok if it exists with the same partition count.
    async fn create_topic(&self, topic: &str, partitions: u32) -> Result<(), LogError>;

    /// Deletes a topic, its data and its committed offsets.
    async fn delete_topic(&self, topic: &str) -> Result<(), LogError>;

    /// Partition count; auto-creates the topic per config when enabled.
    async fn partitions(&self, topic: &str) -> Result<u32, LogError>;

    /// Names of all topics, sorted.
    async fn list_topics(&self) -> Result<Vec<String>, LogError>;

    /// Makes everything appended so far durable.
    async fn flush(&self) -> Result<(), LogError>;

    /// Joins `group` as one member consuming `topics`, so several processes split the
    /// partitions between them. `None` means the log is local to this process (embedded or in
    /// memory): there is no one to share with and the caller reads every partition. Offsets
    /// are still committed with [`Log::commit`] (under a group id that has no members).
    async fn join_group(
        &self,
        group: &str,
        topics: &[String],
    ) -> Result<Option<Box<dyn GroupMembership>>, LogError> {
        let _ = (group, topics);
        Ok(None)
    }

    /// Ok when an append would be accepted now (used by /readyz): e.g. the data dir is writable
    /// and not full.
    async fn check_writable(&self) -> Result<(), LogError>;
}

/// Kafka's murmur2 hash (the Java client's `Utils.murmur2`), seed `0x9747b28c`.
pub fn murmur2(data: &[u8]) -> i32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    let len = data.len();
    let mut h: u32 = SEED ^ (len as u32);
    let chunks = data.chunks_exact(4);
    let tail = chunks.remainder();
    for c in chunks {
        let mut k = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    if tail.len() >= 3 {
        h ^= u32::from(tail[2]) << 16;
    }
    if tail.len() >= 2 {
        h ^= u32::from(tail[1]) << 8;
    }
    if !tail.is_empty() {
        h ^= u32::from(tail[0]);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

/// Kafka's default partition for a keyed record: `toPositive(murmur2(key)) % partitions`.
pub fn partition_for_key(key: &[u8], partitions: u32) -> i32 {
    let positive = (murmur2(key) & 0x7fff_ffff) as u32;
    (positive % partitions.max(1)) as i32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn murmur2_matches_kafka_test_vectors() {
        // From Kafka's UtilsTest.testMurmur2.
        assert_eq!(murmur2(b"21"), -973932308);
        assert_eq!(murmur2(b"foobar"), -790332482);
        assert_eq!(murmur2(b"a-little-bit-long-string"), -985981536);
        assert_eq!(murmur2(b"a-little-bit-longer-string"), -1486304829);
        assert_eq!(
            murmur2(b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8"),
            -58897971
        );
        assert_eq!(murmur2(b"abc"), 479470107);
    }

    #[test]
    fn partition_for_key_is_in_range_and_stable() {
        for n in 1..20u32 {
            let p = partition_for_key(b"device-42", n);
            assert!((0..n as i32).contains(&p));
            assert_eq!(p, partition_for_key(b"device-42", n));
        }
    }
}
