//! The one typed configuration of the `headwater` binary: every crate's section under one root,
//! and its printable form with every secret redacted ([`Config::redacted_yaml`]).

use std::path::PathBuf;

use headwater_gateway::GatewayConfig;
use headwater_log::LogConfig;
use headwater_log::client_config::{REDACTED, is_secret_key};
use headwater_router::RouterConfig;
use headwater_schemas::SchemasConfig;
use headwater_sinks::config::SinksConfig;
use serde::{Deserialize, Serialize};
use yaml_serde::Value;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub(crate) enum LogFormat {
    /// Human-readable lines.
    Human,
    /// One JSON object a line.
    Json,
}

/// Logging settings (`logging:`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct LoggingConfig {
    /// `human` or `json`. Default `human`.
    pub format: LogFormat,
    /// A tracing filter such as `info` or `headwater_log=debug,info`; `RUST_LOG` wins when
    /// set. Default `info`.
    pub level: String,
}

impl Default for LoggingConfig {
    fn default() -> Self {
        Self {
            format: LogFormat::Human,
            level: "info".to_owned(),
        }
    }
}

/// Room kept in a log record for the envelope headers next to the largest payload.
pub(crate) const ENVELOPE_ROOM_BYTES: u64 = 16 * 1024;

/// The whole configuration (headwater.yaml).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct Config {
    /// Where the log tier and the local lake keep their data. Default `./data`.
    pub data_dir: PathBuf,
    /// Logging.
    pub logging: LoggingConfig,
    /// The collectors.
    pub gateway: GatewayConfig,
    /// The log tier.
    pub log: LogConfig,
    /// The schema registry.
    pub schemas: SchemasConfig,
    /// The router.
    pub router: RouterConfig,
    /// Defaults every routes.yaml sink entry inherits (S3 bucket and credentials,
    /// Elasticsearch URL and auth, Kafka brokers).
    pub sinks: SinksConfig,
}

impl Default for Config {
    /// The built-in defaults, as `headwater serve` runs with no file at all.
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("./data"),
            logging: LoggingConfig::default(),
            gateway: GatewayConfig::default(),
            log: LogConfig::default(),
            schemas: SchemasConfig::default(),
            router: RouterConfig::default(),
            sinks: SinksConfig::default(),
        }
    }
}

impl Config {
    /// The configuration as YAML with every secret value redacted ([`redact`]): what
    /// `headwater config check` prints.
    pub(crate) fn redacted_yaml(&self) -> Result<String, yaml_serde::Error> {
        let mut tree = yaml_serde::to_value(self)?;
        redact(&mut tree);
        yaml_serde::to_string(&tree)
    }

    /// Checks the wiring of every section; returns every problem as `(key path, message)`.
    pub(crate) fn validate(&self) -> Vec<(String, String)> {
        let mut errors = Vec::new();
        if self.data_dir.as_os_str().is_empty() {
            errors.push(("data_dir".to_owned(), "must not be empty".to_owned()));
        }
        if self
            .logging
            .level
            .parse::<tracing_subscriber::EnvFilter>()
            .is_err()
        {
            errors.push((
                "logging.level".to_owned(),
                format!("`{}` is not a tracing filter", self.logging.level),
            ));
        }
        let room = u64::from(self.gateway.limits.max_event_bytes) + ENVELOPE_ROOM_BYTES;
        if room > u64::from(self.log.max_message_bytes) {
            errors.push((
                "gateway.limits.max_event_bytes".to_owned(),
                format!(
                    "{} bytes plus {ENVELOPE_ROOM_BYTES} for the envelope does not fit in log.max_message_bytes ({})",
                    self.gateway.limits.max_event_bytes, self.log.max_message_bytes
                ),
            ));
        }
        if self.log.kafka_sasl.enabled
            && self.gateway.auth.keys.is_empty()
            && self.log.principals.is_empty()
        {
            errors.push((
                "log.kafka_sasl.enabled".to_owned(),
                "needs users: tenants (gateway.auth.keys, password = an API key) or \
                 log.principals (SCRAM or PLAIN credentials)"
                    .to_owned(),
            ));
        }
        errors.extend(self.gateway.validate());
        errors.extend(self.log.validate());
        errors.extend(self.schemas.validate());
        errors.extend(self.router.validate());
        errors
    }
}

