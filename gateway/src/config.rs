//! Configuration of the collectors (`gateway:` in headwater.yaml).

use serde::{Deserialize, Serialize};

/// Request and body limits of the collectors.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Largest request body on the wire, in bytes. Default 5 MiB.
    pub max_body_bytes: u64,
    /// Largest request body after decompression, in bytes. Default 20 MiB.
    pub max_decompressed_bytes: u64,
    /// Most events in one batch. Default 10,000.
    pub max_events_per_batch: u32,
    /// Largest single event payload, in bytes; keep it below the log's `max_message_bytes`
    /// less room for the envelope headers. Default 512 KiB.
    pub max_event_bytes: u32,
    /// Requests handled at once before load shedding (503). Default 1024.
    pub max_concurrent_requests: u32,
    /// Time a request may take end to end, in milliseconds. Default 30,000.
    pub request_timeout_ms: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_body_bytes: 5 * 1024 * 1024,
            max_decompressed_bytes: 20 * 1024 * 1024,
            max_events_per_batch: 10_000,
            max_event_bytes: 512 * 1024,
            max_concurrent_requests: 1024,
            request_timeout_ms: 30_000,
        }
    }
}

/// One API key: its tenant and the SHA-256 of the key (never the key itself).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKey {
    /// Tenant the key belongs to.
    pub tenant: String,
    /// Hex SHA-256 of the key (`printf %s KEY | sha256sum`).
    pub sha256: String,
    /// A disabled key is recognised but refused with 403. Default false.
    #[serde(default)]
    pub disabled: bool,
}

/// Authentication of producers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// API keys. None configured: no authentication, tenant `default`, loopback only.
    pub keys: Vec<ApiKey>,
}

/// Per-key rate limits (token buckets); 0 switches a limit off.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RateLimitConfig {
    /// Requests per second per key. Default 1,000.
    pub requests_per_second: u32,
    /// Events per second per key. Default 500,000.
    pub events_per_second: u32,
    /// Burst, as seconds of the rate. Default 2.
    pub burst_seconds: u32,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        Self {
            requests_per_second: 1_000,
            events_per_second: 500_000,
            burst_seconds: 2,
        }
    }
}

/// Duplicate suppression of client-given event ids.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DedupConfig {
    /// How long an id from a source is remembered, in milliseconds; 0 switches dedup off.
    /// Default 10 minutes.
    pub window_ms: u64,
    /// Most ids remembered; the oldest are forgotten first. Default 1,000,000.
    pub max_entries: usize,
}

impl Default for DedupConfig {
    fn default() -> Self {
        Self {
            window_ms: 600_000,
            max_entries: 1_000_000,
        }
    }
}

/// TLS on the gateway port, and optionally client certificates (mTLS).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificate chain; TLS is on when set.
    pub cert_file: Option<String>,
    /// PEM private key of the certificate.
    pub key_file: Option<String>,
    /// PEM CA bundle that client certificates must chain to; enables mTLS.
    pub client_ca_file: Option<String>,
    /// Refuse clients without a valid certificate (otherwise API keys still work). Default false.
    pub require_client_cert: bool,
    /// Client certificate subject common name → tenant. A mapped certificate authenticates the
    /// request without an API key.
    pub client_tenants: std::collections::BTreeMap<String, String>,
}

impl TlsConfig {
    /// Whether TLS is configured.
    pub fn enabled(&self) -> bool {
        self.cert_file.is_some()
    }
}

/// The collectors' configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GatewayConfig {
    /// HTTP and gRPC listen address. Default `127.0.0.1:8080`.
    pub listen: String,
    /// Time given to in-flight requests on shutdown, in milliseconds. Default 10,000.
    pub shutdown_grace_ms: u64,
    /// Time a client may take to send its request headers, in milliseconds. Default 10,000.
    pub header_read_timeout_ms: u64,
    /// Peers whose `X-Forwarded-For` is believed (IP addresses). Default none.
    pub trusted_proxies: Vec<String>,
    /// Event type given to OTLP log records without an `event.name`. Default `otel.log`.
    pub otlp_default_type: String,
    /// Request and body limits.
    pub limits: Limits,
    /// API keys.
    pub auth: AuthConfig,
    /// Rate limits per key.
    pub rate_limit: RateLimitConfig,
    /// Duplicate suppression.
    pub dedup: DedupConfig,
    /// TLS and mTLS.
    pub tls: TlsConfig,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".to_owned(),
            shutdown_grace_ms: 10_000,
            header_read_timeout_ms: 10_000,
            trusted_proxies: Vec::new(),
            otlp_default_type: "otel.log".to_owned(),
            limits: Limits::default(),
            auth: AuthConfig::default(),
            rate_limit: RateLimitConfig::default(),
            dedup: DedupConfig::default(),
            tls: TlsConfig::default(),
        }
    }
}

