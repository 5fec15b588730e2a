//! Configuration of the log tier: listener, topic defaults and per-topic overrides.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// When an append counts as durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FlushMode {
    /// fsync before every acknowledgement (concurrent appenders share one fsync).
    EveryAppend,
    /// fsync at most every `interval_ms`; acknowledgements wait for the next fsync.
    Interval,
    /// Never fsync explicitly; acknowledged once written to the OS page cache.
    Os,
}

/// Flush policy of a topic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FlushPolicy {
    /// Flush mode. Default `interval`.
    pub mode: FlushMode,
    /// Interval between fsyncs for `interval` mode, in milliseconds. Default 100.
    pub interval_ms: u64,
}

impl Default for FlushPolicy {
    fn default() -> Self {
        Self {
            mode: FlushMode::Interval,
            interval_ms: 100,
        }
    }
}

/// Settings of one topic; every field falls back to the log-wide default.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TopicConfig {
    /// Number of partitions.
    pub partitions: Option<u32>,
    /// Delete segments older than this, in milliseconds.
    pub retention_ms: Option<u64>,
    /// Delete oldest segments while a partition holds more than this many bytes.
    pub retention_bytes: Option<u64>,
    /// Roll a new segment at this size, in bytes.
    pub segment_bytes: Option<u64>,
    /// Roll a new segment after this age, in milliseconds.
    pub segment_ms: Option<u64>,
    /// Flush policy.
    pub flush: Option<FlushPolicy>,
    /// Largest record batch accepted, in bytes.
    pub max_message_bytes: Option<u32>,
}

/// The log tier's configuration (`log:` in headwater.yaml).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// Kafka-protocol listener address. Default `127.0.0.1:9092`.
    pub kafka_listen: String,
    /// Address advertised to Kafka clients in Metadata; defaults to `kafka_listen`.
    pub advertised_listener: Option<String>,
    /// Create a topic on first use with the defaults below. Default true.
    pub auto_create_topics: bool,
    /// Partitions of an auto-created topic. Default 4.
    pub default_partitions: u32,
    /// Segment roll size in bytes. Default 128 MiB.
    pub segment_bytes: u64,
    /// Segment roll age in milliseconds. Default 1 day.
    pub segment_ms: u64,
    /// Retention by age in milliseconds. Default 7 days.
    pub retention_ms: u64,
    /// Retention by size per partition in bytes; none by default.
    pub retention_bytes: Option<u64>,
    /// Default flush policy. Default: fsync every 100 ms.
    pub flush: FlushPolicy,
    /// Largest record batch accepted, in bytes. Default 1 MiB.
    pub max_message_bytes: u32,
    /// Per-topic overrides, by topic name.
    pub topics: BTreeMap<String, TopicConfig>,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            kafka_listen: "127.0.0.1:9092".to_owned(),
            advertised_listener: None,
            auto_create_topics: true,
            default_partitions: 4,
            segment_bytes: 128 * 1024 * 1024,
            segment_ms: 24 * 3600 * 1000,
            retention_ms: 7 * 24 * 3600 * 1000,
            retention_bytes: None,
            flush: FlushPolicy::default(),
            max_message_bytes: 1024 * 1024,
            topics: BTreeMap::new(),
        }
    }
}

impl LogConfig {
    /// Checks the wiring; returns every problem found as `(key path, message)`.
    pub fn validate(&self) -> Vec<(String, String)> {
        let mut errors = Vec::new();
        if self.kafka_listen.parse::<std::net::SocketAddr>().is_err() {
            errors.push((
                "log.kafka_listen".to_owned(),
                format!("`{}` is not a socket address (host:port)", self.kafka_listen),
            ));
        }
        if self.default_partitions == 0 {
            errors.push(("log.default_partitions".to_owned(), "must be at least 1".to_owned()));
        }
        if self.segment_bytes < 4096 {
            errors.push(("log.segment_bytes".to_owned(), "must be at least 4096".to_owned()));
        }
        if self.flush.mode == FlushMode::Interval && self.flush.interval_ms == 0 {
            errors.push((
                "log.flush.interval_ms".to_owned(),
                "must be at least 1 in interval mode".to_owned(),
            ));
        }
        for (name, topic) in &self.topics {
            if topic.partitions == Some(0) {
                errors.push((format!("log.topics.{name}.partitions"), "must be at least 1".to_owned()));
            }
        }
        errors
    }
}