/// Redacts every secret in a configuration tree, by key name: the value of any key that
/// [`is_secret_key`] (S3 `secret_access_key` and `session_token`, Elasticsearch `password` and
/// `api_key`, `sasl.password`, `ssl.key.password` and the like in `log.client.properties` and
/// `sinks.kafka.options`, `scram_*` credentials, …) becomes [`REDACTED`], whatever its shape;
/// an unset one (null, empty) stays as it is, so that it still reads as unset. The password of
/// a URL with credentials (`https://user:pass@host`) is redacted too.
pub(crate) fn redact(tree: &mut Value) {
    match tree {
        Value::Mapping(map) => {
            for (key, value) in map.iter_mut() {
                if key.as_str().is_some_and(is_secret_key) {
                    hide(value);
                } else {
                    redact(value);
                }
            }
        }
        Value::Sequence(items) => items.iter_mut().for_each(redact),
        Value::Tagged(tagged) => redact(&mut tagged.value),
        Value::String(text) => {
            if let Some(hidden) = redact_url_password(text) {
                *text = hidden;
            }
        }
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
}

/// Replaces a secret value with [`REDACTED`] unless it is unset.
fn hide(value: &mut Value) {
    let unset = match &*value {
        Value::Null => true,
        Value::String(text) => text.is_empty(),
        Value::Sequence(items) => items.is_empty(),
        Value::Mapping(map) => map.is_empty(),
        _ => false,
    };
    if !unset {
        *value = Value::String(REDACTED.to_owned());
    }
}

/// `scheme://user:pass@host…` with the password redacted; `None` when `text` has none.
fn redact_url_password(text: &str) -> Option<String> {
    let start = text.find("://")? + 3;
    let authority_len = text[start..]
        .find(['/', '?', '#'])
        .unwrap_or(text.len() - start);
    let authority = &text[start..start + authority_len];
    let at = authority.rfind('@')?;
    let colon = authority[..at].find(':')?;
    let (from, to) = (start + colon + 1, start + at);
    (from < to).then(|| format!("{}{REDACTED}{}", &text[..from], &text[to..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(text: &str) -> Value {
        yaml_serde::from_str(text).unwrap()
    }

    #[test]
    fn redact_hides_secret_keys_at_any_depth_and_keeps_the_rest() {
        let mut config = tree(
            "
sinks:
  s3: {access_key_id: AKID, secret_access_key: s3cr3t, session_token: '', bucket: lake}
  elasticsearch: {username: elastic, password: pw1, api_key: null, url: 'https://u:pw2@search:9200/x'}
  kafka:
    options: {sasl.username: router, sasl.password: pw3, SSL.KEY.PASSWORD: 1234, security.protocol: SASL_SSL}
log:
  client:
    properties: {sasl.oauthbearer.client.secret: pw4, ssl.truststore.password: pw5, ssl.ca.location: /ca.pem}
  principals:
    - {name: ops, role: operator, scram_sha512: 'SCRAM-SHA-512:salt:4096:stored:server'}
    - {name: svc, role: service, scram_sha256: {salt: c2FsdA==, iterations: 4096}}
",
        );
        redact(&mut config);
        let text = yaml_serde::to_string(&config).unwrap();
        for secret in [
            "s3cr3t",
            "pw1",
            "pw2",
            "pw3",
            "1234",
            "pw4",
            "pw5",
            "SCRAM-SHA",
            "c2FsdA",
        ] {
            assert!(!text.contains(secret), "{secret} printed:\n{text}");
        }
        for kept in [
            "AKID",
            "lake",
            "elastic",
            "router",
            "SASL_SSL",
            "/ca.pem",
            "https://u:<redacted>@search:9200/x",
            "operator",
        ] {
            assert!(text.contains(kept), "{kept} missing:\n{text}");
        }
        let s3 = &config["sinks"]["s3"];
        assert_eq!(s3["secret_access_key"].as_str(), Some(REDACTED));
        assert_eq!(s3["session_token"].as_str(), Some(""), "unset stays unset");
        assert!(config["sinks"]["elasticsearch"]["api_key"].is_null());
        let principal = &config["log"]["principals"][1];
        assert_eq!(principal["scram_sha256"].as_str(), Some(REDACTED));
    }

    #[test]
    fn url_passwords_are_redacted_and_other_urls_kept() {
        let cases = [
            (
                "https://u:p@h:9200/x?y",
                Some("https://u:<redacted>@h:9200/x?y"),
            ),
            ("http://user:p@ss@h", Some("http://user:<redacted>@h")),
            ("https://token@h/x", None),
            ("https://h:9200/a@b", None),
            ("https://u:@h", None),
            ("host:9092", None),
        ];
        for (url, want) in cases {
            assert_eq!(redact_url_password(url).as_deref(), want, "{url}");
        }
    }

    #[test]
    fn the_printed_configuration_redacts_typed_secrets() {
        let mut config = Config::default();
        config.sinks.s3.secret_access_key = "s3cr3t".to_owned();
        config.sinks.s3.access_key_id = "AKID".to_owned();
        config
            .log
            .client
            .properties
            .insert("sasl.password".to_owned(), "hunter2".to_owned());
        config
            .sinks
            .kafka
            .options
            .insert("ssl.key.password".to_owned(), "hunter3".to_owned());
        let text = config.redacted_yaml().unwrap();
        assert!(!text.contains("s3cr3t"), "{text}");
        assert!(
            !text.contains("hunter2") && !text.contains("hunter3"),
            "{text}"
        );
        assert!(text.contains("secret_access_key: <redacted>"), "{text}");
        assert!(text.contains("access_key_id: AKID"), "{text}");
    }
}
