//! Sink configuration: one entry of a route's `sinks:` list in routes.yaml (`type: s3 |
//! elasticsearch | topic` and its fields), the deployment-wide defaults (`sinks:` in
//! headwater.yaml), and [`build`], the factory that turns an entry into a running [`Sink`].

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use headwater_log::Log;
use serde::{Deserialize, Serialize};

use crate::elasticsearch::{ElasticsearchSink, IndexPattern};
use crate::s3::S3Sink;
use crate::topic::TopicSink;
use crate::{Sink, SinkError};

const MIB: u64 = 1024 * 1024;

/// One sink of a route, tagged by `type`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum SinkConfig {
    /// S3 or a local directory through object_store.
    S3(S3Config),
    /// Elasticsearch or OpenSearch `_bulk` (`type: opensearch` is accepted too).
    #[serde(alias = "opensearch")]
    Elasticsearch(ElasticsearchConfig),
    /// A topic of the internal log or of an external Kafka cluster.
    Topic(TopicConfig),
}

impl SinkConfig {
    /// The sink kind: `s3`, `elasticsearch` or `topic`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::S3(_) => "s3",
            Self::Elasticsearch(_) => "elasticsearch",
            Self::Topic(_) => "topic",
        }
    }

    /// The `sink` metric label: the entry's `name`, or its kind when unnamed.
    pub fn label(&self) -> String {
        let name = match self {
            Self::S3(c) => &c.name,
            Self::Elasticsearch(c) => &c.name,
            Self::Topic(c) => &c.name,
        };
        if name.is_empty() {
            self.kind().to_owned()
        } else {
            name.clone()
        }
    }

    /// Sets `name` (the `sink` metric label) when the entry has none, e.g. to the router's
    /// `s3#2` for a route's second S3 sink.
    pub fn named(mut self, label: &str) -> Self {
        let name = match &mut self {
            Self::S3(c) => &mut c.name,
            Self::Elasticsearch(c) => &mut c.name,
            Self::Topic(c) => &mut c.name,
        };
        if name.is_empty() {
            label.clone_into(name);
        }
        self
    }

    /// Fills the fields this entry leaves at their defaults from the deployment's `sinks:`
    /// section (headwater.yaml / `HEADWATER_SINKS__*`), so routes.yaml can say just `type: s3`.
    pub fn with_defaults(mut self, defaults: &SinksConfig) -> Self {
        match &mut self {
            Self::S3(c) => c.inherit(&defaults.s3),
            Self::Elasticsearch(c) => c.inherit(&defaults.elasticsearch),
            Self::Topic(c) => {
                inherit(&mut c.brokers, &defaults.kafka.brokers);
                if c.options.is_empty() {
                    c.options = defaults.kafka.options.clone();
                }
            }
        }
        self
    }

    /// Checks the entry; returns every problem as `(key path, message)`, paths under `at`
    /// (e.g. `routes[0].sinks[1]`).
    pub fn validate(&self, at: &str) -> Vec<(String, String)> {
        let mut errors = Vec::new();
        let mut err = |key: &str, msg: String| errors.push((format!("{at}.{key}"), msg));
        match self {
            Self::S3(c) => c.validate(&mut err),
            Self::Elasticsearch(c) => c.validate(&mut err),
            Self::Topic(c) => c.validate(&mut err),
        }
        errors
    }
}

/// What [`build`] needs from the process around it.
#[derive(Clone, Default)]
pub struct SinkContext {
    /// The data directory (`data_dir`); the S3 sink's local default is `{data_dir}/lake`.
    pub data_dir: PathBuf,
    /// The internal log, for topic sinks without `brokers`.
    pub log: Option<Arc<dyn Log>>,
}

/// Builds the sink an entry describes. Fails with [`SinkError::Config`] on bad wiring (invalid
/// entry, unusable directory, a topic sink without brokers and without an internal log).
pub fn build(config: &SinkConfig, ctx: &SinkContext) -> Result<Arc<dyn Sink>, SinkError> {
    check(config)?;
    Ok(match config {
        SinkConfig::S3(c) => Arc::new(S3Sink::new(c, ctx)?),
        SinkConfig::Elasticsearch(c) => Arc::new(ElasticsearchSink::new(c)?),
        SinkConfig::Topic(c) if c.brokers.is_empty() => match &ctx.log {
            Some(log) => Arc::new(TopicSink::to_log(c, log.clone())?),
            None => {
                return Err(SinkError::Config {
                    sink: "topic",
                    reason: "no `brokers` and no internal log in this process".to_owned(),
                });
            }
        },
        SinkConfig::Topic(c) => Arc::new(TopicSink::to_kafka(c)?),
    })
}

/// [`SinkConfig::validate`] as one [`SinkError::Config`] listing every problem.
pub(crate) fn check(config: &SinkConfig) -> Result<(), SinkError> {
    let problems = config.validate(config.kind());
    if problems.is_empty() {
        return Ok(());
    }
    let reason = problems
        .iter()
        .map(|(k, m)| format!("{k}: {m}"))
        .collect::<Vec<_>>()
        .join("; ");
    Err(SinkError::Config {
        sink: config.kind(),
        reason,
    })
}

