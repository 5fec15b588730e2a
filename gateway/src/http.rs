//! The HTTP surface: health, readiness, metrics and the ingest routes, built by [`app`].

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use std::net::SocketAddr;

use axum::error_handling::HandleErrorLayer;
use axum::extract::{ConnectInfo, MatchedPath, Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use metrics_exporter_prometheus::PrometheusHandle;
use serde_json::json;
use tower::{BoxError, ServiceBuilder};
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

use crate::collector::Collector;
use crate::config::GatewayConfig;
use crate::error::IngestError;
use crate::ingest::{Report, RequestMeta};
use crate::metrics::{
    HTTP_REQUEST_DURATION_SECONDS, HTTP_REQUESTS_TOTAL, INGEST_BYTES_TOTAL, INGEST_REFUSED_TOTAL,
    INGEST_REQUEST_DURATION_SECONDS,
};
use crate::registry::SchemaRegistry;
use crate::tls::ClientCert;
use crate::{body, decode, otlp};
use bytes::Bytes;
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsServiceRequest, ExportLogsServiceResponse,
};

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

/// Only `/healthz`, `/readyz` and `/metrics`, for parts that take no events over HTTP.
pub fn ops_app(state: OpsState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(state)
        .layer(middleware::from_fn(record_metrics))
        .layer(TraceLayer::new_for_http())
}

/// Builds the gateway's router: `/healthz`, `/readyz`, `/metrics` and the ingest endpoints.
pub fn app(state: AppState, config: &GatewayConfig) -> Router {
    let max_in_flight =
        usize::try_from(config.limits.max_concurrent_requests).unwrap_or(usize::MAX);
    let ingest = Router::new()
        .route("/v1/events", post(post_events))
        .route("/v1/logs", post(post_logs))
        .with_state(state.clone())
        .merge(crate::grpc::router(state.collector.clone()))
        .layer(
            ServiceBuilder::new()
                .layer(HandleErrorLayer::new(overloaded))
                .load_shed()
                .concurrency_limit(max_in_flight),
        );
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/v1/schemas", get(list_schemas))
        .route(
            "/v1/schemas/{event_type}/versions/{version}",
            get(get_schema),
        )
        .with_state(state)
        .merge(ingest)
        .layer(middleware::from_fn(record_metrics))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            Duration::from_millis(config.limits.request_timeout_ms),
        ))
        .layer(TraceLayer::new_for_http())
}

async fn overloaded(_: BoxError) -> Response {
    let mut response = (
        StatusCode::SERVICE_UNAVAILABLE,
        Json(json!({"error": "overloaded: too many requests in flight"})),
    )
        .into_response();
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    response
}

fn no_registry() -> Response {
    (
        StatusCode::NOT_FOUND,
        Json(json!({"error": "this gateway runs without a schema registry"})),
    )
        .into_response()
}

async fn list_schemas(State(state): State<AppState>) -> Response {
    let Some(schemas) = &state.schemas else {
        return no_registry();
    };
    let registry = schemas.snapshot();
    Json(json!({"schemas": registry.list()})).into_response()
}

async fn get_schema(
    State(state): State<AppState>,
    Path((event_type, version)): Path<(String, String)>,
) -> Response {
    let Some(schemas) = &state.schemas else {
        return no_registry();
    };
    let registry = schemas.snapshot();
    let found = version.parse::<u32>().ok().and_then(|v| {
        Some((
            registry.info(&event_type, v)?,
            registry.get(&event_type, v)?,
        ))
    });
    match found {
        Some((info, text)) => {
            let content_type = match info.format {
                headwater_schemas::SchemaFormat::Json => "application/schema+json",
                headwater_schemas::SchemaFormat::Protobuf => "text/plain; charset=utf-8",
            };
            ([(header::CONTENT_TYPE, content_type)], text.to_owned()).into_response()
        }
        None => (
            StatusCode::NOT_FOUND,
            Json(json!({"error": format!("no schema {event_type:?} version {version}")})),
        )
            .into_response(),
    }
}

/// The body encodings `POST /v1/events` takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BodyKind {
    Json,
    Ndjson,
    Protobuf,
}

fn body_kind(headers: &HeaderMap) -> Result<BodyKind, IngestError> {
    let Some(value) = headers.get(header::CONTENT_TYPE) else {
        return Ok(BodyKind::Json);
    };
    let text = value.to_str().unwrap_or("?");
    let essence = text
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    match essence.as_str() {
        "application/json" | "text/json" => Ok(BodyKind::Json),
        "application/x-ndjson"
        | "application/ndjson"
        | "application/jsonl"
        | "application/x-jsonlines" => Ok(BodyKind::Ndjson),
        "application/x-protobuf" | "application/protobuf" | "application/vnd.google.protobuf" => {
            Ok(BodyKind::Protobuf)
        }
        _ => Err(IngestError::UnsupportedType(text.to_owned())),
    }
}

#[tracing::instrument(skip_all, fields(tenant, batch_size))]
async fn post_events(State(state): State<AppState>, request: Request) -> Response {
    let started = Instant::now();
    let result = ingest_http(&state.collector, request).await;
    metrics::histogram!(INGEST_REQUEST_DURATION_SECONDS, "transport" => "http")
        .record(started.elapsed().as_secs_f64());
    match result {
        Ok(report) => (StatusCode::OK, Json(report)).into_response(),
        Err(error) => {
            metrics::counter!(INGEST_REFUSED_TOTAL, "transport" => "http", "reason" => error.label()).increment(1);
            error.into_response()
        }
    }
}

