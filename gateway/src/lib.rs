//! Headwater's collectors: HTTP (axum) and gRPC (tonic) ingest, auth, limits, decoding,
//! validation and append, plus the health, readiness and metrics endpoints.

pub mod auth;
pub mod body;
pub mod collector;
pub mod config;
pub mod decode;
pub mod dedup;
pub mod error;
pub mod grpc;
pub mod http;
pub mod ingest;
pub mod kafka_records;
pub mod metrics;
pub mod otlp;
pub mod ratelimit;
pub mod registry;
pub mod server;
pub mod tls;
pub mod validate;

pub use collector::{Collector, CollectorParts};
pub use config::{ConnectionsConfig, GatewayConfig, IoThreads, Limits};
pub use error::IngestError;
pub use http::{AppState, OpsState, Readiness, ReadinessFuture, app, ops_app, ops_app_with_auth};
pub use registry::SchemaRegistry;
pub use server::{ServeOptions, Serving, serve};
pub use validate::{AcceptAll, Invalid, Validate, Verdict};
