//! Validation against the shipped schemas over HTTP: exact reasons in the response and the
//! dead-letter topic, protobuf batches and payloads, topics named by schemas, `/v1/schemas`.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails by panicking

mod common;

use common::{TestGateway, header};
use headwater_gateway::GatewayConfig;
use headwater_schemas::proto::v1::{Batch, Event};
use prost::Message;
use serde_json::{Value, json};

async fn post_json(gw: &TestGateway, body: Value) -> Value {
    let response = reqwest::Client::new()
        .post(gw.url("/v1/events"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

#[tokio::test]
async fn shipped_schemas_accept_valid_events_and_dead_letter_the_rest_with_reasons() {
    let gw = TestGateway::start_with_shipped_schemas(GatewayConfig::default()).await;
    let answer = post_json(
        &gw,
        json!([
            {"type": "playback.start", "version": 1, "source": "tv-1", "payload": {"title_id": "t1", "position_ms": 0}},
            {"type": "playback.start", "version": 1, "source": "tv-1", "payload": {"title_id": "t1", "position_ms": -5}},
            {"type": "playback.start", "source": "tv-2", "payload": {"position_ms": 3}},
            {"type": "no.such.type", "source": "tv-3", "payload": {}},
            {"type": "playback.start", "version": 9, "source": "tv-3", "payload": {}}
        ]),
    )
    .await;
    assert_eq!(answer["accepted"], 1, "{answer}");
    assert_eq!(answer["rejected"], 4, "{answer}");
    let reasons: Vec<&str> = answer["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["reason"].as_str().unwrap())
        .collect();
    assert_eq!(
        reasons[0],
        "payload.position_ms: -5 is less than the minimum of 0"
    );
    assert!(reasons[1].contains("title_id"), "{reasons:?}");
    assert!(reasons[2].contains("unknown event type"), "{reasons:?}");
    assert!(reasons[3].contains("unknown version 9"), "{reasons:?}");
    let events = gw.records("events").await;
    assert_eq!(events.len(), 1);
    assert_eq!(header(&events[0], "hw.version").as_deref(), Some("1"));
    let dlq = gw.records("events.dlq").await;
    assert_eq!(dlq.len(), 4);
    let dlq_reasons: Vec<String> = dlq.iter().filter_map(|r| header(r, "hw.error")).collect();
    assert!(
        dlq_reasons.contains(&"payload.position_ms: -5 is less than the minimum of 0".to_owned())
    );
    gw.stop().await;
}

#[tokio::test]
async fn a_protobuf_batch_with_a_protobuf_payload_lands_in_the_schemas_topic() {
    let gw = TestGateway::start_with_shipped_schemas(GatewayConfig::default()).await;
    let registry_list: Value = reqwest::get(gw.url("/v1/schemas"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let telemetry = registry_list["schemas"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["type"] == "device.telemetry")
        .cloned()
        .expect("device.telemetry is shipped");
    assert_eq!(telemetry["format"], "protobuf");
    let topic = telemetry["topic"].as_str().unwrap().to_owned();

    // An empty protobuf message is a valid payload of any proto3 message; field 1 set to 0 too.
    let batch = Batch {
        events: vec![
            Event {
                id: "p-1".into(),
                r#type: "device.telemetry".into(),
                source: "tv-7".into(),
                ts: 1_700_000_000_000,
                payload: Default::default(),
                payload_format: "protobuf".into(),
                ..Event::default()
            },
            Event {
                id: "p-2".into(),
                r#type: "device.telemetry".into(),
                source: "tv-7".into(),
                payload: vec![0xff, 0xff, 0xff].into(),
                payload_format: "protobuf".into(),
                ..Event::default()
            },
        ],
    };
    let response = reqwest::Client::new()
        .post(gw.url("/v1/events"))
        .header("content-type", "application/x-protobuf")
        .body(batch.encode_to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let answer: Value = response.json().await.unwrap();
    assert_eq!(
        (answer["accepted"].as_u64(), answer["rejected"].as_u64()),
        (Some(1), Some(1)),
        "{answer}"
    );
    assert!(
        answer["errors"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("does not decode"),
        "{answer}"
    );
    let stored = gw.records(&topic).await;
    assert_eq!(stored.len(), 1);
    assert_eq!(header(&stored[0], "hw.format").as_deref(), Some("protobuf"));

    // A truncated protobuf body is a malformed request.
    let bytes = batch.encode_to_vec();
    let response = reqwest::Client::new()
        .post(gw.url("/v1/events"))
        .header("content-type", "application/x-protobuf")
        .body(bytes[..bytes.len() - 2].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    gw.stop().await;
}

#[tokio::test]
async fn schemas_are_listed_and_served_by_type_and_version() {
    let gw = TestGateway::start_with_shipped_schemas(GatewayConfig::default()).await;
    let response = reqwest::get(gw.url("/v1/schemas/playback.start/versions/1"))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let schema: Value = response.json().await.unwrap();
    assert!(
        schema["required"]
            .as_array()
            .unwrap()
            .contains(&json!("position_ms"))
    );
    let missing = reqwest::get(gw.url("/v1/schemas/playback.start/versions/99"))
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    gw.stop().await;
}
