//! Reads for [`super::KafkaLog`]: one consumer assigned to one partition per partition read,
//! kept between reads so a reader that continues where it stopped streams without seeking.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::message::{Headers, Message};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

use super::errors::{classify, refused, unavailable};
use headwater_log::LogError;
use headwater_log::error::Result;
use headwater_log::{Header, PartitionOffsets, StoredRecord};

/// One partition's reader, shared by the calls that read it.
pub(super) type SharedReader = Arc<Mutex<Reader>>;

/// The readers, by partition.
pub(super) struct Readers {
    base: ClientConfig,
    map: Mutex<HashMap<(String, i32), SharedReader>>,
}

impl Readers {
    pub(super) fn new(base: ClientConfig) -> Self {
        Self {
            base,
            map: Mutex::new(HashMap::new()),
        }
    }

    /// The reader of one partition, made on first use.
    pub(super) fn get(&self, topic: &str, partition: i32) -> Result<SharedReader> {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(r) = map.get(&(topic.to_owned(), partition)) {
            return Ok(r.clone());
        }
        let consumer: BaseConsumer = super::consumer_config(&self.base, "headwater-reader")
            .set("fetch.wait.max.ms", "100")
            .set("queued.max.messages.kbytes", "8192")
            .create()
            .map_err(|e| refused("creating a reader", e))?;
        let reader = Arc::new(Mutex::new(Reader {
            consumer,
            topic: topic.to_owned(),
            partition,
            next: None,
        }));
        map.insert((topic.to_owned(), partition), reader.clone());
        Ok(reader)
    }

    /// Drops the readers of a deleted topic.
    pub(super) fn forget_topic(&self, topic: &str) {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        map.retain(|(t, _), _| t != topic);
    }
}

/// A consumer assigned to one partition and where it stands.
pub(super) struct Reader {
    consumer: BaseConsumer,
    topic: String,
    partition: i32,
    /// The offset the consumer delivers next, when assigned.
    next: Option<i64>,
}

impl Reader {
    /// Records from `offset` on, about `max_bytes` at most and at least one when any exists;
    /// waits up to `max_wait` when there are none yet. Blocking.
    pub(super) fn read(
        &mut self,
        meta: &BaseConsumer,
        offset: i64,
        max_bytes: usize,
        max_wait: Duration,
        timeout: Duration,
    ) -> Result<Vec<StoredRecord>> {
        if self.next != Some(offset) {
            let range = watermarks(meta, &self.topic, self.partition, timeout)?;
            if offset < range.log_start || offset > range.high_watermark {
                return Err(LogError::OffsetOutOfRange {
                    offset,
                    log_start: range.log_start,
                    high_watermark: range.high_watermark,
                });
            }
            self.assign(offset)?;
        }
        let mut deadline = Instant::now() + max_wait;
        let mut checked = false;
        let mut out = Vec::new();
        let mut bytes = 0usize;
        loop {
            let wait = if out.is_empty() {
                deadline.saturating_duration_since(Instant::now())
            } else {
                Duration::ZERO
            };
            let Some(polled) = self.consumer.poll(wait) else {
                // Nothing came: at the high watermark that is the answer; below it the
                // fetch is still on its way, and the contract is at least one record.
                if out.is_empty() && !checked {
                    checked = true;
                    let range = watermarks(meta, &self.topic, self.partition, timeout)?;
                    if offset < range.high_watermark {
                        deadline = Instant::now() + timeout;
                        continue;
                    }
                }
                break;
            };
            let message = match polled {
                Ok(message) => message,
                Err(e) => {
                    self.next = None;
                    return Err(poll_error(
                        meta,
                        (&self.topic, self.partition),
                        offset,
                        timeout,
                        e,
                    ));
                }
            };
            let record = stored(&message);
            self.next = Some(record.offset + 1);
            bytes += record.value.as_ref().map_or(0, Bytes::len)
                + record.key.as_ref().map_or(0, Bytes::len);
            out.push(record);
            if bytes >= max_bytes {
                break;
            }
        }
        Ok(out)
    }

