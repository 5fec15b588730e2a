//! The HTTP surface, assembled by [`app`]: the operational endpoints ([`ops`]), the schema
//! API ([`schemas_api`]), the two ingest routes ([`events`], [`logs`]) sharing their intake
//! steps ([`intake`]), the optional ops key in front of `/metrics` and the schema API
//! ([`ops_auth`]), and the request metrics layer ([`metrics_layer`]). Every error status is
//! chosen in `crate::error`.

mod events;
mod intake;
mod logs;
mod metrics_layer;
mod ops;
mod ops_auth;
mod schemas_api;
#[cfg(test)]
mod tests;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::post;
use metrics_exporter_prometheus::PrometheusHandle;
use tower::ServiceBuilder;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

use crate::collector::Collector;
use crate::config::{AuthConfig, GatewayConfig};
use crate::error::IngestError;
use crate::registry::SchemaRegistry;

/// A boxed future returned by [`Readiness::check`].
pub type ReadinessFuture<'a> = Pin<Box<dyn Future<Output = Result<(), String>> + Send + 'a>>;

/// Tells whether the process can take writes (answers `/readyz`).
pub trait Readiness: Send + Sync + 'static {
    /// `Ok` when the log tier is writable, otherwise why not.
    fn check(&self) -> ReadinessFuture<'_>;
}

/// Shared state of the HTTP handlers.
#[derive(Clone)]
pub struct AppState {
    /// Renders `/metrics`.
    pub metrics: PrometheusHandle,
    /// Answers `/readyz`.
    pub readiness: Arc<dyn Readiness>,
    /// Turns requests into durable batches.
    pub collector: Arc<Collector>,
    /// Answers `/v1/schemas`; `None` when the gateway runs without a registry.
    pub schemas: Option<Arc<SchemaRegistry>>,
}

/// What the operational endpoints need: a part without ingest (a log node) serves them too.
#[derive(Clone)]
pub struct OpsState {
    /// Renders `/metrics`.
    pub metrics: PrometheusHandle,
    /// Answers `/readyz`.
    pub readiness: Arc<dyn Readiness>,
}

impl axum::extract::FromRef<AppState> for OpsState {
    fn from_ref(state: &AppState) -> Self {
        Self {
            metrics: state.metrics.clone(),
            readiness: state.readiness.clone(),
        }
    }
}

/// Only `/healthz`, `/readyz` and `/metrics`, for parts that take no events over HTTP, all
/// open; [`ops_app_with_auth`] puts `/metrics` behind `gateway.auth.ops_keys`.
pub fn ops_app(state: OpsState) -> Router {
    ops_app_with_auth(state, &AuthConfig::default())
}

/// [`ops_app`] with `/metrics` behind the ops keys of `auth` when it has any.
pub fn ops_app_with_auth(state: OpsState, auth: &AuthConfig) -> Router {
    let state = OpsState {
        readiness: ops::CachedReadiness::wrap(state.readiness),
        ..state
    };
    ops_auth::guard(ops::metrics_route(), auth)
        .merge(ops::probes())
        .with_state(state)
        .layer(metrics_layer::MetricsLayer::default())
        .layer(TraceLayer::new_for_http())
}

/// Builds the gateway's router: `/healthz`, `/readyz`, `/metrics`, the schema API and the
/// ingest endpoints (HTTP and gRPC); `/metrics` and the schema API behind
/// `gateway.auth.ops_keys` when any is configured. Layers, outermost first: trace and timeout
/// (`request_timeout_ms`) around the whole router, then request metrics on each route (where
/// the matched pattern, the path label, is known); the ingest handlers take their place in
/// `max_concurrent_requests` themselves (`Collector::take_slot`). A layer on a router's
/// routes wraps each in a boxed service that every request clones, layer within layer, so only
/// the metrics are put there. `/readyz` reuses a probe's answer for a second; the configured
/// tenants are the values the `tenant` metric label may take.
pub fn app(state: AppState, config: &GatewayConfig) -> Router {
    crate::metrics::admit_tenants(state.collector.auth.tenants());
    let state = AppState {
        readiness: ops::CachedReadiness::wrap(state.readiness),
        ..state
    };
    let ingest = Router::new()
        .route("/v1/events", post(events::post_events))
        .route("/v1/logs", post(logs::post_logs))
        .with_state(state.clone())
        .merge(crate::grpc::router(state.collector.clone()));
    let ops_reads = schemas_api::routes().merge(ops::metrics_route());
    let routes = ops_auth::guard(ops_reads, &config.auth)
        .merge(ops::probes())
        .with_state(state)
        .merge(ingest)
        .layer(metrics_layer::MetricsLayer::default());
    Router::new().fallback_service(
        ServiceBuilder::new()
            .layer(TraceLayer::new_for_http())
            .layer(TimeoutLayer::with_status_code(
                IngestError::TimedOut.status(),
                Duration::from_millis(config.limits.request_timeout_ms),
            ))
            .service(routes),
    )
}
