//! `type: topic`: the topic sink's configuration (one routes.yaml entry; it inherits the
//! `sinks.kafka` defaults of headwater.yaml), its defaults and its validation.

use std::collections::BTreeMap;
use std::fmt;

use headwater_log::client_config::RedactedMap;
use serde::{Deserialize, Serialize};
use yaml_serde::Value;

use crate::config::{KindConfig, Problems, SinksConfig, Together};

/// `type: topic`: records into a topic, key preserved, envelope as `hw.*` headers. Its
/// `Debug` redacts the values of secret `options` (`sasl.password`, …).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TopicConfig {
    /// Name for metrics and logs. Default empty (the label is `topic`).
    pub name: String,
    /// Destination topic. Required.
    pub topic: String,
    /// External Kafka `bootstrap.servers`. Default empty: the internal log.
    pub brokers: String,
    /// Extra librdkafka producer properties (e.g. `security.protocol`). Default none.
    pub options: BTreeMap<String, String>,
    /// How long the Kafka producer keeps trying one record, in milliseconds. Default 30000.
    pub message_timeout_ms: u64,
    /// Largest append to the internal log, in bytes (keep under `log.max_message_bytes`).
    /// Default 512 KiB.
    pub max_append_bytes: u64,
}

impl Default for TopicConfig {
    fn default() -> Self {
        Self {
            name: String::new(),
            topic: String::new(),
            brokers: String::new(),
            options: BTreeMap::new(),
            message_timeout_ms: 30_000,
            max_append_bytes: 512 * 1024,
        }
    }
}

impl fmt::Debug for TopicConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TopicConfig")
            .field("name", &self.name)
            .field("topic", &self.topic)
            .field("brokers", &self.brokers)
            .field("options", &RedactedMap(&self.options))
            .field("message_timeout_ms", &self.message_timeout_ms)
            .field("max_append_bytes", &self.max_append_bytes)
            .finish()
    }
}

impl KindConfig for TopicConfig {
    /// An entry naming its own cluster takes neither the default brokers nor their options.
    const TOGETHER: Together = &[(&["brokers"], &["brokers", "options"])];

    fn defaults(sinks: &SinksConfig) -> Result<Value, yaml_serde::Error> {
        yaml_serde::to_value(&sinks.kafka)
    }

    fn validate(&self, problems: &mut Problems) {
        if self.topic.is_empty() {
            problems.add("topic", "required");
        } else if let Err(e) = headwater_log::check_topic_name(&self.topic) {
            problems.add("topic", e.to_string());
        }
        if self.message_timeout_ms == 0 {
            problems.add("message_timeout_ms", "must be positive");
        }
        if self.max_append_bytes < 1024 {
            problems.add("max_append_bytes", "must be at least 1024");
        }
        for key in self.options.keys() {
            if key == "enable.idempotence" || key == "bootstrap.servers" {
                problems.add(&format!("options.{key}"), "is set by the sink; remove it");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_redacts_secret_options() {
        let mut config = TopicConfig {
            topic: "mirror".to_owned(),
            ..TopicConfig::default()
        };
        config
            .options
            .insert("sasl.password".to_owned(), "hunter2".to_owned());
        config
            .options
            .insert("sasl.username".to_owned(), "router".to_owned());
        let shown = format!("{config:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains(r#""sasl.password": <redacted>"#), "{shown}");
        assert!(shown.contains(r#""sasl.username": "router""#), "{shown}");
    }
}
