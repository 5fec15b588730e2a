//! The HTTP surface: health, readiness, metrics and the ingest routes, built by [`app`].

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use metrics_exporter_prometheus::PrometheusHandle;
use serde_json::json;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

use crate::config::GatewayConfig;
use crate::metrics::{HTTP_REQUEST_DURATION_SECONDS, HTTP_REQUESTS_TOTAL};

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
}

/// Builds the gateway's router: `/healthz`, `/readyz`, `/metrics` and the ingest endpoints.
pub fn app(state: AppState, config: &GatewayConfig) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/v1/events", post(not_yet))
        .route("/v1/logs", post(not_yet))
        .with_state(state)
        .layer(middleware::from_fn(record_metrics))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            Duration::from_millis(config.limits.request_timeout_ms),
        ))
        .layer(TraceLayer::new_for_http())
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(state): State<AppState>) -> Response {
    match state.readiness.check().await {
        Ok(()) => (StatusCode::OK, Json(json!({"status": "ready"}))).into_response(),
        Err(reason) => {
            tracing::warn!(%reason, "not ready");
            let mut response = (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({"status": "not ready", "reason": reason})),
            )
                .into_response();
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            response
        }
    }
}

async fn metrics(State(state): State<AppState>) -> Response {
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

/// Ingest is not built yet: say so plainly instead of pretending to accept events.
async fn not_yet() -> Response {
    (
        StatusCode::NOT_IMPLEMENTED,
        Json(json!({"error": "ingestion is not implemented yet in this build"})),
    )
        .into_response()
}

async fn record_metrics(request: Request, next: Next) -> Response {
    let path = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = request.method().as_str().to_owned();
    let started = Instant::now();
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    metrics::counter!(HTTP_REQUESTS_TOTAL, "method" => method.clone(), "path" => path.clone(), "status" => status)
        .increment(1);
    metrics::histogram!(HTTP_REQUEST_DURATION_SECONDS, "method" => method, "path" => path)
        .record(started.elapsed().as_secs_f64());
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    struct Fixed(Result<(), String>);

    impl Readiness for Fixed {
        fn check(&self) -> ReadinessFuture<'_> {
            let result = self.0.clone();
            Box::pin(async move { result })
        }
    }

    fn test_app(ready: Result<(), String>) -> Router {
        let state = AppState {
            metrics: crate::metrics::install(),
            readiness: Arc::new(Fixed(ready)),
        };
        app(state, &GatewayConfig::default())
    }

    async fn get_text(app: Router, path: &str) -> (StatusCode, String) {
        let response = app
            .oneshot(Request::get(path).body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8(body.to_vec()).unwrap())
    }

    #[tokio::test]
    async fn healthz_answers_ok() {
        let (status, body) = get_text(test_app(Ok(())), "/healthz").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body, "ok\n");
    }

    #[tokio::test]
    async fn readyz_reflects_the_probe() {
        let (status, _) = get_text(test_app(Ok(())), "/readyz").await;
        assert_eq!(status, StatusCode::OK);
        let (status, body) = get_text(test_app(Err("disk full".into())), "/readyz").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(body.contains("disk full"), "{body}");
    }

    #[tokio::test]
    async fn metrics_lists_headwater_series_after_a_request() {
        let app = test_app(Ok(()));
        let _ = get_text(app.clone(), "/healthz").await;
        let (status, body) = get_text(app, "/metrics").await;
        assert_eq!(status, StatusCode::OK);
        assert!(body.contains("headwater_build_info"), "{body}");
        assert!(
            body.contains(
                "headwater_http_requests_total{method=\"GET\",path=\"/healthz\",status=\"200\"}"
            ),
            "{body}"
        );
    }

    #[tokio::test]
    async fn ingest_says_it_is_not_built_yet() {
        let response = test_app(Ok(()))
            .oneshot(Request::post("/v1/events").body(Body::from("[]")).unwrap())
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::NOT_IMPLEMENTED);
    }
}
