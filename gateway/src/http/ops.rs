//! The operational endpoints: `/healthz` (liveness), `/readyz` (the log tier takes writes)
//! and `/metrics` (Prometheus text).

use axum::extract::{FromRef, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

use super::OpsState;
use crate::error::IngestError;

/// The three routes, in any router whose state holds an [`OpsState`].
pub(super) fn routes<S>() -> Router<S>
where
    OpsState: FromRef<S>,
    S: Clone + Send + Sync + 'static,
{
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(state): State<OpsState>) -> Response {
    match state.readiness.check().await {
        Ok(()) => Json(json!({"status": "ready"})).into_response(),
        Err(reason) => IngestError::NotReady { reason }.into_response(),
    }
}

async fn metrics(State(state): State<OpsState>) -> Response {
    state.metrics.run_upkeep();
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.render(),
    )
        .into_response()
}
