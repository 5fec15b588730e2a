//! The one typed configuration of the `headwater` binary: every crate's section under one root.

use std::path::PathBuf;

use headwater_gateway::GatewayConfig;
use headwater_log::LogConfig;
use headwater_router::RouterConfig;
use headwater_schemas::SchemasConfig;
use headwater_sinks::config::SinksConfig;
use serde::{Deserialize, Serialize};

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
        if self.log.kafka_sasl.enabled && self.gateway.auth.keys.is_empty() {
            errors.push((
                "log.kafka_sasl.enabled".to_owned(),
                "needs gateway.auth.keys: Kafka users are tenants, passwords their API keys"
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
