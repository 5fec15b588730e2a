//! Reads every partition of the given topics back through the Kafka protocol, from the low to
//! the high watermark taken after the run, and counts this run's events by the `hw.id` header.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use headwater_schemas::headers;
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{Offset, TopicPartitionList};

use crate::error::LoadtestError;
use crate::fleet::parse_id;
use crate::ledger::Tally;

/// What one read-back found.
#[derive(Debug, Clone)]
pub struct KafkaRead {
    /// Copies per event of this run.
    pub tally: Tally,
    /// Records read (all runs).
    pub records: u64,
}

/// Where each partition ended before the run: nothing of the run can be earlier.
pub type StartOffsets = HashMap<(String, i32), i64>;

/// The longest a read-back may take while it keeps making progress.
const MAX_READ: Duration = Duration::from_secs(1800);

fn consumer(bootstrap: &str, run: &str) -> Result<BaseConsumer, LoadtestError> {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", format!("headwater-loadtest-verify-{run}"))
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        .create()
        .map_err(LoadtestError::Kafka)
}

/// The high watermark of every existing partition of `topics` (blocking).
pub fn start_offsets(
    bootstrap: &str,
    topics: &[String],
    run: &str,
    timeout: Duration,
) -> Result<StartOffsets, LoadtestError> {
    let c = consumer(bootstrap, run)?;
    let mut offsets = HashMap::new();
    for (topic, partition, _, high) in watermarks(&c, topics, timeout)? {
        offsets.insert((topic, partition), high);
    }
    Ok(offsets)
}

/// Reads `topics` at `bootstrap` from `from` (or the low watermark) to the high watermark
/// (blocking; run it on a blocking thread). Fails when no record arrives for `stall`.
pub fn read_ids(
    bootstrap: &str,
    topics: &[String],
    run: &str,
    len: usize,
    from: &StartOffsets,
    stall: Duration,
) -> Result<KafkaRead, LoadtestError> {
    let consumer = consumer(bootstrap, run)?;
    let deadline = Instant::now() + MAX_READ;
    let mut ends = assign_all(&consumer, topics, from, stall)?;
    let mut read = KafkaRead {
        tally: Tally::new(len),
        records: 0,
    };
    let mut last = Instant::now();
    while !ends.is_empty() && Instant::now() < deadline && last.elapsed() < stall {
        let Some(msg) = consumer.poll(Duration::from_millis(200)) else {
            continue;
        };
        last = Instant::now();
        let msg = msg.map_err(LoadtestError::Kafka)?;
        read.records += 1;
        if let Some(seq) = msg.headers().and_then(|h| id_of(h, run)) {
            read.tally.add(seq);
        }
        let key = (msg.topic().to_owned(), msg.partition());
        if ends.get(&key).is_some_and(|end| msg.offset() + 1 >= *end) {
            ends.remove(&key);
        }
    }
    if ends.is_empty() {
        Ok(read)
    } else {
        Err(LoadtestError::Verify(format!(
            "{} partition(s) of {topics:?} not read to the end (no record for {stall:?}, or {MAX_READ:?} in all)",
            ends.len()
        )))
    }
}

/// (topic, partition, low, high) of every partition of `topics`.
fn watermarks(
    consumer: &BaseConsumer,
    topics: &[String],
    timeout: Duration,
) -> Result<Vec<(String, i32, i64, i64)>, LoadtestError> {
    let mut out = Vec::new();
    for topic in topics {
        let md = consumer
            .fetch_metadata(Some(topic), timeout)
            .map_err(LoadtestError::Kafka)?;
        for t in md.topics().iter().filter(|t| t.name() == topic) {
            for p in t.partitions() {
                let (low, high) = consumer
                    .fetch_watermarks(topic, p.id(), timeout)
                    .map_err(LoadtestError::Kafka)?;
                out.push((topic.clone(), p.id(), low, high));
            }
        }
    }
    Ok(out)
}

/// Assigns every partition with records past its start; returns the high watermarks.
fn assign_all(
    consumer: &BaseConsumer,
    topics: &[String],
    from: &StartOffsets,
    timeout: Duration,
) -> Result<HashMap<(String, i32), i64>, LoadtestError> {
    let mut tpl = TopicPartitionList::new();
    let mut ends = HashMap::new();
    for (topic, partition, low, high) in watermarks(consumer, topics, timeout)? {
        let key = (topic, partition);
        let start = from.get(&key).copied().unwrap_or(low).max(low);
        if high > start {
            tpl.add_partition_offset(&key.0, partition, Offset::Offset(start))
                .map_err(LoadtestError::Kafka)?;
            ends.insert(key, high);
        }
    }
    consumer.assign(&tpl).map_err(LoadtestError::Kafka)?;
    Ok(ends)
}

fn id_of<H: Headers>(headers: &H, run: &str) -> Option<u64> {
    headers
        .iter()
        .filter(|h| h.key == headers::ID)
        .filter_map(|h| h.value.and_then(|v| std::str::from_utf8(v).ok()))
        .last()
        .and_then(|id| parse_id(run, id))
}