    fn assign(&mut self, offset: i64) -> Result<()> {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(&self.topic, self.partition, Offset::Offset(offset))
            .map_err(|e| refused("building an assignment", e))?;
        self.consumer.assign(&tpl).map_err(|e| {
            unavailable(
                format!("reading {}/{} at {offset}", self.topic, self.partition),
                e,
            )
        })?;
        self.next = Some(offset);
        Ok(())
    }
}

/// A poll error as a [`LogError`].
fn poll_error(
    meta: &BaseConsumer,
    (topic, partition): (&str, i32),
    offset: i64,
    timeout: Duration,
    e: rdkafka::error::KafkaError,
) -> LogError {
    if e.rdkafka_error_code() == Some(RDKafkaErrorCode::OffsetOutOfRange) {
        return match watermarks(meta, topic, partition, timeout) {
            Ok(range) => LogError::OffsetOutOfRange {
                offset,
                log_start: range.log_start,
                high_watermark: range.high_watermark,
            },
            Err(e) => e,
        };
    }
    classify(format!("reading {topic}/{partition}"), e)
}

/// A message as a [`StoredRecord`].
fn stored(message: &rdkafka::message::BorrowedMessage<'_>) -> StoredRecord {
    let headers = message
        .headers()
        .map(|hs| {
            hs.iter()
                .map(|h| Header {
                    key: h.key.to_owned().into(),
                    value: h.value.map(Bytes::copy_from_slice),
                })
                .collect()
        })
        .unwrap_or_default();
    StoredRecord {
        offset: message.offset(),
        timestamp_ms: message.timestamp().to_millis().unwrap_or(-1),
        key: message.key().map(Bytes::copy_from_slice),
        value: message.payload().map(Bytes::copy_from_slice),
        headers,
    }
}

/// Whether fresh metadata (which also refreshes the client's cache) lists `partition` of
/// `topic`. Blocking.
fn partition_listed(meta: &BaseConsumer, topic: &str, partition: i32, timeout: Duration) -> bool {
    meta.fetch_metadata(Some(topic), timeout.max(Duration::from_millis(100)))
        .is_ok_and(|md| {
            md.topics()
                .iter()
                .any(|t| t.name() == topic && t.partitions().iter().any(|p| p.id() == partition))
        })
}

/// Log start and high watermark of a partition, retrying (within `timeout`) while a
/// partition has no leader yet, as right after it was created. Blocking.
pub(super) fn watermarks(
    meta: &BaseConsumer,
    topic: &str,
    partition: i32,
    timeout: Duration,
) -> Result<PartitionOffsets> {
    use RDKafkaErrorCode as C;
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let e = match meta.fetch_watermarks(topic, partition, left.max(Duration::from_millis(100)))
        {
            Ok((low, high)) => {
                return Ok(PartitionOffsets {
                    log_start: low,
                    high_watermark: high,
                });
            }
            Err(e) => e,
        };
        let code = e.rdkafka_error_code();
        // librdkafka says "unknown partition" (a local error) when its cached metadata shows
        // the partition without a leader, as a broker does for a moment during an election
        // or right after a creation: transient if fresh metadata shows the partition.
        let transient = match code {
            Some(C::NotLeaderForPartition | C::LeaderNotAvailable | C::UnknownTopicOrPartition) => {
                true
            }
            Some(C::UnknownPartition) => partition_listed(meta, topic, partition, left),
            _ => false,
        };
        if transient && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
            continue;
        }
        return Err(match code {
            Some(C::UnknownTopicOrPartition) => LogError::UnknownPartition {
                topic: topic.to_owned(),
                partition,
            },
            _ => unavailable(format!("reading the offsets of {topic}/{partition}"), e),
        });
    }
}