/// The steps every HTTP collector shares: admit the caller (auth, request rate, client IP),
/// check the content type, read the body within its limit and undo its encoding.
async fn admit_and_read(
    collector: &Collector,
    request: Request,
) -> Result<(RequestMeta, BodyKind, Bytes), IngestError> {
    let (parts, body) = request.into_parts();
    let peer = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0);
    let meta = collector.admit(&parts.headers, peer, parts.extensions.get::<ClientCert>())?;
    tracing::Span::current().record("tenant", &*meta.principal.tenant);
    let kind = body_kind(&parts.headers)?;
    let limits = &collector.limits;
    let raw = body::read_limited(&parts.headers, body, limits.max_body_bytes).await?;
    let bytes = body::decompress(&parts.headers, raw, limits.max_decompressed_bytes)?;
    Ok((meta, kind, bytes))
}

async fn ingest_http(collector: &Collector, request: Request) -> Result<Report, IngestError> {
    let (meta, kind, bytes) = admit_and_read(collector, request).await?;
    let limits = &collector.limits;
    metrics::counter!(INGEST_BYTES_TOTAL, "tenant" => meta.principal.tenant.to_string())
        .increment(bytes.len() as u64);
    let max_events = limits.max_events_per_batch as usize;
    let decoded = match kind {
        BodyKind::Json => decode::decode_json(&bytes, max_events)?,
        BodyKind::Ndjson => decode::decode_ndjson(&bytes, max_events)?,
        BodyKind::Protobuf => decode::decode_protobuf(&bytes, max_events)?,
    };
    tracing::Span::current().record("batch_size", decoded.len());
    collector.publish(&meta, decoded).await
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(state): State<OpsState>) -> Response {
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

/// OTLP/HTTP logs: protobuf or JSON `ExportLogsServiceRequest`, answered in the same encoding.
#[tracing::instrument(skip_all, fields(tenant, batch_size))]
async fn post_logs(State(state): State<AppState>, request: Request) -> Response {
    let started = Instant::now();
    let result = ingest_otlp_http(&state.collector, request).await;
    metrics::histogram!(INGEST_REQUEST_DURATION_SECONDS, "transport" => "otlp_http")
        .record(started.elapsed().as_secs_f64());
    match result {
        Ok((BodyKind::Protobuf, answer)) => (
            [(header::CONTENT_TYPE, "application/x-protobuf")],
            prost::Message::encode_to_vec(&answer),
        )
            .into_response(),
        Ok((_, answer)) => Json(answer).into_response(),
        Err(error) => {
            metrics::counter!(INGEST_REFUSED_TOTAL, "transport" => "otlp_http", "reason" => error.label()).increment(1);
            error.into_response()
        }
    }
}

async fn ingest_otlp_http(
    collector: &Collector,
    request: Request,
) -> Result<(BodyKind, ExportLogsServiceResponse), IngestError> {
    let (meta, kind, bytes) = admit_and_read(collector, request).await?;
    let limits = &collector.limits;
    let export: ExportLogsServiceRequest = match kind {
        BodyKind::Protobuf => prost::Message::decode(bytes)
            .map_err(|e| IngestError::Malformed(format!("OTLP protobuf: {e}")))?,
        BodyKind::Json => serde_json::from_slice(&bytes)
            .map_err(|e| IngestError::Malformed(format!("OTLP JSON: {e}")))?,
        BodyKind::Ndjson => {
            return Err(IngestError::UnsupportedType(
                "application/x-ndjson".to_owned(),
            ));
        }
    };
    let max = limits.max_events_per_batch as usize;
    let decoded = otlp::decode_request(export, &collector.otlp_default_type, max)?;
    tracing::Span::current().record("batch_size", decoded.len());
    let report = collector.publish(&meta, decoded).await?;
    Ok((kind, otlp::response(&report)))
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
        let config = GatewayConfig::default();
        let collector = Collector::new(crate::collector::CollectorParts {
            config: config.clone(),
            log: Arc::new(headwater_log::MemoryLog::default()),
            validator: Arc::new(crate::validate::AcceptAll {
                topic: "events".into(),
            }),
            dlq_topic: "events.dlq".into(),
        });
        let state = AppState {
            metrics: crate::metrics::install(),
            readiness: Arc::new(Fixed(ready)),
            collector: Arc::new(collector),
            schemas: None,
        };
        app(state, &config)
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
    async fn ingest_metrics_are_per_tenant_and_type() {
        let app = test_app(Ok(()));
        let body = r#"[{"type":"metrics.probe","source":"d1","payload":{"n":12345}}]"#;
        let response = app
            .clone()
            .oneshot(
                Request::post("/v1/events")
                    .header("content-type", "application/json")
                    .body(Body::from(body))
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let (_, text) = get_text(app, "/metrics").await;
        // `AcceptAll` registers no types, so the label is `other`.
        let series = |name: &str| {
            text.lines()
                .find(|l| l.starts_with(name) && l.contains("type=\"other\""))
                .map(str::to_owned)
        };
        let bytes = series("headwater_ingest_event_bytes_total{").expect(&text);
        assert!(bytes.contains("tenant=\"default\""), "{bytes}");
        let counted: f64 = bytes.rsplit(' ').next().unwrap().parse().unwrap();
        assert!(counted >= 11.0, "{bytes}");
        let latency = series("headwater_ingest_event_latency_seconds_count{").expect(&text);
        assert!(!latency.ends_with(" 0"), "{latency}");
    }

    #[tokio::test]
    async fn otlp_json_with_no_records_is_answered_in_json() {
        let response = test_app(Ok(()))
            .oneshot(
                Request::post("/v1/logs")
                    .header("content-type", "application/json")
                    .body(Body::from(r#"{"resourceLogs":[]}"#))
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
    }
}
