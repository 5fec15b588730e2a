//! Headwater's collectors: HTTP (axum) and gRPC (tonic) ingest, auth, limits, decoding,
//! validation and append, plus the health, readiness and metrics endpoints.

pub mod config;
pub mod http;
pub mod metrics;
pub mod server;

pub use config::{GatewayConfig, Limits};
pub use http::{AppState, Readiness, ReadinessFuture, app};
pub use server::serve;
