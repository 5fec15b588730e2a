//! Hostile bodies meet the gateway's bounds: gRPC authenticates before it reads a body and
//! counts events before it decodes them; OTLP is sized before it is decoded and its events
//! budgeted; envelope fields are bounded per event. (The same against the real binary, with its
//! peak memory measured, in the workspace's tests/hostile_ingest.rs.)
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails by panicking

mod common;

use std::io::Write;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, Response, StatusCode};
use bytes::Bytes;
use common::{TestGateway, header};
use headwater_gateway::config::{ApiKey, AuthConfig, Limits};
use headwater_gateway::decode::{MAX_ATTRIBUTE_BYTES, MAX_ATTRIBUTES};
use headwater_gateway::{AcceptAll, Collector, CollectorParts, GatewayConfig};
use headwater_log::MemoryLog;
use headwater_schemas::proto::v1::{Batch, Event};
use prost::Message;
use serde_json::{Value, json};
use tower::ServiceExt;

const KEY: &str = "bounded-key";
const PUBLISH: &str = "/headwater.v1.Ingest/Publish";
const EXPORT: &str = "/opentelemetry.proto.collector.logs.v1.LogsService/Export";

fn keyed() -> GatewayConfig {
    GatewayConfig {
        auth: AuthConfig {
            keys: vec![ApiKey {
                tenant: "acme".into(),
                sha256: headwater_gateway::auth::hash_key(KEY),
                disabled: false,
            }],
            ..AuthConfig::default()
        },
        ..GatewayConfig::default()
    }
}

/// The gRPC services alone, over an in-memory log.
fn grpc_router() -> axum::Router {
    let collector = Collector::new(CollectorParts {
        config: keyed(),
        log: Arc::new(MemoryLog::default()),
        validator: Arc::new(AcceptAll {
            topic: "events".into(),
        }),
        dlq_topic: "events.dlq".into(),
    });
    headwater_gateway::grpc::router(Arc::new(collector))
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    encoder.write_all(data).unwrap();
    encoder.finish().unwrap()
}

fn frame(compressed: bool, message: &[u8]) -> Bytes {
    let mut frame = vec![u8::from(compressed)];
    frame.extend_from_slice(&u32::try_from(message.len()).unwrap().to_be_bytes());
    frame.extend_from_slice(message);
    Bytes::from(frame)
}

fn grpc_request(path: &str, key: Option<&str>, gzip: bool, body: Body) -> Request<Body> {
    let mut request = Request::post(path)
        .header("content-type", "application/grpc")
        .header("te", "trailers");
    if gzip {
        request = request.header("grpc-encoding", "gzip");
    }
    if let Some(key) = key {
        request = request.header("authorization", format!("Bearer {key}"));
    }
    request.body(body).unwrap()
}

/// A refusal's `grpc-status` and `grpc-message` (a trailers-only answer carries them in the
/// headers).
fn grpc_status(response: &Response<Body>) -> (String, String) {
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default()
    };
    (header("grpc-status"), header("grpc-message"))
}

/// A body that fails as soon as it is read: a service that read it before authenticating would
/// answer with that failure.
fn unreadable() -> Body {
    Body::from_stream(futures::stream::once(async {
        Err::<Bytes, _>(std::io::Error::other("the body was read"))
    }))
}

#[tokio::test]
async fn grpc_refuses_a_caller_without_a_key_before_reading_the_body() {
    for (path, key) in [
        (PUBLISH, None),
        (EXPORT, None),
        (PUBLISH, Some("wrong-key")),
    ] {
        let response = grpc_router()
            .oneshot(grpc_request(path, key, false, unreadable()))
            .await
            .unwrap();
        let (status, message) = grpc_status(&response);
        assert_eq!(status, "16", "{path}: UNAUTHENTICATED, {message}");
    }
    // With the key, the body is read (and its failure reported).
    let response = grpc_router()
        .oneshot(grpc_request(PUBLISH, Some(KEY), false, unreadable()))
        .await
        .unwrap();
    assert_ne!(grpc_status(&response).0, "16");
}

