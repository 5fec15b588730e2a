//! Configuration of the router (`router:` in headwater.yaml).

use serde::{Deserialize, Serialize};

/// Where the routing rules live, and the defaults routes do not override.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RouterConfig {
    /// Path of routes.yaml. Default `config/routes.yaml`.
    pub routes: String,
    /// Events per batch before it is sent, unless a route sets `batch.max_events`.
    /// Default 10,000.
    pub batch_max_events: usize,
    /// Payload bytes per batch before it is sent, unless a route sets `batch.max_bytes`.
    /// Default 8 MiB (8,388,608).
    pub batch_max_bytes: usize,
    /// Age in milliseconds at which an open batch is sent even if no more events arrive,
    /// unless a route sets `batch.max_age_ms`. Default 60,000 (S3-friendly objects).
    pub batch_max_age_ms: u64,
    /// First wait in milliseconds before re-sending a batch a sink failed. Default 100.
    pub retry_initial_ms: u64,
    /// Longest wait in milliseconds between re-sends (doubling, with jitter). Default 30,000.
    pub retry_max_ms: u64,
    /// Milliseconds graceful shutdown waits for open batches to be delivered before it gives
    /// up on them (they are re-sent on the next start). Default 30,000.
    pub shutdown_timeout_ms: u64,
}

impl Default for RouterConfig {
    fn default() -> Self {
        Self {
            routes: "config/routes.yaml".to_owned(),
            batch_max_events: 10_000,
            batch_max_bytes: 8 * 1024 * 1024,
            batch_max_age_ms: 60_000,
            retry_initial_ms: 100,
            retry_max_ms: 30_000,
            shutdown_timeout_ms: 30_000,
        }
    }
}

impl RouterConfig {
    /// Checks the wiring; returns every problem found as `(key path, message)`.
    pub fn validate(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let mut bad = |key: &str, msg: &str| out.push((format!("router.{key}"), msg.to_owned()));
        if self.routes.trim().is_empty() {
            bad("routes", "must not be empty");
        }
        if self.batch_max_events == 0 {
            bad("batch_max_events", "must be at least 1");
        }
        if self.batch_max_bytes == 0 {
            bad("batch_max_bytes", "must be at least 1");
        }
        if self.batch_max_age_ms == 0 {
            bad("batch_max_age_ms", "must be at least 1");
        }
        if self.retry_initial_ms == 0 || self.retry_max_ms < self.retry_initial_ms {
            bad(
                "retry_max_ms",
                "must be at least retry_initial_ms, itself at least 1",
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_validate_and_partial_yaml_fills_defaults() {
        assert!(RouterConfig::default().validate().is_empty());
        let c: RouterConfig = yaml_serde::from_str("batch_max_age_ms: 500").unwrap();
        assert_eq!(c.batch_max_age_ms, 500);
        assert_eq!(c.batch_max_events, 10_000);
        assert!(yaml_serde::from_str::<RouterConfig>("nope: 1").is_err());
        let bad = RouterConfig {
            batch_max_events: 0,
            ..RouterConfig::default()
        };
        assert_eq!(bad.validate()[0].0, "router.batch_max_events");
    }
}
