//! The HTTP surface through `app()` and `oneshot`: ops endpoints, metrics, both ingest routes.

use super::*;
use axum::body::Body;
use axum::extract::Request;
use axum::http::StatusCode;
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
async fn not_ready_says_when_to_retry() {
    let response = test_app(Err("disk full".into()))
        .oneshot(Request::get("/readyz").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(response.headers()["retry-after"], "1");
}

#[tokio::test]
async fn the_schema_api_without_a_registry_is_404() {
    let (status, body) = get_text(test_app(Ok(())), "/v1/schemas").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(body.contains("without a schema registry"), "{body}");
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
