//! `type: s3`: the S3 sink's configuration (one routes.yaml entry, or the `sinks.s3` defaults
//! of headwater.yaml), its defaults and its validation.

use std::fmt;

use headwater_log::client_config::RedactedStr;
use serde::{Deserialize, Serialize};
use yaml_serde::Value;

use crate::config::{KindConfig, Problems, SinksConfig, Together};

const MIB: u64 = 1024 * 1024;

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
/// bucket is set. Its `Debug` redacts `secret_access_key` and `session_token`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
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
    /// Retries of one HTTP request on 5xx and connection errors, inside object_store's client
    /// (a failed send is then re-sent by the router). Default 5.
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

impl fmt::Debug for S3Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Config")
            .field("name", &self.name)
            .field("bucket", &self.bucket)
            .field("local_dir", &self.local_dir)
            .field("local_fsync", &self.local_fsync)
            .field("prefix", &self.prefix)
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &RedactedStr(&self.secret_access_key))
            .field("session_token", &RedactedStr(&self.session_token))
            .field("path_style", &self.path_style)
            .field("allow_http", &self.allow_http)
            .field("compression", &self.compression)
            .field("compression_level", &self.compression_level)
            .field("multipart_threshold_bytes", &self.multipart_threshold_bytes)
            .field("multipart_part_bytes", &self.multipart_part_bytes)
            .field("multipart_concurrency", &self.multipart_concurrency)
            .field("max_retries", &self.max_retries)
            .field("retry_timeout_ms", &self.retry_timeout_ms)
            .field("request_timeout_ms", &self.request_timeout_ms)
            .finish()
    }
}

impl KindConfig for S3Config {
    /// An entry naming its own `bucket` or `local_dir` chooses where it writes: it inherits
    /// neither.
    const TOGETHER: Together = &[(&["bucket", "local_dir"], &["bucket", "local_dir"])];

    fn defaults(sinks: &SinksConfig) -> Result<Value, yaml_serde::Error> {
        yaml_serde::to_value(&sinks.s3)
    }

    fn validate(&self, problems: &mut Problems) {
        if !self.bucket.is_empty() && !self.local_dir.is_empty() {
            problems.add("local_dir", "set either `bucket` or `local_dir`, not both");
        }
        if self.prefix.starts_with('/') || self.prefix.ends_with('/') {
            problems.add("prefix", "must not start or end with `/`");
        }
        if self.multipart_part_bytes < 5 * MIB {
            problems.add("multipart_part_bytes", "must be at least 5 MiB (5242880)");
        }
        if self.multipart_concurrency == 0 {
            problems.add("multipart_concurrency", "must be at least 1");
        }
        if self.request_timeout_ms == 0 {
            problems.add("request_timeout_ms", "must be positive");
        }
        let levels = match self.compression {
            Compression::Zstd => -7..=22,
            Compression::Gzip => 0..=9,
        };
        if !levels.contains(&self.compression_level) {
            problems.add(
                "compression_level",
                format!("must be in {levels:?} for {:?}", self.compression),
            );
        }
        let is_url = |u: &str| u.starts_with("http://") || u.starts_with("https://");
        if !self.endpoint.is_empty() && !is_url(&self.endpoint) {
            problems.add("endpoint", "must be an http:// or https:// URL");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_redacts_the_secret_key_and_the_session_token() {
        let config = S3Config {
            access_key_id: "AKIDEXAMPLE".to_owned(),
            secret_access_key: "s3cr3t".to_owned(),
            session_token: "t0k3n".to_owned(),
            ..S3Config::default()
        };
        let shown = format!("{config:?}");
        assert!(
            !shown.contains("s3cr3t") && !shown.contains("t0k3n"),
            "{shown}"
        );
        assert!(shown.contains("secret_access_key: <redacted>"), "{shown}");
        assert!(shown.contains(r#"access_key_id: "AKIDEXAMPLE""#), "{shown}");
        let unset = format!("{:?}", S3Config::default());
        assert!(unset.contains(r#"session_token: """#), "{unset}");
    }
}
