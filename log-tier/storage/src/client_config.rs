//! Configuration of the Kafka-protocol client (`KafkaLog`, crate `headwater-kafka-client`): which
//! brokers to reach and how (`log.client:` in headwater.yaml), used by `headwater gateway` and
//! `headwater router`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// How the gateway and the router reach a log tier that is not embedded: Headwater log nodes
/// or an Apache Kafka cluster, over the Kafka protocol.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KafkaClientConfig {
    /// Bootstrap brokers, `host:port[,host:port…]`. Default `127.0.0.1:9092` (a local
    /// `headwater log-node`).
    pub brokers: String,
    /// Client id reported to the brokers. Default `headwater`.
    pub client_id: String,
    /// Replication factor of the topics this client creates; -1 takes the broker's default.
    /// Default -1.
    pub replication_factor: i16,
    /// Create a topic on first use with `default_partitions` partitions (as the embedded log
    /// does); when false, unknown topics are errors. Default true.
    pub auto_create_topics: bool,
    /// Partitions of a topic created on first use. Default 4.
    pub default_partitions: u32,
    /// How long a metadata, offset or admin request may take, in milliseconds. Default 10000.
    pub request_timeout_ms: u64,
    /// How long an append may wait for the brokers' acknowledgement (librdkafka's
    /// `message.timeout.ms`), in milliseconds. Default 30000.
    pub message_timeout_ms: u64,
    /// How long the producer waits to fill a batch (`linger.ms`), in milliseconds. Default 2.
    pub linger_ms: u64,
    /// Extra librdkafka properties, applied to every client (e.g. `security.protocol`,
    /// `sasl.mechanisms`, `sasl.username`, `ssl.ca.location`); numbers and booleans are
    /// taken as their text. Empty by default.
    #[serde(deserialize_with = "scalar_map")]
    pub properties: BTreeMap<String, String>,
}

impl Default for KafkaClientConfig {
    fn default() -> Self {
        Self {
            brokers: "127.0.0.1:9092".to_owned(),
            client_id: "headwater".to_owned(),
            replication_factor: -1,
            auto_create_topics: true,
            default_partitions: 4,
            request_timeout_ms: 10_000,
            message_timeout_ms: 30_000,
            linger_ms: 2,
            properties: BTreeMap::new(),
        }
    }
}

/// A YAML or env scalar (`1`, `true`, `PLAIN`) as librdkafka's text.
#[derive(Deserialize)]
#[serde(untagged)]
enum Scalar {
    Text(String),
    Int(i64),
    Float(f64),
    Bool(bool),
}

fn scalar_map<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<BTreeMap<String, String>, D::Error> {
    let raw = BTreeMap::<String, Scalar>::deserialize(d)?;
    Ok(raw
        .into_iter()
        .map(|(k, v)| {
            let text = match v {
                Scalar::Text(s) => s,
                Scalar::Int(i) => i.to_string(),
                Scalar::Float(f) => f.to_string(),
                Scalar::Bool(b) => b.to_string(),
            };
            (k, text)
        })
        .collect())
}

/// librdkafka properties a user may not override: the ones the `Log` contract depends on.
const RESERVED: &[&str] = &[
    "bootstrap.servers",
    "enable.idempotence",
    "acks",
    "enable.auto.commit",
    "enable.auto.offset.store",
    "auto.offset.reset",
    "group.id",
];

impl KafkaClientConfig {
    /// Every problem as `(key path under `log.client`, message)`.
    pub fn validate(&self) -> Vec<(String, String)> {
        let mut errors = Vec::new();
        let bad = self.brokers.split(',').map(str::trim).any(|b| {
            b.rsplit_once(':')
                .is_none_or(|(host, port)| host.is_empty() || port.parse::<u16>().is_err())
        });
        if bad {
            errors.push((
                "brokers".to_owned(),
                format!("`{}` is not a list of host:port", self.brokers),
            ));
        }
        if self.replication_factor == 0 || self.replication_factor < -1 {
            errors.push((
                "replication_factor".to_owned(),
                "must be -1 (broker default) or at least 1".to_owned(),
            ));
        }
        if self.default_partitions == 0 {
            errors.push((
                "default_partitions".to_owned(),
                "must be at least 1".to_owned(),
            ));
        }
        if self.request_timeout_ms == 0 || self.message_timeout_ms == 0 {
            errors.push((
                "request_timeout_ms".to_owned(),
                "timeouts must be above 0".to_owned(),
            ));
        }
        for key in self.properties.keys() {
            if RESERVED.contains(&key.as_str()) {
                errors.push((
                    format!("properties.{key}"),
                    "is set by Headwater and cannot be overridden".to_owned(),
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
    fn defaults_validate_and_reserved_keys_are_refused() {
        assert!(KafkaClientConfig::default().validate().is_empty());
        let mut c = KafkaClientConfig {
            brokers: "a:9092,b".to_owned(),
            replication_factor: 0,
            ..KafkaClientConfig::default()
        };
        c.properties.insert("acks".into(), "1".into());
        let errors = c.validate();
        assert_eq!(errors.len(), 3, "{errors:?}");
        assert_eq!(errors[0].0, "brokers");
        assert_eq!(errors[2].0, "properties.acks");
    }
}
