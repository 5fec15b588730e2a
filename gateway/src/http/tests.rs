//! The HTTP surface through `app()` and `oneshot`: ops endpoints, metrics, the ops keys, both
//! ingest routes.

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
    app_with(ready, GatewayConfig::default(), None)
}

fn app_with(
    ready: Result<(), String>,
    config: GatewayConfig,
    schemas: Option<Arc<SchemaRegistry>>,
) -> Router {
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
        schemas,
    };
    app(state, &config)
}

/// `POST /v1/events` of a JSON body.
fn post_events(body: impl Into<Body>) -> Request<Body> {
    Request::post("/v1/events")
        .header("content-type", "application/json")
        .body(body.into())
        .unwrap()
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
    let response = app.clone().oneshot(post_events(body)).await.unwrap();
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
    // The batch's append duration, unlabelled: its handle is registered on first use, so it
    // counts though this collector was built before the recorder was installed.
    let appends = text
        .lines()
        .find(|l| l.starts_with("headwater_ingest_append_duration_seconds_count "))
        .expect(&text);
    assert!(!appends.ends_with(" 0"), "{appends}");
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

/// The default configuration with one tenant key: `key` for `tenant`.
fn with_key(tenant: &str, key: &str) -> GatewayConfig {
    let mut config = GatewayConfig::default();
    config.auth.keys.push(crate::config::ApiKey {
        tenant: tenant.into(),
        sha256: crate::auth::hash_key(key),
        disabled: false,
    });
    config
}

/// The value of the series whose line starts with `series` (name and labels), 0 if none.
fn series_value(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .map_or(0.0, |v| v.parse().unwrap())
}

#[tokio::test]
async fn ingest_requests_are_timed_by_transport_and_counted_by_tenant() {
    // A tenant of its own: no other test's bytes count under it.
    let config = with_key("bytes-probe", "bytes-probe-key");
    let app = app_with(Ok(()), config, None);
    let http = r#"headwater_ingest_request_duration_seconds_count{transport="http"}"#;
    let otlp = r#"headwater_ingest_request_duration_seconds_count{transport="otlp_http"}"#;
    let refused = r#"headwater_ingest_refused_total{transport="http",reason="unsupported_type"}"#;
    let bytes = r#"headwater_ingest_bytes_total{tenant="bytes-probe"}"#;
    // Other tests share the recorder: what this one sent is the least each series grew by.
    let (_, before) = get_text(app.clone(), "/metrics").await;
    let post = |path: &str, content_type: &str, body: &'static str| {
        Request::post(path)
            .header("content-type", content_type)
            .header("x-api-key", "bytes-probe-key")
            .body(Body::from(body))
            .unwrap()
    };
    let body = r#"[{"type":"metrics.probe","source":"d1","payload":{"n":1}}]"#;
    for _ in 0..2 {
        let response = app
            .clone()
            .oneshot(post("/v1/events", "application/json", body))
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
    }
    let plain = post("/v1/events", "text/plain", body);
    let response = app.clone().oneshot(plain).await.unwrap();
    assert_eq!(response.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let otlp_body = r#"{"resourceLogs":[]}"#;
    let logs = post("/v1/logs", "application/json", otlp_body);
    assert_eq!(
        app.clone().oneshot(logs).await.unwrap().status(),
        StatusCode::OK
    );
    let (_, after) = get_text(app, "/metrics").await;
    let grew = |series: &str| series_value(&after, series) - series_value(&before, series);
    assert!(grew(http) >= 3.0, "{after}");
    assert!(grew(otlp) >= 1.0, "{after}");
    assert!(grew(refused) >= 1.0, "{after}");
    // Both ingest routes count their bodies' bytes, and only theirs are this tenant's.
    assert_eq!(
        grew(bytes),
        (2 * body.len() + otlp_body.len()) as f64,
        "{after}"
    );
}

const OPS_KEY: &str = "ops-key-1";

/// A gateway with one ops key (and one tenant key, which is no ops key) and the shipped schemas.
fn ops_guarded_app() -> Router {
    let shipped = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../schemas/events");
    let registry = SchemaRegistry::load(&shipped, headwater_schemas::LoadOptions::default())
        .expect("the shipped schemas load");
    let mut config = with_key("acme", "tenant-key");
    config.auth.ops_keys = vec![
        crate::auth::hash_key("another-ops-key"),
        crate::auth::hash_key(OPS_KEY).to_uppercase(),
    ];
    app_with(Ok(()), config, Some(Arc::new(registry)))
}

async fn get_with(app: Router, path: &str, header: Option<(&str, &str)>) -> (StatusCode, String) {
    let mut request = Request::get(path);
    if let Some((name, value)) = header {
        request = request.header(name, value);
    }
    let response = app
        .oneshot(request.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8(body.to_vec()).unwrap())
}

const OPS_READS: &[&str] = &[
    "/metrics",
    "/v1/schemas",
    "/v1/schemas/playback.start/versions/1",
];

#[tokio::test]
async fn without_ops_keys_metrics_and_schemas_are_open() {
    let config = with_key("acme", "tenant-key");
    let shipped = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../schemas/events");
    let registry =
        SchemaRegistry::load(&shipped, headwater_schemas::LoadOptions::default()).unwrap();
    let app = app_with(Ok(()), config, Some(Arc::new(registry)));
    for path in OPS_READS {
        let (status, body) = get_with(app.clone(), path, None).await;
        assert_eq!(status, StatusCode::OK, "{path}: {body}");
    }
}

#[tokio::test]
async fn ops_reads_without_a_key_are_401() {
    let app = ops_guarded_app();
    for path in OPS_READS {
        let (status, body) = get_with(app.clone(), path, None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{path}: {body}");
        assert!(body.contains("missing API key"), "{path}: {body}");
    }
}

#[tokio::test]
async fn ops_reads_with_a_wrong_key_are_refused() {
    let app = ops_guarded_app();
    for path in OPS_READS {
        for header in [
            ("authorization", "Bearer not-the-key"),
            ("x-api-key", "ops-key-"),
            // A tenant's ingest key is no ops key.
            ("x-api-key", "tenant-key"),
            // The digest itself is not the key.
            ("authorization", "Bearer 0000"),
        ] {
            let (status, body) = get_with(app.clone(), path, Some(header)).await;
            assert_eq!(
                status,
                StatusCode::UNAUTHORIZED,
                "{path} {header:?}: {body}"
            );
            assert!(body.contains("unknown API key"), "{path}: {body}");
            assert!(!body.contains("headwater_"), "{path}: {body}");
        }
    }
}

#[tokio::test]
async fn ops_reads_with_an_ops_key_are_served() {
    let app = ops_guarded_app();
    let bearer = format!("Bearer {OPS_KEY}");
    for header in [("authorization", bearer.as_str()), ("x-api-key", OPS_KEY)] {
        let (status, body) = get_with(app.clone(), "/metrics", Some(header)).await;
        assert_eq!(status, StatusCode::OK, "{header:?}: {body}");
        assert!(body.contains("headwater_build_info"), "{body}");
        let (status, body) = get_with(app.clone(), "/v1/schemas", Some(header)).await;
        assert_eq!(status, StatusCode::OK, "{header:?}: {body}");
        assert!(body.contains("playback.start"), "{body}");
        let path = "/v1/schemas/playback.start/versions/1";
        let (status, body) = get_with(app.clone(), path, Some(header)).await;
        assert_eq!(status, StatusCode::OK, "{header:?}: {body}");
    }
}

#[tokio::test]
async fn probes_stay_open_behind_ops_keys() {
    let app = ops_guarded_app();
    let (status, body) = get_with(app.clone(), "/healthz", None).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "ok\n"));
    let (status, _) = get_with(app.clone(), "/readyz", None).await;
    assert_eq!(status, StatusCode::OK);
    // Ingest still takes the tenant's key, not an ops key.
    let response = app
        .oneshot(
            Request::post("/v1/events")
                .header("content-type", "application/json")
                .header("x-api-key", OPS_KEY)
                .body(Body::from("[]"))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn the_ops_app_guards_metrics_but_not_the_probes() {
    let state = OpsState {
        metrics: crate::metrics::install(),
        readiness: Arc::new(Fixed(Ok(()))),
    };
    let auth = crate::config::AuthConfig {
        ops_keys: vec![crate::auth::hash_key(OPS_KEY)],
        ..crate::config::AuthConfig::default()
    };
    let guarded = ops_app_with_auth(state.clone(), &auth);
    let (status, _) = get_with(guarded.clone(), "/metrics", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = get_with(guarded.clone(), "/metrics", Some(("x-api-key", "nope"))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = get_with(guarded.clone(), "/metrics", Some(("x-api-key", OPS_KEY))).await;
    assert_eq!(status, StatusCode::OK);
    for probe in ["/healthz", "/readyz"] {
        let (status, _) = get_with(guarded.clone(), probe, None).await;
        assert_eq!(status, StatusCode::OK, "{probe}");
    }
    let (status, _) = get_with(ops_app(state), "/metrics", None).await;
    assert_eq!(status, StatusCode::OK, "ops_app stays open");
}

/// A readiness probe that counts its calls and answers `answer` once the test opens `gate`.
struct Gated {
    calls: std::sync::atomic::AtomicUsize,
    gate: tokio::sync::watch::Sender<bool>,
    answer: Result<(), String>,
}

impl Gated {
    fn new(answer: Result<(), String>) -> Arc<Self> {
        Arc::new(Self {
            calls: Default::default(),
            gate: tokio::sync::watch::channel(false).0,
            answer,
        })
    }

    fn calls(&self) -> usize {
        self.calls.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl Readiness for Gated {
    fn check(&self) -> ReadinessFuture<'_> {
        self.calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let mut gate = self.gate.subscribe();
        Box::pin(async move {
            let _ = gate.wait_for(|open| *open).await;
            self.answer.clone()
        })
    }
}

/// `n` concurrent `/readyz` calls on `app` while `probe` holds its first answer back; the
/// statuses once it answers.
async fn concurrent_readyz(app: Router, probe: &Gated, n: usize) -> Vec<StatusCode> {
    let calls = futures::future::join_all((0..n).map(|_| get_text(app.clone(), "/readyz")));
    // `join!` polls the calls first: every one is waiting when the gate opens.
    let open = async {
        probe.gate.send_replace(true);
    };
    let (answers, ()) = tokio::join!(calls, open);
    answers.into_iter().map(|(status, _)| status).collect()
}

#[tokio::test]
async fn a_flood_of_readyz_costs_one_probe() {
    let probe = Gated::new(Ok(()));
    let state = OpsState {
        metrics: crate::metrics::install(),
        readiness: probe.clone(),
    };
    let app = ops_app(state);
    let statuses = concurrent_readyz(app.clone(), &probe, 50).await;
    assert!(
        statuses.iter().all(|s| *s == StatusCode::OK),
        "{statuses:?}"
    );
    assert_eq!(probe.calls(), 1, "one probe for 50 concurrent calls");
    let (status, _) = get_text(app, "/readyz").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        probe.calls(),
        1,
        "a call within the second reuses the answer"
    );
}

#[tokio::test]
async fn a_failed_probe_is_shared_by_concurrent_callers_of_the_gateway() {
    let probe = Gated::new(Err("disk full".into()));
    let collector = Collector::new(crate::collector::CollectorParts {
        config: GatewayConfig::default(),
        log: Arc::new(headwater_log::MemoryLog::default()),
        validator: Arc::new(crate::validate::AcceptAll {
            topic: "events".into(),
        }),
        dlq_topic: "events.dlq".into(),
    });
    let state = AppState {
        metrics: crate::metrics::install(),
        readiness: probe.clone(),
        collector: Arc::new(collector),
        schemas: None,
    };
    let app = app(state, &GatewayConfig::default());
    let statuses = concurrent_readyz(app.clone(), &probe, 50).await;
    assert!(
        statuses
            .iter()
            .all(|s| *s == StatusCode::SERVICE_UNAVAILABLE),
        "{statuses:?}"
    );
    assert_eq!(probe.calls(), 1, "one probe for 50 concurrent calls");
    let (status, body) = get_text(app, "/readyz").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(body.contains("disk full"), "{body}");
    assert_eq!(
        probe.calls(),
        1,
        "a call within the second reuses the answer"
    );
}

#[tokio::test]
async fn custom_methods_are_counted_as_other() {
    let app = test_app(Ok(()));
    for n in 1..=200 {
        let request = Request::builder()
            .method(format!("X{n}-CUSTOM").as_str())
            .uri("/healthz")
            .body(Body::empty())
            .unwrap();
        let response = app.clone().oneshot(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
    }
    let (_, text) = get_text(app, "/metrics").await;
    assert!(!text.contains("-CUSTOM"), "{text}");
    assert!(
        text.contains(
            "headwater_http_requests_total{method=\"other\",path=\"/healthz\",status=\"405\"}"
        ),
        "{text}"
    );
}

/// A batch of `n` events whose ids start with `prefix`.
fn batch_of(n: usize, prefix: &str) -> String {
    let events: Vec<String> = (0..n)
        .map(|i| format!(r#"{{"type":"t","source":"s","id":"{prefix}{i}","payload":{{"n":{i}}}}}"#))
        .collect();
    format!("[{}]", events.join(","))
}

#[tokio::test]
async fn requests_over_the_in_flight_budget_are_taken_in_turn() {
    use std::io::Write;
    let mut config = GatewayConfig::default();
    config.limits.max_in_flight_bytes = 64;
    let app = app_with(Ok(()), config, None);
    let plain = batch_of(20, "a");
    let inflated = batch_of(20, "b");
    let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gzip.write_all(inflated.as_bytes()).unwrap();
    let gzip = gzip.finish().unwrap();
    assert!(plain.len() > 64 && inflated.len() > 64);
    let post = |body: Vec<u8>, encoding: Option<&'static str>| {
        let mut request = Request::post("/v1/events").header("content-type", "application/json");
        if let Some(encoding) = encoding {
            request = request.header("content-encoding", encoding);
        }
        let request = request
            .header("content-length", body.len())
            .body(Body::from(body))
            .unwrap();
        let app = app.clone();
        async move {
            let response = app.oneshot(request).await.unwrap();
            let status = response.status();
            let body = response.into_body().collect().await.unwrap().to_bytes();
            (status, String::from_utf8(body.to_vec()).unwrap())
        }
    };
    // Each needs the whole budget (one declared, one only once inflated): they take turns,
    // and neither waits on the other for ever.
    let both = async {
        tokio::join!(
            post(plain.into_bytes(), None),
            post(gzip, Some("gzip")),
            post(batch_of(20, "c").into_bytes(), None),
        )
    };
    let (a, b, c) = tokio::time::timeout(std::time::Duration::from_secs(20), both)
        .await
        .expect("requests over the budget waited on each other");
    for (status, body) in [a, b, c] {
        assert_eq!(status, StatusCode::OK, "{body}");
        assert!(body.contains(r#""accepted":20"#), "{body}");
    }
    let held = |text: &str| {
        text.lines()
            .find(|l| l.starts_with("headwater_ingest_in_flight_bytes "))
            .expect(text)
            .to_owned()
    };
    // The gauge is the process's: other tests' collectors may set it for a moment.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let (_, mut text) = get_text(app.clone(), "/metrics").await;
    while held(&text) != "headwater_ingest_in_flight_bytes 0"
        && std::time::Instant::now() < deadline
    {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        text = get_text(app.clone(), "/metrics").await.1;
    }
    assert_eq!(
        held(&text),
        "headwater_ingest_in_flight_bytes 0",
        "all given back"
    );
    let waits = text
        .lines()
        .find(|l| l.starts_with("headwater_ingest_budget_waits_total "))
        .expect(&text);
    assert_ne!(
        waits, "headwater_ingest_budget_waits_total 0",
        "none took turns"
    );
}

#[tokio::test]
async fn a_client_slow_to_send_its_body_holds_no_room_in_the_budget() {
    let mut config = GatewayConfig::default();
    config.limits.max_in_flight_bytes = 64;
    let app = app_with(Ok(()), config, None);
    // Declares a body over the whole budget and never sends it.
    let stalled = stalled("/v1/events", "application/json");
    let mut stalled = std::pin::pin!(app.clone().oneshot(stalled));
    let body = batch_of(20, "slow");
    let answered = async {
        // The stalled request has started and waits for its body.
        assert!(futures::poll!(stalled.as_mut()).is_pending());
        app.clone().oneshot(post_events(body)).await.unwrap()
    };
    let response = tokio::time::timeout(std::time::Duration::from_secs(20), answered)
        .await
        .expect("a request waited for room held by a body not yet sent");
    assert_eq!(response.status(), StatusCode::OK);
}

/// A request to `path` whose body never comes.
fn stalled(path: &str, content_type: &str) -> Request<Body> {
    Request::post(path)
        .header("content-type", content_type)
        .header("content-length", "1000")
        .body(Body::from_stream(futures::stream::pending::<
            Result<bytes::Bytes, std::io::Error>,
        >()))
        .unwrap()
}

#[tokio::test]
async fn ingest_requests_past_max_concurrent_requests_are_shed_on_every_route() {
    let mut config = GatewayConfig::default();
    config.limits.max_concurrent_requests = 1;
    let app = app_with(Ok(()), config, None);
    let mut holder = Box::pin(
        app.clone()
            .oneshot(stalled("/v1/events", "application/json")),
    );
    // The holder has taken the one place and waits for its body.
    assert!(futures::poll!(holder.as_mut()).is_pending());
    let body = batch_of(2, "shed");
    let response = app
        .clone()
        .oneshot(post_events(body.clone()))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(response.headers()["retry-after"], "1");
    let text = response.into_body().collect().await.unwrap().to_bytes();
    assert!(
        String::from_utf8_lossy(&text).contains("overloaded"),
        "{text:?}"
    );
    let logs = Request::post("/v1/logs")
        .header("content-type", "application/json")
        .body(Body::from(r#"{"resourceLogs":[]}"#))
        .unwrap();
    let response = app.clone().oneshot(logs).await.unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    // gRPC is told in its own terms: UNAVAILABLE.
    let grpc = stalled("/headwater.v1.Ingest/Publish", "application/grpc");
    let response = app.clone().oneshot(grpc).await.unwrap();
    assert_eq!(response.headers()["grpc-status"], "14", "{response:?}");
    // The probes and the ops reads take no place.
    let (status, _) = get_text(app.clone(), "/healthz").await;
    assert_eq!(status, StatusCode::OK);
    let (_, metrics) = get_text(app.clone(), "/metrics").await;
    let refused = r#"headwater_ingest_refused_total{transport="http",reason="overloaded"}"#;
    assert!(series_value(&metrics, refused) >= 1.0, "{metrics}");
    // Once the holder is gone, its place is free again.
    drop(holder);
    let response = app.clone().oneshot(post_events(body)).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test(start_paused = true)]
async fn a_request_past_request_timeout_ms_is_answered_503_without_retry_after() {
    let mut config = GatewayConfig::default();
    config.limits.request_timeout_ms = 5_000;
    let app = app_with(Ok(()), config, None);
    let started = tokio::time::Instant::now();
    // The paused clock runs on to the timeout as soon as nothing else can move.
    let answer = app
        .clone()
        .oneshot(stalled("/v1/events", "application/json"));
    let response = tokio::time::timeout(std::time::Duration::from_secs(60), answer)
        .await
        .expect("no answer within a minute of a 5 s timeout")
        .unwrap();
    assert_eq!(response.status(), IngestError::TimedOut.status());
    assert!(response.headers().get("retry-after").is_none());
    assert!(started.elapsed() >= std::time::Duration::from_secs(5));
    // The timed-out request's place was given back.
    let response = app.oneshot(post_events(batch_of(1, "late"))).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}