impl GatewayConfig {
    /// Whether every request is authenticated (API keys or required client certificates).
    pub fn authenticates(&self) -> bool {
        !self.auth.keys.is_empty()
            || (self.tls.require_client_cert && self.tls.client_ca_file.is_some())
    }

    /// Checks the wiring; returns every problem found as `(key path, message)`.
    pub fn validate(&self) -> Vec<(String, String)> {
        let mut errors = Vec::new();
        match self.listen.parse::<std::net::SocketAddr>() {
            Err(_) => errors.push((
                "gateway.listen".to_owned(),
                format!("`{}` is not a socket address (host:port)", self.listen),
            )),
            Ok(addr) if !addr.ip().is_loopback() && !self.authenticates() => errors.push((
                "gateway.listen".to_owned(),
                format!(
                    "`{}` is not a loopback address and no client is authenticated: configure \
                     gateway.auth.keys (or required client certificates) before accepting events \
                     from the network",
                    self.listen
                ),
            )),
            Ok(_) => {}
        }
        let tls = &self.tls;
        if tls.cert_file.is_some() != tls.key_file.is_some() {
            errors.push((
                "gateway.tls".to_owned(),
                "cert_file and key_file go together".to_owned(),
            ));
        }
        if tls.client_ca_file.is_some() && !tls.enabled() {
            errors.push((
                "gateway.tls.client_ca_file".to_owned(),
                "needs gateway.tls.cert_file and key_file".to_owned(),
            ));
        }
        if (tls.require_client_cert || !tls.client_tenants.is_empty())
            && tls.client_ca_file.is_none()
        {
            errors.push((
                "gateway.tls.client_ca_file".to_owned(),
                "is required for client certificates (require_client_cert, client_tenants)"
                    .to_owned(),
            ));
        }
        for (i, proxy) in self.trusted_proxies.iter().enumerate() {
            if proxy.parse::<std::net::IpAddr>().is_err() {
                errors.push((
                    format!("gateway.trusted_proxies[{i}]"),
                    format!("`{proxy}` is not an IP address"),
                ));
            }
        }
        for (i, key) in self.auth.keys.iter().enumerate() {
            let valid = key.sha256.len() == 64 && key.sha256.chars().all(|c| c.is_ascii_hexdigit());
            if !valid {
                errors.push((
                    format!("gateway.auth.keys[{i}].sha256"),
                    "must be 64 hex digits (the SHA-256 of the key)".to_owned(),
                ));
            }
            if key.tenant.trim().is_empty() {
                errors.push((
                    format!("gateway.auth.keys[{i}].tenant"),
                    "must not be empty".to_owned(),
                ));
            }
        }
        let l = &self.limits;
        for (key, value) in [
            ("max_body_bytes", l.max_body_bytes),
            ("max_decompressed_bytes", l.max_decompressed_bytes),
            ("max_events_per_batch", u64::from(l.max_events_per_batch)),
            ("max_event_bytes", u64::from(l.max_event_bytes)),
            (
                "max_concurrent_requests",
                u64::from(l.max_concurrent_requests),
            ),
            ("request_timeout_ms", l.request_timeout_ms),
        ] {
            if value == 0 {
                errors.push((
                    format!("gateway.limits.{key}"),
                    "must be at least 1".to_owned(),
                ));
            }
        }
        if l.max_decompressed_bytes < l.max_body_bytes {
            errors.push((
                "gateway.limits.max_decompressed_bytes".to_owned(),
                "must be at least gateway.limits.max_body_bytes".to_owned(),
            ));
        }
        errors
    }
}
