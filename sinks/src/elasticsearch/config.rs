//! `type: elasticsearch` (or `opensearch`): the sink's configuration (one routes.yaml entry, or
//! the `sinks.elasticsearch` defaults of headwater.yaml), its defaults and its validation. No
//! retry settings: a failed `_bulk` request is classified and the router re-sends with its own
//! backoff.

use std::borrow::Cow;
use std::fmt;

use headwater_log::client_config::{REDACTED, RedactedStr};
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

/// `type: elasticsearch` (or `opensearch`): documents through `_bulk`, `_id` from tenant,
/// source and event id ([`document_id`](crate::elasticsearch::document_id)). Its `Debug`
/// redacts `password`, `api_key` and a password written in the `url`'s userinfo.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ElasticsearchConfig {
    /// Name for metrics and logs. Default empty (the label is `elasticsearch`).
    pub name: String,
    /// Base URL, e.g. `https://search:9200`. Required (the sink is off without it).
    pub url: String,
    /// Index name pattern: `{type}`, `{route}`, `{tenant}` (`default` when an event has none)
    /// and a date from `received_at` in UTC written with `yyyy`, `MM`, `dd`, `HH` (e.g.
    /// `{yyyy.MM.dd}`). Lowercased and made a valid index name. Default
    /// `events-{type}-{yyyy.MM.dd}`: every tenant's documents in one index, apart by `_id`;
    /// multi-tenant sites should add `{tenant}` (e.g. `events-{tenant}-{type}-{yyyy.MM.dd}`).
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

impl fmt::Debug for ElasticsearchConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ElasticsearchConfig")
            .field("name", &self.name)
            .field("url", &redact_userinfo(&self.url))
            .field("index", &self.index)
            .field("username", &self.username)
            .field("password", &RedactedStr(&self.password))
            .field("api_key", &RedactedStr(&self.api_key))
            .field("tls", &self.tls)
            .field("gzip", &self.gzip)
            .field("max_bulk_bytes", &self.max_bulk_bytes)
            .field("request_timeout_ms", &self.request_timeout_ms)
            .finish()
    }
}

/// `url` with the password of its userinfo (`https://user:pass@host`) replaced by
/// [`REDACTED`]; read as text, so a URL that does not parse is redacted too.
pub(crate) fn redact_userinfo(url: &str) -> Cow<'_, str> {
    let start = url.find("://").map_or(0, |i| i + 3);
    let authority = &url[start..];
    let authority = &authority[..authority.find(['/', '?', '#']).unwrap_or(authority.len())];
    let Some(at) = authority.rfind('@') else {
        return Cow::Borrowed(url);
    };
    let Some(colon) = authority[..at].find(':') else {
        return Cow::Borrowed(url);
    };
    let (before, after) = (&url[..start + colon + 1], &url[start + at..]);
    Cow::Owned(format!("{before}{REDACTED}{after}"))
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
            let url = redact_userinfo(&self.url);
            problems.add("url", format!("`{url}` is not an http(s) URL"));
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_redacts_the_password_the_api_key_and_the_url_password() {
        let config = ElasticsearchConfig {
            url: "https://admin:hunter2@search:9200".to_owned(),
            username: "admin".to_owned(),
            password: "s3cr3t".to_owned(),
            api_key: "a2V5OnZhbHVl".to_owned(),
            ..ElasticsearchConfig::default()
        };
        let shown = format!("{config:?}");
        for secret in ["hunter2", "s3cr3t", "a2V5OnZhbHVl"] {
            assert!(!shown.contains(secret), "{shown}");
        }
        assert!(shown.contains("password: <redacted>"), "{shown}");
        assert!(shown.contains("api_key: <redacted>"), "{shown}");
        assert!(
            shown.contains(r#"url: "https://admin:<redacted>@search:9200""#),
            "{shown}"
        );
        assert!(shown.contains(r#"username: "admin""#), "{shown}");
        let unset = format!("{:?}", ElasticsearchConfig::default());
        assert!(unset.contains(r#"password: """#), "{unset}");
    }

    #[test]
    fn userinfo_passwords_are_redacted_in_any_url() {
        assert_eq!(
            redact_userinfo("http://u:p@h:9200/x@y"),
            "http://u:<redacted>@h:9200/x@y"
        );
        assert_eq!(redact_userinfo("ftp://u:p:q@h"), "ftp://u:<redacted>@h");
        assert_eq!(redact_userinfo("u:p@h"), "u:<redacted>@h");
        assert_eq!(redact_userinfo("https://u@h:9200"), "https://u@h:9200");
        assert_eq!(
            redact_userinfo("https://h:9200/a:b@c"),
            "https://h:9200/a:b@c"
        );
        assert_eq!(redact_userinfo(""), "");
    }

    #[test]
    fn the_url_message_hides_the_password() {
        let config = ElasticsearchConfig {
            url: "ftp://admin:hunter2@search:9200".to_owned(),
            ..ElasticsearchConfig::default()
        };
        let shown = crate::config::check(&config).unwrap_err().to_string();
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(
            shown.contains("ftp://admin:<redacted>@search:9200"),
            "{shown}"
        );
    }
}
