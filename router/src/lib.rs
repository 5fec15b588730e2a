//! Headwater's router: routes.yaml, consumers, filters and projections, fan-out, checkpoints.
//!
//! - [`rules`]: the routes.yaml model; [`check_routes`] parses it and explains every problem.
//! - [`runtime`]: [`Router::start`] runs one consumer task per (route, topic partition), each
//!   with its own consumer group (`router.` + route name), batches, delivers, dead-letters, commits.
//! - [`metrics`]: the `headwater_router_*` metrics.

pub mod config;
mod error;
pub mod metrics;
pub mod rules;
pub mod runtime;

pub use config::RouterConfig;
pub use error::RouterError;
pub use rules::{RouteProblem, Routes, SinkSpec, check_routes, check_routes_with};
pub use runtime::{
    DLQ_TOPIC, ORIGIN_HEADER, ROUTE_HEADER, Router, RouterHandle, RouterOptions, RouterParts,
    SINK_HEADER, SKIPPED_HEADER, SinkFactory, load_routes, spawn_routes_watcher,
};
