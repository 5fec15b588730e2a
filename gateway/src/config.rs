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
    /// Largest single event, in bytes. Default 1 MiB.
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
            max_event_bytes: 1024 * 1024,
            max_concurrent_requests: 1024,
            request_timeout_ms: 30_000,
        }
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
    /// Request and body limits.
    pub limits: Limits,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".to_owned(),
            shutdown_grace_ms: 10_000,
            limits: Limits::default(),
        }
    }
}

impl GatewayConfig {
    /// Checks the wiring; returns every problem found as `(key path, message)`.
    pub fn validate(&self) -> Vec<(String, String)> {
        let mut errors = Vec::new();
        if self.listen.parse::<std::net::SocketAddr>().is_err() {
            errors.push((
                "gateway.listen".to_owned(),
                format!("`{}` is not a socket address (host:port)", self.listen),
            ));
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
