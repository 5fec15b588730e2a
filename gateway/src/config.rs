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
    /// Request bytes (after decompression) decoded and appended at once over all
    /// connections: a request whose body has been read waits, if it does not fit, until others
    /// are answered (in turn, within `request_timeout_ms`); one larger than the whole budget
    /// waits to be alone. A request holds several times its bytes while it is decoded and
    /// appended, so this bounds that memory whatever the number of requests; a client slow to
    /// send its body holds none of it. At most 4 GiB. Default 64 MiB.
    pub max_in_flight_bytes: u64,
    /// Time a request may take end to end, in milliseconds. Default 30,000.
    pub request_timeout_ms: u64,
    /// Longest client-given event `id`, in bytes; an event with a longer one is rejected (its
    /// index and reason in the 200's `errors`), the rest of its batch accepted. At most
    /// [`MAX_ENVELOPE_FIELD_BYTES`]. Default 128.
    pub max_id_bytes: u32,
    /// Longest event `type`, in bytes, rejected like a long `id`. At most
    /// [`MAX_ENVELOPE_FIELD_BYTES`]. Default 128.
    pub max_type_bytes: u32,
    /// Longest event `source` (the record key, and a header), in bytes, rejected like a long
    /// `id`. At most [`MAX_ENVELOPE_FIELD_BYTES`]. Default 256.
    ///
    /// Protobuf `attributes` are bounded too, not by configuration: at most 64 per event and
    /// 8 KiB of keys and values together (`decode::MAX_ATTRIBUTES`, `MAX_ATTRIBUTE_BYTES`).
    /// Within these bounds an event's envelope headers fit in the room the log keeps for them
    /// next to a payload of `max_event_bytes`.
    pub max_source_bytes: u32,
}

/// Largest value `max_id_bytes`, `max_type_bytes` and `max_source_bytes` may take.
pub const MAX_ENVELOPE_FIELD_BYTES: u32 = 1024;

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_body_bytes: 5 * 1024 * 1024,
            max_decompressed_bytes: 20 * 1024 * 1024,
            max_events_per_batch: 10_000,
            max_event_bytes: 512 * 1024,
            max_concurrent_requests: 1024,
            max_in_flight_bytes: 64 * 1024 * 1024,
            request_timeout_ms: 30_000,
            max_id_bytes: 128,
            max_type_bytes: 128,
            max_source_bytes: 256,
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

/// Authentication of producers, and optionally of the operational read endpoints.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// API keys. None configured: no authentication, tenant `default`, loopback only.
    pub keys: Vec<ApiKey>,
    /// Hex SHA-256 digests of the keys that may read `/metrics` and the schema API
    /// (`/v1/schemas…`), sent as `Authorization: Bearer KEY` or `X-Api-Key: KEY`; `/healthz`
    /// and `/readyz` stay open for probes. Separate from `keys`: a tenant's key is not an ops
    /// key. Default none: those endpoints are open.
    pub ops_keys: Vec<String>,
}

/// Whether `digest` is a hex SHA-256 (64 hex digits), as `keys[].sha256` and `ops_keys` are.
fn is_sha256_hex(digest: &str) -> bool {
    digest.len() == 64 && digest.chars().all(|c| c.is_ascii_hexdigit())
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

/// Connections on the HTTP port (`gateway.connections`): how many may be open, and how long an
/// idle one is kept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConnectionsConfig {
    /// Connections open at once; one more is closed as soon as it is accepted. Default 4,096
    /// (about 150 MiB of connection state when all are held; raise it where many devices
    /// connect directly rather than through a load balancer).
    pub max_connections: u32,
    /// Connections open at once from one client address (an IPv4 address, an IPv6 /64); one
    /// more from it is closed as soon as it is accepted. `gateway.trusted_proxies` count only
    /// toward `max_connections`. Default 1,000.
    pub max_connections_per_ip: u32,
    /// A connection with no request in flight for this long is closed, in milliseconds
    /// (HTTP/2 with a GOAWAY; one that never sends a byte too). An HTTP/1 connection waiting
    /// for its next request is also bounded by `header_read_timeout_ms`. Default 60,000.
    pub idle_timeout_ms: u64,
    /// Interval of the HTTP/2 keep-alive PINGs, in milliseconds; 0 sends none. Default 30,000.
    pub http2_keep_alive_interval_ms: u64,
    /// Time an HTTP/2 keep-alive PING may go unanswered before the connection is closed, in
    /// milliseconds. Default 20,000.
    pub http2_keep_alive_timeout_ms: u64,
    /// Streams (requests) open at once on one HTTP/2 connection. Default 256.
    pub http2_max_concurrent_streams: u32,
    /// Threads that serve the connections, each with an event loop of its own; a connection
    /// stays on the one it was given (the one serving the fewest) until it closes. `auto` (the
    /// default): one a core the process may run on; 0 serves them on the process's shared
    /// runtime.
    pub io_threads: IoThreads,
}

