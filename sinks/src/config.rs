//! Sink configuration: [`SinkConfig`] (one entry of a route's `sinks:` list, tagged by `type`,
//! each kind's struct in its own folder's `config.rs`), the deployment defaults ([`SinksConfig`],
//! headwater.yaml `sinks:`), and [`SinkConfig::from_entry`], which deep-merges an entry over
//! its kind's defaults at the YAML level and deserializes the result once.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use headwater_log::Log;
use headwater_log::client_config::{RedactedMap, is_secret_key, redact_quoted};
use serde::de::{DeserializeOwned, Error as _};
use serde::{Deserialize, Serialize};
use yaml_serde::{Mapping, Value};

pub use crate::build::build;
pub use crate::elasticsearch::{ElasticsearchConfig, TlsConfig};
pub use crate::s3::{Compression, S3Config};
pub use crate::topic::TopicConfig;
use crate::{ConfigError, Problem};

/// Keys taken together: when an entry writes any key of the first list, no key of the second
/// comes from the defaults (e.g. an entry's own `local_dir` drops the default `bucket`).
pub(crate) type Together = &'static [(&'static [&'static str], &'static [&'static str])];

/// What each kind's configuration struct (in its sink folder's `config.rs`) offers
/// [`SinkConfig`]. Every such struct also has a `name: String` key (the metric label).
pub(crate) trait KindConfig: DeserializeOwned {
    /// See [`Together`]; none by default.
    const TOGETHER: Together = &[];

    /// This kind's defaults from headwater.yaml's `sinks:` section, as a YAML mapping.
    fn defaults(sinks: &SinksConfig) -> Result<Value, yaml_serde::Error>;

    /// Adds every problem of the values to `problems`, keys relative to the entry.
    fn validate(&self, problems: &mut Problems);
}

/// Declares [`SinkConfig`] from the list of kinds: `Variant(Config) = "type" | "alias";`.
/// Adding a sink is one line here (and one in [`build`]); each `Config` has a `name` key.
macro_rules! sink_kinds {
    ($($(#[$doc:meta])* $variant:ident($config:ty) = $name:literal $(| $alias:literal)*;)+) => {
        /// One sink of a route, tagged by `type`.
        #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
        #[serde(tag = "type")]
        pub enum SinkConfig {
            $($(#[$doc])* #[serde(rename = $name $(, alias = $alias)*)] $variant($config),)+
        }

        /// Every `type` an entry may have, for messages.
        const KINDS: &[&str] = &[$($name, $($alias,)*)+];

        impl SinkConfig {
            /// The sink kind: `s3`, `elasticsearch` or `topic`.
            pub fn kind(&self) -> &'static str {
                match self { $(Self::$variant(_) => $name,)+ }
            }

            fn name(&self) -> &str {
                match self { $(Self::$variant(c) => &c.name,)+ }
            }

            fn name_mut(&mut self) -> &mut String {
                match self { $(Self::$variant(c) => &mut c.name,)+ }
            }

            fn problems(&self) -> Problems {
                let mut problems = Problems::default();
                match self { $(Self::$variant(c) => c.validate(&mut problems),)+ }
                problems
            }

            /// The entry (without `type`) of kind `kind` over its defaults; `None`: no such kind.
            fn resolve(kind: &str, entry: Mapping, sinks: &SinksConfig)
                -> Option<Result<Self, ConfigError>> {
                match kind {
                    $($name $(| $alias)* => Some(merged::<$config>($name, entry, sinks).map(Self::$variant)),)+
                    _ => None,
                }
            }
        }
    };
}

sink_kinds! {
    /// S3 or a local directory through object_store.
    S3(S3Config) = "s3";
    /// Elasticsearch or OpenSearch `_bulk` (`type: opensearch` is accepted too).
    Elasticsearch(ElasticsearchConfig) = "elasticsearch" | "opensearch";
    /// A topic of the internal log or of an external Kafka cluster.
    Topic(TopicConfig) = "topic";
}

impl SinkConfig {
    /// A routes.yaml sink entry (a YAML mapping, `type` included) deep-merged over the
    /// deployment defaults of its kind (`sinks.<kind>` in headwater.yaml), then deserialized
    /// once (`deny_unknown_fields`): whatever the entry writes wins, even a value equal to the
    /// built-in default. `name` is never inherited. The values are not validated here
    /// ([`SinkConfig::check`]).
    pub fn from_entry(entry: &Value, defaults: &SinksConfig) -> Result<Self, ConfigError> {
        let Value::Mapping(entry) = entry else {
            return Err(ConfigError::NotAMapping);
        };
        let mut entry = entry.clone();
        let kind = match entry.remove("type") {
            Some(Value::String(kind)) => kind,
            _ => return Err(ConfigError::MissingType { kinds: KINDS }),
        };
        Self::resolve(&kind, entry, defaults)
            .unwrap_or(Err(ConfigError::UnknownType { kind, kinds: KINDS }))
    }

    /// The `sink` metric label: the entry's `name`, or its kind when unnamed.
    pub fn label(&self) -> String {
        label_of(self.name(), self.kind()).to_string()
    }

    /// Sets `name` (the `sink` metric label) when the entry has none, e.g. to the router's
    /// `s3#2` for a route's second S3 sink.
    pub fn named(mut self, label: &str) -> Self {
        let name = self.name_mut();
        if name.is_empty() {
            label.clone_into(name);
        }
        self
    }

    /// Checks the values; returns every problem, keys under `at` (e.g. `routes[0].sinks[1]`;
    /// empty: keys relative to the entry).
    pub fn validate(&self, at: &str) -> Vec<Problem> {
        let mut problems = self.problems().0;
        if !at.is_empty() {
            for p in &mut problems {
                p.key = format!("{at}.{}", p.key);
            }
        }
        problems
    }

    /// [`SinkConfig::validate`] as one [`ConfigError::Invalid`] listing every problem.
    pub fn check(&self) -> Result<(), ConfigError> {
        self.problems().into_result()
    }
}

/// The entry of one kind over that kind's defaults, deserialized once.
fn merged<C: KindConfig>(
    kind: &'static str,
    entry: Mapping,
    sinks: &SinksConfig,
) -> Result<C, ConfigError> {
    let defaults = C::defaults(sinks).map_err(|source| ConfigError::Defaults { kind, source })?;
    let mut base = match defaults {
        Value::Mapping(m) => m,
        _ => Mapping::new(),
    };
    base.remove("name");
    for (written, dropped) in C::TOGETHER {
        if written.iter().any(|k| entry.contains_key(*k)) {
            for k in *dropped {
                base.remove(*k);
            }
        }
    }
    deep_merge(&mut base, entry);
    serde_path_to_error::deserialize(Value::Mapping(base)).map_err(|e| {
        let path = e.path().to_string();
        let mut source = e.into_inner();
        if path.split(['.', '[']).any(is_secret_key) {
            // serde quotes the value (``invalid type: integer `8675309` ``): it may be the secret.
            source = yaml_serde::Error::custom(redact_quoted(&source.to_string()));
        }
        ConfigError::Parse {
            key: (path != ".").then_some(path),
            source,
        }
    })
}

/// Writes `over` into `base`: mappings merge key by key, any other value replaces.
fn deep_merge(base: &mut Mapping, over: Mapping) {
    for (key, value) in over {
        match (base.get_mut(&key), value) {
            (Some(Value::Mapping(inner)), Value::Mapping(value)) => deep_merge(inner, value),
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
}

/// The label of a sink: its name, else its kind.
pub(crate) fn label_of(name: &str, kind: &'static str) -> Arc<str> {
    Arc::from(if name.is_empty() { kind } else { name })
}

/// Problems of one entry, collected by each kind's `validate`.
#[derive(Default)]
pub(crate) struct Problems(Vec<Problem>);

impl Problems {
    /// Records that `key` is wrong.
    pub(crate) fn add(&mut self, key: &str, message: impl Into<String>) {
        self.0.push(Problem {
            key: key.to_owned(),
            message: message.into(),
        });
    }

    fn into_result(self) -> Result<(), ConfigError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(ConfigError::Invalid { problems: self.0 })
        }
    }
}

/// [`SinkConfig::check`] of one kind's config, for its sink's constructor.
pub(crate) fn check<C: KindConfig>(config: &C) -> Result<(), ConfigError> {
    let mut problems = Problems::default();
    config.validate(&mut problems);
    problems.into_result()
}

/// What [`build`] needs from the process around it.
#[derive(Clone, Default)]
pub struct SinkContext {
    /// The data directory (`data_dir`); the S3 sink's local default is `{data_dir}/lake`.
    pub data_dir: PathBuf,
    /// The internal log, for topic sinks without `brokers`.
    pub log: Option<Arc<dyn Log>>,
}

/// Deployment-wide sink defaults (`sinks:` in headwater.yaml): what a route's entry inherits
/// for the keys it does not write.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SinksConfig {
    /// Defaults of `type: s3` entries (bucket, endpoint, credentials…).
    pub s3: S3Config,
    /// Defaults of `type: elasticsearch` entries (url, auth, TLS…).
    pub elasticsearch: ElasticsearchConfig,
    /// Defaults of `type: topic` entries that go to an external Kafka cluster.
    pub kafka: KafkaDefaults,
}

/// The external Kafka cluster topic sinks use unless they name their own. Its `Debug` redacts
/// the values of secret `options` (`sasl.password`, …).
#[derive(Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KafkaDefaults {
    /// `bootstrap.servers`. Default empty: topic sinks write to the internal log.
    pub brokers: String,
    /// Extra librdkafka producer properties (security, SASL…). Default none.
    pub options: BTreeMap<String, String>,
}

impl fmt::Debug for KafkaDefaults {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KafkaDefaults")
            .field("brokers", &self.brokers)
            .field("options", &RedactedMap(&self.options))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error_chain;

    fn entry(yaml: &str) -> Value {
        yaml_serde::from_str(yaml).expect("yaml")
    }

    #[test]
    fn kafka_defaults_debug_redacts_secret_options() {
        let mut kafka = KafkaDefaults {
            brokers: "kafka:9092".to_owned(),
            ..KafkaDefaults::default()
        };
        kafka
            .options
            .insert("sasl.password".to_owned(), "hunter2".to_owned());
        kafka
            .options
            .insert("sasl.username".to_owned(), "router".to_owned());
        let shown = format!(
            "{:?}",
            SinksConfig {
                kafka,
                ..SinksConfig::default()
            }
        );
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains(r#""sasl.password": <redacted>"#), "{shown}");
        assert!(shown.contains(r#""sasl.username": "router""#), "{shown}");
        assert!(shown.contains(r#"brokers: "kafka:9092""#), "{shown}");
    }

    #[test]
    fn errors_at_secret_keys_do_not_quote_the_value() {
        let defaults = SinksConfig::default();
        let cases = [
            "{type: elasticsearch, url: 'http://es:9200', username: u, password: 8675309}",
            "{type: elasticsearch, url: 'http://es:9200', api_key: 8675309}",
            "{type: topic, topic: t, options: {sasl.password: 8675309}}",
            "{type: s3, bucket: b, secret_access_key: 8675309}",
        ];
        for yaml in cases {
            let error = SinkConfig::from_entry(&entry(yaml), &defaults).expect_err(yaml);
            let shown = error_chain(&error);
            assert!(!shown.contains("8675309"), "{shown}");
            assert!(shown.contains("<redacted>"), "{shown}");
        }
    }

    #[test]
    fn errors_at_other_keys_still_quote_the_value() {
        let yaml = "{type: elasticsearch, url: 'http://es:9200', gzip: 8675309}";
        let error = SinkConfig::from_entry(&entry(yaml), &SinksConfig::default()).expect_err(yaml);
        let shown = error_chain(&error);
        assert!(shown.contains("invalid `gzip`"), "{shown}");
        assert!(shown.contains("8675309"), "{shown}");
    }
}
