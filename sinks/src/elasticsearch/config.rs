//! `type: elasticsearch` (or `opensearch`): the sink's configuration (one routes.yaml entry, or
//! the `sinks.elasticsearch` defaults of headwater.yaml), its defaults and its validation. No
//! retry settings: a failed `_bulk` request is classified and the router re-sends with its own
//! backoff.

use serde::{Deserialize, Serialize};
use yaml_serde::Value;

use crate::config::{KindConfig, Problems, SinksConfig, Together};
use crate::elasticsearch::IndexPattern;

/// TLS settings of an HTTPS endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM file with extra CA certificates to trust. Default empty (system roots only).
    pub ca_file: String,
    /// Accept any server certificate (testing only). Default false.
    pub insecure_skip_verify: bool,
}

/// `type: elasticsearch` (or `opensearch`): documents through `_bulk`, `_id` = event id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ElasticsearchConfig {
    /// Name for metrics and logs. Default empty (the label is `elasticsearch`).
    pub name: String,
    /// Base URL, e.g. `https://search:9200`. Required (the sink is off without it).
    pub url: String,
    /// Index name pattern: `{type}`, `{route}`, `{tenant}` and a date from `received_at` in
    /// UTC written with `yyyy`, `MM`, `dd`, `HH` (e.g. `{yyyy.MM.dd}`). Lowercased and made a
    /// valid index name. Default `events-{type}-{yyyy.MM.dd}`.
    pub index: String,
    /// Basic-auth user. Default empty.
    pub username: String,
    /// Basic-auth password. Default empty.
    pub password: String,
    /// API key, sent as `Authorization: ApiKey <api_key>` (the encoded form). Default empty.
    pub api_key: String,
    /// TLS for `https://` URLs.
    pub tls: TlsConfig,
    /// Gzip request bodies. Default true.
    pub gzip: bool,
    /// Largest uncompressed `_bulk` body; bigger batches are split. Default 5 MiB.
    pub max_bulk_bytes: u64,
    /// Timeout of one request, in milliseconds. Default 30000.
    pub request_timeout_ms: u64,
}

impl Default for ElasticsearchConfig {
    fn default() -> Self {
        Self {
            name: String::new(),
            url: String::new(),
            index: "events-{type}-{yyyy.MM.dd}".to_owned(),
            username: String::new(),
            password: String::new(),
            api_key: String::new(),
            tls: TlsConfig::default(),
            gzip: true,
            max_bulk_bytes: 5 * 1024 * 1024,
            request_timeout_ms: 30_000,
        }
    }
}

impl KindConfig for ElasticsearchConfig {
    /// An entry with credentials of its own inherits none.
    const TOGETHER: Together = &[(
        &["username", "password", "api_key"],
        &["username", "password", "api_key"],
    )];

    fn defaults(sinks: &SinksConfig) -> Result<Value, yaml_serde::Error> {
        yaml_serde::to_value(&sinks.elasticsearch)
    }

    fn validate(&self, problems: &mut Problems) {
        if self.url.is_empty() {
            problems.add("url", "required");
        } else if reqwest::Url::parse(&self.url).is_err()
            || !(self.url.starts_with("http://") || self.url.starts_with("https://"))
        {
            problems.add("url", format!("`{}` is not an http(s) URL", self.url));
        }
        if let Err(e) = IndexPattern::parse(&self.index) {
            problems.add("index", e.to_string());
        }
        if !self.api_key.is_empty() && !self.username.is_empty() {
            problems.add("api_key", "set either `api_key` or `username`, not both");
        }
        if self.password.is_empty() != self.username.is_empty() {
            problems.add("password", "`username` and `password` go together");
        }
        if self.max_bulk_bytes < 1024 {
            problems.add("max_bulk_bytes", "must be at least 1024");
        }
        if self.request_timeout_ms == 0 {
            problems.add("request_timeout_ms", "must be positive");
        }
    }
}