#[tokio::test]
async fn grpc_counts_events_before_decoding_them() {
    // 10M empty events in a ~20 KiB gzip frame.
    let bomb = gzip(&[0x0a, 0x00].repeat(10_000_000));
    assert!(bomb.len() < 64 * 1024);
    let response = grpc_router()
        .oneshot(grpc_request(
            PUBLISH,
            Some(KEY),
            true,
            Body::from(frame(true, &bomb)),
        ))
        .await
        .unwrap();
    let (status, message) = grpc_status(&response);
    assert_eq!(status, "8", "RESOURCE_EXHAUSTED: {message}");
    assert!(
        message.contains("over%20the%20limit%20of%2010000"),
        "{message}"
    );
    // A message that is not a Batch is the client's error, not the server's.
    let response = grpc_router()
        .oneshot(grpc_request(
            PUBLISH,
            Some(KEY),
            false,
            Body::from(frame(false, &[0x0a, 0x05, 0x01])),
        ))
        .await
        .unwrap();
    assert_eq!(grpc_status(&response).0, "3", "INVALID_ARGUMENT");
    // So is an export of 1M empty resource_logs, over 100 MiB once decoded.
    let bomb = gzip(&[0x0a, 0x00].repeat(1_000_000));
    let response = grpc_router()
        .oneshot(grpc_request(
            EXPORT,
            Some(KEY),
            true,
            Body::from(frame(true, &bomb)),
        ))
        .await
        .unwrap();
    let (status, message) = grpc_status(&response);
    assert_eq!(status, "8", "RESOURCE_EXHAUSTED: {message}");
    assert!(message.contains("once%20decoded"), "{message}");
    let response = grpc_router()
        .oneshot(grpc_request(
            "/headwater.v1.Ingest/Subscribe",
            Some(KEY),
            false,
            Body::empty(),
        ))
        .await
        .unwrap();
    assert_eq!(grpc_status(&response).0, "12", "UNIMPLEMENTED");
}

#[tokio::test]
async fn a_tonic_client_still_publishes_with_attributes() {
    let gw = TestGateway::start(keyed()).await;
    let mut client =
        headwater_gateway::grpc::pb::ingest_client::IngestClient::connect(gw.base.clone())
            .await
            .unwrap()
            .send_compressed(tonic::codec::CompressionEncoding::Gzip);
    let event = |id: &str, attributes: usize| Event {
        id: id.into(),
        r#type: "ok.a".into(),
        source: "tv-1".into(),
        payload: b"{}".to_vec().into(),
        attributes: (0..attributes)
            .map(|i| (format!("k{i}"), "v".into()))
            .collect(),
        ..Event::default()
    };
    let mut request = tonic::Request::new(Batch {
        events: vec![event("a", MAX_ATTRIBUTES), event("b", MAX_ATTRIBUTES + 1)],
    });
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {KEY}").parse().unwrap());
    let answer = client.publish(request).await.unwrap().into_inner();
    assert_eq!((answer.accepted, answer.rejected), (1, 1), "{answer:?}");
    assert_eq!(answer.errors[0].index, 1);
    assert_eq!(
        answer.errors[0].reason,
        "65 attributes are over the limit of 64"
    );
    let records = gw.records("events").await;
    assert_eq!(records.len(), 1);
    assert_eq!(header(&records[0], "hw.attr.k63").as_deref(), Some("v"));
    gw.stop().await;
}

