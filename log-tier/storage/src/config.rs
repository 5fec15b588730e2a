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
    /// fsync every `interval_ms` in the background; acknowledged once written to the OS page
    /// cache and readable at once, as Kafka does with `flush.ms`: an acknowledged append
    /// survives a killed process, and a machine crash loses at most the last `interval_ms`.
    Background,
    /// Never fsync explicitly; acknowledged once written to the OS page cache.
    Os,
}

/// Flush policy of a topic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FlushPolicy {
    /// Flush mode. Default `interval`.
    pub mode: FlushMode,
    /// Interval between fsyncs for `interval` and `background` modes, in milliseconds.
    /// Default 100.
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

/// TLS on the Kafka listener (`log.kafka_tls`); off unless `cert_file` is set.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KafkaTlsConfig {
    /// PEM certificate chain; TLS is on when set. Default none (plaintext).
    pub cert_file: Option<String>,
    /// PEM private key of the certificate. Default none.
    pub key_file: Option<String>,
    /// PEM CA bundle that client certificates must chain to; when set, every client must
    /// present a valid certificate (mTLS). Default none.
    pub client_ca_file: Option<String>,
}

impl KafkaTlsConfig {
    /// Whether TLS is configured.
    pub fn enabled(&self) -> bool {
        self.cert_file.is_some()
    }
}

/// SASL on the Kafka listener (`log.kafka_sasl`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KafkaSaslConfig {
    /// Require SASL/PLAIN before any request but ApiVersions: the user name is a tenant, the
    /// password one of its API keys (`gateway.auth.keys`). Default false.
    pub enabled: bool,
}

/// The log tier's configuration (`log:` in headwater.yaml).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// Kafka-protocol listener address. Default `127.0.0.1:9092`.
    pub kafka_listen: String,
    /// Address advertised to Kafka clients in Metadata; defaults to `kafka_listen`.
    pub advertised_listener: Option<String>,
    /// TLS on the Kafka listener. Default off.
    pub kafka_tls: KafkaTlsConfig,
    /// SASL/PLAIN on the Kafka listener. Default off.
    pub kafka_sasl: KafkaSaslConfig,
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
    /// Bytes of log between two sparse index entries. Default 4096.
    pub index_interval_bytes: u64,
    /// How often retention runs, in milliseconds. Default 60000 (1 minute).
    pub retention_check_interval_ms: u64,
    /// Forget an idempotent producer's sequences after it has been idle this long, in
    /// milliseconds (Kafka's `producer.id.expiration.ms`). Default 86400000 (1 day).
    pub producer_expiry_ms: u64,
    /// How `headwater gateway` and `headwater router` reach the log tier (Headwater log nodes
    /// or an Apache Kafka cluster); unused by `serve` and `log-node`.
    pub client: crate::client_config::KafkaClientConfig,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            kafka_listen: "127.0.0.1:9092".to_owned(),
            advertised_listener: None,
            kafka_tls: KafkaTlsConfig::default(),
            kafka_sasl: KafkaSaslConfig::default(),
            auto_create_topics: true,
            default_partitions: 4,
            segment_bytes: 128 * 1024 * 1024,
            segment_ms: 24 * 3600 * 1000,
            retention_ms: 7 * 24 * 3600 * 1000,
            retention_bytes: None,
            flush: FlushPolicy::default(),
            max_message_bytes: 1024 * 1024,
            topics: BTreeMap::new(),
            index_interval_bytes: 4096,
            retention_check_interval_ms: 60_000,
            producer_expiry_ms: 24 * 3600 * 1000,
            client: crate::client_config::KafkaClientConfig::default(),
        }
    }
}

impl KafkaTlsConfig {
    /// Checks that the files come in working combinations.
    fn validate(&self) -> Vec<(String, String)> {
        let mut errors = Vec::new();
        if self.cert_file.is_some() != self.key_file.is_some() {
            errors.push((
                "log.kafka_tls".to_owned(),
                "cert_file and key_file go together".to_owned(),
            ));
        }
        if self.client_ca_file.is_some() && !self.enabled() {
            errors.push((
                "log.kafka_tls.client_ca_file".to_owned(),
                "needs log.kafka_tls.cert_file and key_file".to_owned(),
            ));
        }
        errors
    }
}

/// Largest segment: positions in the sparse index are 32-bit.
pub const MAX_SEGMENT_BYTES: u64 = 1 << 31;

/// The settings of one topic after applying its overrides to the log-wide defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicSettings {
    /// Partitions of the topic when it is created.
    pub partitions: u32,
    /// Retention by age in milliseconds.
    pub retention_ms: u64,
    /// Retention by size per partition in bytes.
    pub retention_bytes: Option<u64>,
    /// Segment roll size in bytes.
    pub segment_bytes: u64,
    /// Segment roll age in milliseconds.
    pub segment_ms: u64,
    /// Flush policy.
    pub flush: FlushPolicy,
    /// Largest record batch accepted, in bytes.
    pub max_message_bytes: u32,
    /// Bytes between sparse index entries.
    pub index_interval_bytes: u64,
    /// Idle time after which an idempotent producer is forgotten, in milliseconds.
    pub producer_expiry_ms: u64,
}