/// Deployment-wide sink defaults (`sinks:` in headwater.yaml): what a route's entry inherits
/// for the fields it leaves unset.
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

/// The external Kafka cluster topic sinks use unless they name their own.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KafkaDefaults {
    /// `bootstrap.servers`. Default empty: topic sinks write to the internal log.
    pub brokers: String,
    /// Extra librdkafka producer properties (security, SASL…). Default none.
    pub options: BTreeMap<String, String>,
}

/// Object body compression.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    /// zstd, `.ndjson.zst`.
    #[default]
    Zstd,
    /// gzip, `.ndjson.gz`.
    Gzip,
}

/// `type: s3`: one NDJSON object per batch in a bucket, or in a local directory when no
/// bucket is set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct S3Config {
    /// Name for metrics and logs. Default empty (the label is `s3`).
    pub name: String,
    /// Bucket. Default empty: write under `local_dir` through the local filesystem.
    pub bucket: String,
    /// Local directory when `bucket` is empty. Default empty: `{data_dir}/lake`.
    pub local_dir: String,
    /// fsync each local object and its directory before `send` returns (a confirmed batch
    /// survives power loss, as it would in S3). Default true.
    pub local_fsync: bool,
    /// Key prefix, without leading or trailing `/`. Default empty.
    pub prefix: String,
    /// Endpoint override, e.g. `http://127.0.0.1:9000` for MinIO or moto. Default empty (AWS).
    pub endpoint: String,
    /// Region. Default `us-east-1`.
    pub region: String,
    /// Access key id. Default empty: from `AWS_ACCESS_KEY_ID` / the instance's credentials.
    pub access_key_id: String,
    /// Secret access key. Default empty: from the environment.
    pub secret_access_key: String,
    /// Session token. Default empty.
    pub session_token: String,
    /// Path-style requests (`endpoint/bucket/key`) instead of virtual-hosted. Default true.
    pub path_style: bool,
    /// Allow `http://` endpoints. Default false.
    pub allow_http: bool,
    /// `zstd` (default) or `gzip`.
    pub compression: Compression,
    /// Compression level; 0 means the codec's default (zstd 3, gzip 6). Default 0.
    pub compression_level: i32,
    /// Compressed size above which the object goes up as a multipart upload. Default 8 MiB.
    pub multipart_threshold_bytes: u64,
    /// Part size of multipart uploads (S3 needs at least 5 MiB). Default 8 MiB.
    pub multipart_part_bytes: u64,
    /// Parts uploaded at once. Default 4.
    pub multipart_concurrency: usize,
    /// Retries of one request on 5xx and connection errors (object_store's backoff). Default 5.
    pub max_retries: usize,
    /// Time after which one request is not retried again, in milliseconds. Default 30000.
    pub retry_timeout_ms: u64,
    /// Timeout of one HTTP request, in milliseconds. Default 60000.
    pub request_timeout_ms: u64,
}

impl Default for S3Config {
    fn default() -> Self {
        Self {
            name: String::new(),
            bucket: String::new(),
            local_dir: String::new(),
            local_fsync: true,
            prefix: String::new(),
            endpoint: String::new(),
            region: "us-east-1".to_owned(),
            access_key_id: String::new(),
            secret_access_key: String::new(),
            session_token: String::new(),
            path_style: true,
            allow_http: false,
            compression: Compression::Zstd,
            compression_level: 0,
            multipart_threshold_bytes: 8 * MIB,
            multipart_part_bytes: 8 * MIB,
            multipart_concurrency: 4,
            max_retries: 5,
            retry_timeout_ms: 30_000,
            request_timeout_ms: 60_000,
        }
    }
}

impl S3Config {
    fn inherit(&mut self, d: &S3Config) {
        let base = S3Config::default();
        if self.bucket.is_empty() && self.local_dir.is_empty() {
            inherit(&mut self.bucket, &d.bucket);
            inherit(&mut self.local_dir, &d.local_dir);
        }
        inherit(&mut self.prefix, &d.prefix);
        inherit(&mut self.endpoint, &d.endpoint);
        inherit(&mut self.access_key_id, &d.access_key_id);
        inherit(&mut self.secret_access_key, &d.secret_access_key);
        inherit(&mut self.session_token, &d.session_token);
        macro_rules! unless_set {
            ($($f:ident),*) => {$( if self.$f == base.$f { self.$f = d.$f.clone(); } )*};
        }
        unless_set!(
            region,
            local_fsync,
            path_style,
            allow_http,
            compression,
            compression_level,
            multipart_threshold_bytes,
            multipart_part_bytes,
            multipart_concurrency,
            max_retries,
            retry_timeout_ms,
            request_timeout_ms
        );
    }