async fn post(
    gw: &TestGateway,
    path: &str,
    content_type: &str,
    body: Vec<u8>,
) -> (StatusCode, Value) {
    let response = reqwest::Client::new()
        .post(gw.url(path))
        .header("authorization", format!("Bearer {KEY}"))
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .unwrap();
    let status = StatusCode::from_u16(response.status().as_u16()).unwrap();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn envelope_fields_over_their_limits_reject_their_event_only() {
    let config = GatewayConfig {
        limits: Limits {
            max_id_bytes: 8,
            max_type_bytes: 8,
            max_source_bytes: 8,
            ..Limits::default()
        },
        ..keyed()
    };
    assert!(config.validate().is_empty(), "{:?}", config.validate());
    let gw = TestGateway::start(config).await;
    let event = |id: &str, event_type: &str, source: &str, payload: Value| json!({"id": id, "type": event_type, "source": source, "payload": payload});
    let big = "x".repeat(513 * 1024);
    let batch = json!([
        event("e1", "ok.a", "tv-1", json!({})),
        event("e2-too-long", "ok.a", "tv-1", json!({})),
        event("e3", "ok.a-too-long", "tv-1", json!({})),
        event("e4", "ok.a", "tv-1-too-long", json!({})),
        event("e5", "ok.a", "tv-1", json!(big)),
        // Its id is that of the rejected e2: not a duplicate of anything taken.
        event("e2-too-long", "ok.a", "tv-1-too-long", json!({})),
        event("e6", "ok.a", "tv-2", json!({})),
    ]);
    let (status, answer) = post(
        &gw,
        "/v1/events",
        "application/json",
        serde_json::to_vec(&batch).unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(
        (answer["accepted"].as_u64(), answer["rejected"].as_u64()),
        (Some(2), Some(5)),
        "{answer}"
    );
    let reasons: Vec<String> = answer["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| format!("{} {}", e["index"], e["reason"].as_str().unwrap()))
        .collect();
    assert_eq!(
        reasons,
        [
            "1 `id` of 11 bytes is over the limit of 8 bytes",
            "2 `type` of 13 bytes is over the limit of 8 bytes",
            "3 `source` of 13 bytes is over the limit of 8 bytes",
            "4 event payload of 525314 bytes is over the limit of 524288 bytes",
            "5 `id` of 11 bytes is over the limit of 8 bytes",
        ]
    );
    assert_eq!(gw.records("events").await.len(), 2);
    // Rejected as too large, not dead-lettered: the dead letter would carry the same fields.
    assert!(gw.records("events.dlq").await.is_empty());

    // Protobuf attributes: at most 64 and 8 KiB per event.
    let attributes = |n: usize, value: &str| {
        (0..n)
            .map(|i| (format!("k{i}"), value.to_owned()))
            .collect()
    };
    let proto = |id: &str, attributes| Event {
        id: id.into(),
        r#type: "ok.a".into(),
        source: "tv-1".into(),
        payload: b"{}".to_vec().into(),
        attributes,
        ..Event::default()
    };
    let batch = Batch {
        events: vec![
            proto("p1", attributes(1, &"v".repeat(MAX_ATTRIBUTE_BYTES))),
            proto("p2", attributes(1, &"v".repeat(MAX_ATTRIBUTE_BYTES - 2))),
        ],
    };
    let (status, answer) = post(
        &gw,
        "/v1/events",
        "application/x-protobuf",
        batch.encode_to_vec(),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["accepted"], 1, "{answer}");
    assert_eq!(
        answer["errors"][0]["reason"],
        "attributes of 8194 bytes are over the limit of 8192 bytes"
    );
    gw.stop().await;
}

#[test]
fn envelope_limits_must_fit_the_envelope() {
    for value in [0, 1025] {
        let config = GatewayConfig {
            limits: Limits {
                max_source_bytes: value,
                ..Limits::default()
            },
            ..GatewayConfig::default()
        };
        assert_eq!(
            config.validate(),
            [(
                "gateway.limits.max_source_bytes".to_owned(),
                "must be between 1 and 1024".to_owned()
            )]
        );
    }
    let defaults = Limits::default();
    assert_eq!(
        (
            defaults.max_id_bytes,
            defaults.max_type_bytes,
            defaults.max_source_bytes
        ),
        (128, 128, 256)
    );
}

#[tokio::test]
async fn otlp_json_that_would_expand_past_its_budget_is_refused() {
    let gw = TestGateway::start(keyed()).await;
    // 3 MB of `{}`: a million empty resource_logs, over 100 MiB once decoded.
    let bomb = format!(r#"{{"resourceLogs":[{}{{}}]}}"#, "{},".repeat(999_999));
    let (status, answer) = post(&gw, "/v1/logs", "application/json", bomb.into_bytes()).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{answer}");
    assert!(
        answer["error"].as_str().unwrap().contains("once decoded"),
        "{answer}"
    );
    // A resource of 64 KiB copied into 400 records: 25 MiB of events, over the 20 MiB budget.
    let export = json!({"resourceLogs": [{
        "resource": {"attributes": [{"key": "big", "value": {"stringValue": "x".repeat(64 * 1024)}}]},
        "scopeLogs": [{"logRecords": vec![json!({}); 400]}]
    }]});
    let (status, answer) = post(
        &gw,
        "/v1/logs",
        "application/json",
        serde_json::to_vec(&export).unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{answer}");
    assert!(
        answer["error"]
            .as_str()
            .unwrap()
            .contains("copy of its resource"),
        "{answer}"
    );
    gw.stop().await;
}