impl LogConfig {
    /// Resolves the settings of `topic`: its override, else the defaults.
    pub fn topic_settings(&self, topic: &str) -> TopicSettings {
        let o = self.topics.get(topic).cloned().unwrap_or_default();
        TopicSettings {
            partitions: o.partitions.unwrap_or(self.default_partitions).max(1),
            retention_ms: o.retention_ms.unwrap_or(self.retention_ms),
            retention_bytes: o.retention_bytes.or(self.retention_bytes),
            segment_bytes: o
                .segment_bytes
                .unwrap_or(self.segment_bytes)
                .clamp(4096, MAX_SEGMENT_BYTES),
            segment_ms: o.segment_ms.unwrap_or(self.segment_ms),
            flush: o.flush.unwrap_or_else(|| self.flush.clone()),
            max_message_bytes: o.max_message_bytes.unwrap_or(self.max_message_bytes),
            index_interval_bytes: self.index_interval_bytes.max(1),
            producer_expiry_ms: self.producer_expiry_ms,
        }
    }

    /// Checks the wiring; returns every problem found as `(key path, message)`.
    pub fn validate(&self) -> Vec<(String, String)> {
        let mut errors = Vec::new();
        if self.kafka_listen.parse::<std::net::SocketAddr>().is_err() {
            errors.push((
                "log.kafka_listen".to_owned(),
                format!(
                    "`{}` is not a socket address (host:port)",
                    self.kafka_listen
                ),
            ));
        }
        errors.extend(self.kafka_tls.validate());
        if self.default_partitions == 0 {
            errors.push((
                "log.default_partitions".to_owned(),
                "must be at least 1".to_owned(),
            ));
        }
        if self.segment_bytes < 4096 || self.segment_bytes > MAX_SEGMENT_BYTES {
            errors.push((
                "log.segment_bytes".to_owned(),
                format!("must be between 4096 and {MAX_SEGMENT_BYTES}"),
            ));
        }
        if self.max_message_bytes < 1024 {
            errors.push((
                "log.max_message_bytes".to_owned(),
                "must be at least 1024".to_owned(),
            ));
        }
        if self.retention_check_interval_ms == 0 {
            errors.push((
                "log.retention_check_interval_ms".to_owned(),
                "must be at least 1".to_owned(),
            ));
        }
        if matches!(self.flush.mode, FlushMode::Interval | FlushMode::Background)
            && self.flush.interval_ms == 0
        {
            errors.push((
                "log.flush.interval_ms".to_owned(),
                "must be at least 1 in interval mode".to_owned(),
            ));
        }
        errors.extend(
            self.client
                .validate()
                .into_iter()
                .map(|(key, message)| (format!("log.client.{key}"), message)),
        );
        for (name, topic) in &self.topics {
            if topic.partitions == Some(0) {
                errors.push((
                    format!("log.topics.{name}.partitions"),
                    "must be at least 1".to_owned(),
                ));
            }
            if topic
                .segment_bytes
                .is_some_and(|b| !(4096..=MAX_SEGMENT_BYTES).contains(&b))
            {
                errors.push((
                    format!("log.topics.{name}.segment_bytes"),
                    format!("must be between 4096 and {MAX_SEGMENT_BYTES}"),
                ));
            }
            if topic.flush.as_ref().is_some_and(|f| {
                matches!(f.mode, FlushMode::Interval | FlushMode::Background) && f.interval_ms == 0
            }) {
                errors.push((
                    format!("log.topics.{name}.flush.interval_ms"),
                    "must be at least 1 in interval mode".to_owned(),
                ));
            }
            if crate::topic::check_name(name).is_err() {
                errors.push((
                    format!("log.topics.{name}"),
                    "is not a valid topic name".to_owned(),
                ));
            }
        }
        errors
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_validate_and_overrides_apply() {
        let mut config = LogConfig::default();
        assert!(config.validate().is_empty());
        config.topics.insert(
            "events".to_owned(),
            TopicConfig {
                partitions: Some(8),
                flush: Some(FlushPolicy {
                    mode: FlushMode::EveryAppend,
                    interval_ms: 0,
                }),
                ..TopicConfig::default()
            },
        );
        let s = config.topic_settings("events");
        assert_eq!(s.partitions, 8);
        assert_eq!(s.flush.mode, FlushMode::EveryAppend);
        assert_eq!(config.topic_settings("other").partitions, 4);
        config
            .topics
            .insert("bad/name".to_owned(), TopicConfig::default());
        assert_eq!(config.validate().len(), 1);
    }

    #[test]
    fn kafka_security_is_off_by_default_and_tls_files_go_together() {
        let mut config = LogConfig::default();
        assert!(!config.kafka_tls.enabled() && !config.kafka_sasl.enabled);
        config.kafka_tls.key_file = Some("key.pem".to_owned());
        config.kafka_tls.client_ca_file = Some("ca.pem".to_owned());
        let keys: Vec<String> = config.validate().into_iter().map(|(k, _)| k).collect();
        assert_eq!(keys, ["log.kafka_tls", "log.kafka_tls.client_ca_file"]);
        config.kafka_tls.cert_file = Some("cert.pem".to_owned());
        assert!(config.validate().is_empty());
        let parsed: Result<LogConfig, _> =
            serde_json::from_str(r#"{"kafka_tls": {"cert_file": "c", "key": "k"}}"#);
        assert!(parsed.is_err(), "unknown keys are refused");
        let parsed: LogConfig = serde_json::from_str(r#"{"kafka_sasl": {"enabled": true}}"#)
            .expect("kafka_sasl parses");
        assert!(parsed.kafka_sasl.enabled);
    }
}
