//! Headwater's router: routes.yaml, consumers, filters and projections, fan-out, checkpoints.

pub mod config;

pub use config::RouterConfig;
