//! The operational endpoints: `/healthz` (liveness), `/readyz` (the log tier takes writes)
//! and `/metrics` (Prometheus text). The probes and `/metrics` are separate routers, so that
//! `/metrics` alone can go behind the ops keys (`super::ops_auth`). `/readyz` answers from a
//! probe at most [`READINESS_FRESH_FOR`] old ([`CachedReadiness`]), so that a flood of probes
//! costs one probe write a second.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{FromRef, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

use super::{OpsState, Readiness, ReadinessFuture};
use crate::error::IngestError;

/// How long a readiness answer is reused.
pub(super) const READINESS_FRESH_FOR: Duration = Duration::from_secs(1);

/// A [`Readiness`] whose answer (ready or not) is reused for [`READINESS_FRESH_FOR`]; callers
/// that come while a probe runs wait for it and share its answer.
pub(super) struct CachedReadiness {
    inner: Arc<dyn Readiness>,
    last: tokio::sync::Mutex<Option<(tokio::time::Instant, Result<(), String>)>>,
}

impl CachedReadiness {
    /// `inner` behind the cache.
    pub(super) fn wrap(inner: Arc<dyn Readiness>) -> Arc<dyn Readiness> {
        Arc::new(Self {
            inner,
            last: tokio::sync::Mutex::new(None),
        })
    }
}

impl Readiness for CachedReadiness {
    fn check(&self) -> ReadinessFuture<'_> {
        Box::pin(async move {
            let mut last = self.last.lock().await;
            if let Some((at, answer)) = last.as_ref()
                && at.elapsed() < READINESS_FRESH_FOR
            {
                return answer.clone();
            }
            let answer = self.inner.check().await;
            *last = Some((tokio::time::Instant::now(), answer.clone()));
            answer
        })
    }
}

/// `/healthz` and `/readyz`, always open, in any router whose state holds an [`OpsState`].
pub(super) fn probes<S>() -> Router<S>
where
    OpsState: FromRef<S>,
    S: Clone + Send + Sync + 'static,
{
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
}

/// `/metrics`, in any router whose state holds an [`OpsState`].
pub(super) fn metrics_route<S>() -> Router<S>
where
    OpsState: FromRef<S>,
    S: Clone + Send + Sync + 'static,
{
    Router::new().route("/metrics", get(metrics))
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