    fn validate(&self, err: &mut impl FnMut(&str, String)) {
        if !self.bucket.is_empty() && !self.local_dir.is_empty() {
            err(
                "local_dir",
                "set either `bucket` or `local_dir`, not both".into(),
            );
        }
        if self.prefix.starts_with('/') || self.prefix.ends_with('/') {
            err("prefix", "must not start or end with `/`".into());
        }
        if self.multipart_part_bytes < 5 * MIB {
            err(
                "multipart_part_bytes",
                "must be at least 5 MiB (5242880)".into(),
            );
        }
        if self.multipart_concurrency == 0 {
            err("multipart_concurrency", "must be at least 1".into());
        }
        if self.request_timeout_ms == 0 {
            err("request_timeout_ms", "must be positive".into());
        }
        let levels = match self.compression {
            Compression::Zstd => -7..=22,
            Compression::Gzip => 0..=9,
        };
        if !levels.contains(&self.compression_level) {
            err(
                "compression_level",
                format!("must be in {levels:?} for {:?}", self.compression),
            );
        }
        let is_url = |u: &str| u.starts_with("http://") || u.starts_with("https://");
        if !self.endpoint.is_empty() && !is_url(&self.endpoint) {
            err("endpoint", "must be an http:// or https:// URL".into());
        }
    }
}

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
    /// Attempts of one `_bulk` request on 429, 5xx and connection errors. Default 6.
    pub max_attempts: u32,
    /// Time budget of one request's attempts, in milliseconds. Default 60000.
    pub retry_budget_ms: u64,
    /// First backoff, in milliseconds; doubles per attempt, with jitter. Default 200.
    pub initial_backoff_ms: u64,
    /// Largest backoff, in milliseconds. Default 10000.
    pub max_backoff_ms: u64,
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
            max_bulk_bytes: 5 * MIB,
            request_timeout_ms: 30_000,
            max_attempts: 6,
            retry_budget_ms: 60_000,
            initial_backoff_ms: 200,
            max_backoff_ms: 10_000,
        }
    }
}

impl ElasticsearchConfig {
    fn inherit(&mut self, d: &ElasticsearchConfig) {
        let base = ElasticsearchConfig::default();
        inherit(&mut self.url, &d.url);
        if self.username.is_empty() && self.api_key.is_empty() {
            inherit(&mut self.username, &d.username);
            inherit(&mut self.password, &d.password);
            inherit(&mut self.api_key, &d.api_key);
        }
        macro_rules! unless_set {
            ($($f:ident),*) => {$( if self.$f == base.$f { self.$f = d.$f.clone(); } )*};
        }
        unless_set!(
            index,
            tls,
            gzip,
            max_bulk_bytes,
            request_timeout_ms,
            max_attempts,
            retry_budget_ms,
            initial_backoff_ms,
            max_backoff_ms
        );
    }

    fn validate(&self, err: &mut impl FnMut(&str, String)) {
        if self.url.is_empty() {
            err("url", "required".into());
        } else if reqwest::Url::parse(&self.url).is_err()
            || !(self.url.starts_with("http://") || self.url.starts_with("https://"))
        {
            err("url", format!("`{}` is not an http(s) URL", self.url));
        }
        if let Err(e) = IndexPattern::parse(&self.index) {
            err("index", e);
        }
        if !self.api_key.is_empty() && !self.username.is_empty() {
            err(
                "api_key",
                "set either `api_key` or `username`, not both".into(),
            );
        }
        if self.password.is_empty() != self.username.is_empty() {
            err("password", "`username` and `password` go together".into());
        }
        if self.max_bulk_bytes < 1024 {
            err("max_bulk_bytes", "must be at least 1024".into());
        }
        if self.max_attempts == 0 {
            err("max_attempts", "must be at least 1".into());
        }
        if self.request_timeout_ms == 0 {
            err("request_timeout_ms", "must be positive".into());
        }
        if self.initial_backoff_ms > self.max_backoff_ms {
            err(
                "initial_backoff_ms",
                "must not exceed max_backoff_ms".into(),
            );
        }
    }
}

/// `type: topic`: records into a topic, key preserved, envelope as `hw.*` headers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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

impl TopicConfig {
    fn validate(&self, err: &mut impl FnMut(&str, String)) {
        if self.topic.is_empty() {
            err("topic", "required".into());
        } else if let Err(e) = headwater_log::check_topic_name(&self.topic) {
            err("topic", e.to_string());
        }
        if self.message_timeout_ms == 0 {
            err("message_timeout_ms", "must be positive".into());
        }
        if self.max_append_bytes < 1024 {
            err("max_append_bytes", "must be at least 1024".into());
        }
        for key in self.options.keys() {
            if key == "enable.idempotence" || key == "bootstrap.servers" {
                err(
                    &format!("options.{key}"),
                    "is set by the sink; remove it".into(),
                );
            }
        }
    }
}

fn inherit(field: &mut String, default: &str) {
    if field.is_empty() {
        default.clone_into(field);
    }
}
