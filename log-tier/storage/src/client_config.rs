//! Configuration of the Kafka-protocol client (`KafkaLog`, crate `headwater-kafka-client`): which
//! brokers to reach and how (`log.client:` in headwater.yaml), used by `headwater gateway` and
//! `headwater router`.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// How the gateway and the router reach a log tier that is not embedded: Headwater log nodes
/// or an Apache Kafka cluster, over the Kafka protocol. Its `Debug` redacts the values of
/// secret `properties` ([`is_secret_key`]).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
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

impl fmt::Debug for KafkaClientConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KafkaClientConfig")
            .field("brokers", &self.brokers)
            .field("client_id", &self.client_id)
            .field("replication_factor", &self.replication_factor)
            .field("auto_create_topics", &self.auto_create_topics)
            .field("default_partitions", &self.default_partitions)
            .field("request_timeout_ms", &self.request_timeout_ms)
            .field("message_timeout_ms", &self.message_timeout_ms)
            .field("linger_ms", &self.linger_ms)
            .field("properties", &RedactedMap(&self.properties))
            .finish()
    }
}

/// What a secret value prints as, in `headwater config check` and in `Debug` output.
pub const REDACTED: &str = "<redacted>";

/// Parts of a key name that make its value a secret, matched case-insensitively with `.` and
/// `-` read as `_`: librdkafka's `sasl.password`, `ssl.key.password`, `ssl.keystore.password`,
/// `ssl.truststore.password`, `sasl.oauthbearer.client.secret`, `ssl.key.pem` (an inline
/// private key), `sasl.jaas.config` (Java clients' passwords), S3's `secret_access_key` and
/// `session_token`, Elasticsearch's `password` and `api_key`, SCRAM credentials
/// (`scram_sha256`, …).
const SECRET_PARTS: &[&str] = &[
    "password",
    "passwd",
    "secret",
    "token",
    "credential",
    "api_key",
    "apikey",
    "private_key",
    "key_pem",
    "jaas",
    "scram",
];

/// Whether a configuration key or a librdkafka property name holds a secret, whose value must
/// never be printed (`headwater config check`, `Debug`, log lines). The one list of what is
/// secret: the binary's redaction of the configuration tree and every `Debug` that redacts use
/// it.
pub fn is_secret_key(key: &str) -> bool {
    let key: String = key
        .chars()
        .map(|c| match c {
            '.' | '-' => '_',
            c => c.to_ascii_lowercase(),
        })
        .collect();
    SECRET_PARTS.iter().any(|part| key.contains(part)) || key == "sasl_oauthbearer_config"
}

/// A secret string for `Debug`: [`REDACTED`] when set, `""` when empty (so an unset secret
/// still shows as unset).
pub struct RedactedStr<'a>(pub &'a str);

impl fmt::Debug for RedactedStr<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            f.write_str("\"\"")
        } else {
            f.write_str(REDACTED)
        }
    }
}

/// `message` with every `` `…` `` and `"…"` span replaced by [`REDACTED`]: for an error about
/// a secret key, whose message may quote the value (serde's ``invalid type: integer `12345`,
/// expected a string``).
pub fn redact_quoted(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(open) = rest.find(['`', '"']) {
        let quote = &rest[open..=open];
        let Some(close) = rest[open + 1..].find(quote) else {
            break;
        };
        out.push_str(&rest[..=open]);
        out.push_str(REDACTED);
        out.push_str(quote);
        rest = &rest[open + 1 + close + 1..];
    }
    out.push_str(rest);
    out
}

/// Properties (librdkafka's `key → value`) for `Debug`, the values of secret keys
/// ([`is_secret_key`]) redacted.
pub struct RedactedMap<'a>(pub &'a BTreeMap<String, String>);

impl fmt::Debug for RedactedMap<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut map = f.debug_map();
        for (key, value) in self.0 {
            if is_secret_key(key) {
                map.entry(key, &RedactedStr(value));
            } else {
                map.entry(key, value);
            }
        }
        map.finish()
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

    #[test]
    fn secret_key_names_are_recognised() {
        for key in [
            "sasl.password",
            "ssl.key.password",
            "ssl.keystore.password",
            "ssl.truststore.password",
            "sasl.oauthbearer.client.secret",
            "sasl.oauthbearer.config",
            "ssl.key.pem",
            "sasl.jaas.config",
            "secret_access_key",
            "session_token",
            "password",
            "api_key",
            "X-Api-Key",
            "scram_sha512",
            "AWS_CREDENTIALS",
        ] {
            assert!(is_secret_key(key), "{key}");
        }
        for key in [
            "sasl.username",
            "sasl.mechanisms",
            "security.protocol",
            "ssl.ca.location",
            "ssl.certificate.location",
            "access_key_id",
            "username",
            "key_file",
            "sha256",
            "keys",
        ] {
            assert!(!is_secret_key(key), "{key}");
        }
    }

    #[test]
    fn quoted_values_are_redacted() {
        assert_eq!(
            redact_quoted("invalid type: integer `98765`, expected a string"),
            "invalid type: integer `<redacted>`, expected a string"
        );
        assert_eq!(
            redact_quoted(r#"invalid type: string "pw", expected `x` and "unclosed"#),
            r#"invalid type: string "<redacted>", expected `<redacted>` and "unclosed"#
        );
    }

    #[test]
    fn debug_redacts_secret_properties() {
        let mut c = KafkaClientConfig::default();
        c.properties.insert("sasl.username".into(), "router".into());
        c.properties
            .insert("sasl.password".into(), "hunter2".into());
        c.properties
            .insert("ssl.key.password".into(), String::new());
        let shown = format!("{c:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains(r#""sasl.password": <redacted>"#), "{shown}");
        assert!(shown.contains(r#""ssl.key.password": """#), "{shown}");
        assert!(shown.contains(r#""sasl.username": "router""#), "{shown}");
        assert!(shown.contains(r#"brokers: "127.0.0.1:9092""#), "{shown}");
    }
}