/// How many connection threads serve the connections (`gateway.connections.io_threads`): a
/// count, or `auto`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IoThreads {
    /// One a core the process may run on (its CPU affinity and cgroup quota), at most
    /// [`MAX_IO_THREADS`].
    #[default]
    Auto,
    /// This many; 0 serves the connections on the process's shared runtime.
    Count(u32),
}

impl IoThreads {
    /// The threads to start; 0 for none (the shared runtime).
    pub fn threads(self) -> usize {
        let count = match self {
            Self::Auto => {
                std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
            }
            Self::Count(count) => count as usize,
        };
        count.min(MAX_IO_THREADS as usize)
    }
}

impl Serialize for IoThreads {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Auto => serializer.serialize_str("auto"),
            Self::Count(count) => serializer.serialize_u32(*count),
        }
    }
}

impl<'de> Deserialize<'de> for IoThreads {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = IoThreads;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a thread count (0: the shared runtime) or `auto`")
            }

            fn visit_u64<E: serde::de::Error>(self, count: u64) -> Result<IoThreads, E> {
                u32::try_from(count)
                    .map(IoThreads::Count)
                    .map_err(|_| E::invalid_value(serde::de::Unexpected::Unsigned(count), &self))
            }

            fn visit_i64<E: serde::de::Error>(self, count: i64) -> Result<IoThreads, E> {
                u64::try_from(count)
                    .map_err(|_| E::invalid_value(serde::de::Unexpected::Signed(count), &self))
                    .and_then(|count| self.visit_u64(count))
            }

            fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<IoThreads, E> {
                match text {
                    "auto" => Ok(IoThreads::Auto),
                    _ => Err(E::invalid_value(serde::de::Unexpected::Str(text), &self)),
                }
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

impl Default for ConnectionsConfig {
    fn default() -> Self {
        Self {
            max_connections: 4_096,
            max_connections_per_ip: 1_000,
            idle_timeout_ms: 60_000,
            http2_keep_alive_interval_ms: 30_000,
            http2_keep_alive_timeout_ms: 20_000,
            http2_max_concurrent_streams: 256,
            io_threads: IoThreads::Auto,
        }
    }
}

/// Most connection threads `gateway.connections.io_threads` may ask for.
pub const MAX_IO_THREADS: u32 = 256;

impl ConnectionsConfig {
    /// Every problem of these settings, as `(key path, message)`.
    fn validate(&self) -> Vec<(String, String)> {
        let mut errors = Vec::new();
        for (key, value) in [
            ("max_connections", u64::from(self.max_connections)),
            (
                "max_connections_per_ip",
                u64::from(self.max_connections_per_ip),
            ),
            ("idle_timeout_ms", self.idle_timeout_ms),
            (
                "http2_keep_alive_timeout_ms",
                self.http2_keep_alive_timeout_ms,
            ),
            (
                "http2_max_concurrent_streams",
                u64::from(self.http2_max_concurrent_streams),
            ),
        ] {
            if value == 0 {
                errors.push((
                    format!("gateway.connections.{key}"),
                    "must be at least 1".to_owned(),
                ));
            }
        }
        if let IoThreads::Count(count) = self.io_threads
            && count > MAX_IO_THREADS
        {
            errors.push((
                "gateway.connections.io_threads".to_owned(),
                format!("must be at most {MAX_IO_THREADS}"),
            ));
        }
        if self.max_connections_per_ip > self.max_connections {
            errors.push((
                "gateway.connections.max_connections_per_ip".to_owned(),
                "must be at most gateway.connections.max_connections".to_owned(),
            ));
        }
        errors
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
    /// When set, each OTLP logs export request is kept whole as one event of this type (its
    /// protobuf `ExportLogsServiceRequest` as received; a JSON request re-encoded as
    /// protobuf), as the OpenTelemetry Collector's Kafka exporter stores a batch, instead of
    /// one event per log record. Default unset (one event per record). The shipped schema for
    /// it is `otel.logs` (topic `otlp_logs`).
    pub otlp_request_type: Option<String>,
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
    /// Connection caps and idle timeouts on the HTTP port.
    pub connections: ConnectionsConfig,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".to_owned(),
            shutdown_grace_ms: 10_000,
            header_read_timeout_ms: 10_000,
            trusted_proxies: Vec::new(),
            otlp_default_type: "otel.log".to_owned(),
            otlp_request_type: None,
            limits: Limits::default(),
            auth: AuthConfig::default(),
            rate_limit: RateLimitConfig::default(),
            dedup: DedupConfig::default(),
            tls: TlsConfig::default(),
            connections: ConnectionsConfig::default(),
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
        errors.extend(self.connections.validate());
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
            if !is_sha256_hex(&key.sha256) {
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
        for (i, digest) in self.auth.ops_keys.iter().enumerate() {
            if !is_sha256_hex(digest) {
                errors.push((
                    format!("gateway.auth.ops_keys[{i}]"),
                    "must be 64 hex digits (the SHA-256 of the key)".to_owned(),
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
            ("max_in_flight_bytes", l.max_in_flight_bytes),
        ] {
            if value == 0 {
                errors.push((
                    format!("gateway.limits.{key}"),
                    "must be at least 1".to_owned(),
                ));
            }
        }
        for (key, value) in [
            ("max_id_bytes", l.max_id_bytes),
            ("max_type_bytes", l.max_type_bytes),
            ("max_source_bytes", l.max_source_bytes),
        ] {
            if !(1..=MAX_ENVELOPE_FIELD_BYTES).contains(&value) {
                errors.push((
                    format!("gateway.limits.{key}"),
                    format!("must be between 1 and {MAX_ENVELOPE_FIELD_BYTES}"),
                ));
            }
        }
        if l.max_in_flight_bytes > u64::from(u32::MAX) {
            errors.push((
                "gateway.limits.max_in_flight_bytes".to_owned(),
                format!("must be at most {} (4 GiB)", u32::MAX),
            ));
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ops_keys_must_be_sha256_digests() {
        let mut config = GatewayConfig::default();
        config.auth.ops_keys = vec![
            "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08".to_owned(),
            "9F86D081884C7D659A2FEAA0C55AD015A3BF4F1B2B0B822CD15D6C15B0F00A08".to_owned(),
            "my-ops-key".to_owned(),
        ];
        let errors = config.validate();
        assert_eq!(
            errors,
            vec![(
                "gateway.auth.ops_keys[2]".to_owned(),
                "must be 64 hex digits (the SHA-256 of the key)".to_owned()
            )]
        );
    }

    #[test]
    fn ops_keys_parse_and_default_to_none() {
        assert!(GatewayConfig::default().auth.ops_keys.is_empty());
        let text = r#"{"auth": {"ops_keys": ["9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"]}}"#;
        let config: GatewayConfig = serde_json::from_str(text).unwrap();
        assert_eq!(config.auth.ops_keys.len(), 1);
        assert!(config.validate().is_empty(), "{:?}", config.validate());
    }

    #[test]
    fn connection_limits_parse_and_are_checked() {
        let text = r#"{"connections": {"max_connections": 50, "idle_timeout_ms": 500}}"#;
        let config: GatewayConfig = serde_json::from_str(text).unwrap();
        assert_eq!(config.connections.max_connections, 50);
        assert_eq!(config.connections.max_connections_per_ip, 1_000);
        assert_eq!(
            config.validate(),
            vec![(
                "gateway.connections.max_connections_per_ip".to_owned(),
                "must be at most gateway.connections.max_connections".to_owned()
            )]
        );
        let mut config = GatewayConfig::default();
        config.connections.idle_timeout_ms = 0;
        config.connections.http2_keep_alive_interval_ms = 0;
        assert_eq!(
            config.validate(),
            vec![(
                "gateway.connections.idle_timeout_ms".to_owned(),
                "must be at least 1".to_owned()
            )]
        );
        let threads = r#"{"connections": {"io_threads": 2}}"#;
        let config: GatewayConfig = serde_json::from_str(threads).unwrap();
        assert_eq!(config.connections.io_threads, IoThreads::Count(2));
        assert!(config.validate().is_empty());
        let mut config = GatewayConfig::default();
        config.connections.io_threads = IoThreads::Count(MAX_IO_THREADS + 1);
        assert_eq!(
            config.validate(),
            vec![(
                "gateway.connections.io_threads".to_owned(),
                "must be at most 256".to_owned()
            )]
        );
        let unknown = r#"{"connections": {"max_conns": 5}}"#;
        assert!(serde_json::from_str::<GatewayConfig>(unknown).is_err());
    }

    #[test]
    fn io_threads_is_a_count_or_auto() {
        assert_eq!(
            GatewayConfig::default().connections.io_threads,
            IoThreads::Auto
        );
        let auto: GatewayConfig =
            serde_json::from_str(r#"{"connections": {"io_threads": "auto"}}"#).unwrap();
        assert_eq!(auto.connections.io_threads, IoThreads::Auto);
        let cores = std::thread::available_parallelism().unwrap().get();
        assert_eq!(
            IoThreads::Auto.threads(),
            cores.min(MAX_IO_THREADS as usize)
        );
        assert_eq!(IoThreads::Count(0).threads(), 0);
        assert_eq!(IoThreads::Count(3).threads(), 3);
        assert_eq!(
            serde_json::to_value(IoThreads::Auto).unwrap(),
            serde_json::json!("auto")
        );
        assert_eq!(
            serde_json::to_value(IoThreads::Count(0)).unwrap(),
            serde_json::json!(0)
        );
        for bad in [r#""many""#, "-1", "4294967296", "1.5", "true"] {
            let text = format!(r#"{{"connections": {{"io_threads": {bad}}}}}"#);
            let error = serde_json::from_str::<GatewayConfig>(&text).unwrap_err();
            assert!(
                error
                    .to_string()
                    .contains("a thread count (0: the shared runtime) or `auto`"),
                "{bad}: {error}"
            );
        }
        let unknown = r#"{"connections": {"max_conns": 5}}"#;
        assert!(serde_json::from_str::<GatewayConfig>(unknown).is_err());
    }
}
