//! gRPC on the HTTP port with a tonic client: `headwater.v1.Ingest/Publish` and OTLP
//! `LogsService/Export`, plus OTLP/HTTP protobuf, all read back from the log.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails by panicking

mod common;

use common::{TestGateway, header};
use headwater_gateway::GatewayConfig;
use headwater_gateway::config::{ApiKey, AuthConfig};
use headwater_gateway::grpc::pb::ingest_client::IngestClient;
use headwater_schemas::proto::v1::{Batch, Event};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::logs::v1::logs_service_client::LogsServiceClient;
use opentelemetry_proto::tonic::common::v1::any_value::Value as Any;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message;

fn json_event(id: &str, position: i64) -> Event {
    Event {
        id: id.into(),
        r#type: "playback.start".into(),
        version: 1,
        source: "tv-5".into(),
        ts: 1_700_000_000_000,
        payload: format!(r#"{{"title_id":"t","position_ms":{position}}}"#).into_bytes(),
        payload_format: "json".into(),
        ..Event::default()
    }
}

fn keyed() -> GatewayConfig {
    GatewayConfig {
        auth: AuthConfig {
            keys: vec![ApiKey {
                tenant: "acme".into(),
                sha256: headwater_gateway::auth::hash_key("grpc-key"),
                disabled: false,
            }],
            ..AuthConfig::default()
        },
        ..GatewayConfig::default()
    }
}

#[tokio::test]
async fn tonic_publish_is_validated_authenticated_and_durable() {
    let gw = TestGateway::start_with_shipped_schemas(keyed()).await;
    let mut client = IngestClient::connect(gw.base.clone()).await.unwrap();
    let batch = Batch {
        events: vec![json_event("g1", 10), json_event("g2", -1)],
    };
    let refused = client.publish(batch.clone()).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unauthenticated);

    let mut request = tonic::Request::new(batch);
    request
        .metadata_mut()
        .insert("authorization", "Bearer grpc-key".parse().unwrap());
    let answer = client.publish(request).await.unwrap().into_inner();
    assert_eq!((answer.accepted, answer.rejected), (1, 1));
    assert_eq!(answer.errors[0].index, 1);
    assert!(
        answer.errors[0].reason.contains("minimum"),
        "{:?}",
        answer.errors
    );
    let records = gw.records("events").await;
    assert_eq!(records.len(), 1);
    assert_eq!(header(&records[0], "hw.id").as_deref(), Some("g1"));
    assert_eq!(header(&records[0], "hw.tenant").as_deref(), Some("acme"));
    assert_eq!(
        records[0].value.as_deref(),
        Some(&br#"{"title_id":"t","position_ms":10}"#[..])
    );
    assert_eq!(gw.records("events.dlq").await.len(), 1);
    gw.stop().await;
}

fn otlp_request(event_name: Option<&str>) -> ExportLogsServiceRequest {
    let string = |s: &str| {
        Some(AnyValue {
            value: Some(Any::StringValue(s.to_owned())),
        })
    };
    let mut attributes = vec![KeyValue {
        key: "screen".into(),
        value: string("home"),
        ..KeyValue::default()
    }];
    if let Some(name) = event_name {
        attributes.push(KeyValue {
            key: "event.name".into(),
            value: string(name),
            ..KeyValue::default()
        });
    }
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: Some(Resource {
                attributes: vec![KeyValue {
                    key: "service.instance.id".into(),
                    value: string("tv-77"),
                    ..KeyValue::default()
                }],
                ..Resource::default()
            }),
            scope_logs: vec![ScopeLogs {
                log_records: vec![LogRecord {
                    time_unix_nano: 1_700_000_000_000_000_000,
                    severity_number: 9,
                    severity_text: "INFO".into(),
                    body: string("player started"),
                    attributes,
                    ..LogRecord::default()
                }],
                ..ScopeLogs::default()
            }],
            ..ResourceLogs::default()
        }],
    }
}

#[tokio::test]
async fn otlp_grpc_and_http_logs_arrive_as_events() {
    let gw = TestGateway::start_with_shipped_schemas(GatewayConfig::default()).await;
    let mut client = LogsServiceClient::connect(gw.base.clone()).await.unwrap();
    let answer = client
        .export(otlp_request(None))
        .await
        .unwrap()
        .into_inner();
    assert!(answer.partial_success.is_none(), "{answer:?}");
    // An event.name without a schema is rejected and reported as a partial success.
    let answer = client
        .export(otlp_request(Some("no.such.event")))
        .await
        .unwrap()
        .into_inner();
    let partial = answer.partial_success.expect("partial success");
    assert_eq!(partial.rejected_log_records, 1);
    assert!(
        partial.error_message.contains("unknown event type"),
        "{}",
        partial.error_message
    );

    // A record the otel.log schema refuses (severity_number above 24) is rejected alone, and
    // a retried export (same log.record.uid) is not appended twice.
    let mut export = otlp_request(None);
    let records = &mut export.resource_logs[0].scope_logs[0].log_records;
    records.push(LogRecord {
        severity_number: 99,
        ..records[0].clone()
    });
    records[0].attributes.push(KeyValue {
        key: "log.record.uid".into(),
        value: Some(AnyValue {
            value: Some(Any::StringValue("uid-1".into())),
        }),
        ..KeyValue::default()
    });
    for _ in 0..2 {
        let answer = client.export(export.clone()).await.unwrap().into_inner();
        let partial = answer.partial_success.expect("partial success");
        assert_eq!(partial.rejected_log_records, 1, "{partial:?}");
        assert!(
            partial.error_message.starts_with("record 1: ")
                && partial.error_message.contains("severity_number"),
            "{}",
            partial.error_message
        );
    }

    let response = reqwest::Client::new()
        .post(gw.url("/v1/logs"))
        .header("content-type", "application/x-protobuf")
        .body(otlp_request(None).encode_to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/x-protobuf");

    let records = gw.records("events").await;
    assert_eq!(records.len(), 3);
    for record in &records {
        assert_eq!(header(record, "hw.type").as_deref(), Some("otel.log"));
        assert_eq!(record.key.as_deref(), Some(&b"tv-77"[..]));
        assert_eq!(header(record, "hw.ts").as_deref(), Some("1700000000000"));
        let payload: serde_json::Value =
            serde_json::from_slice(record.value.as_ref().unwrap()).unwrap();
        assert_eq!(payload["body"], "player started");
        assert_eq!(payload["attributes"]["screen"], "home");
    }
    gw.stop().await;
}

/// Messages over the whole in-flight budget are taken in turn (each as the whole budget), and
/// every one is answered: a gRPC call holds its message's bytes like an HTTP body.
#[tokio::test]
async fn grpc_calls_over_the_in_flight_budget_take_turns() {
    let mut config = GatewayConfig::default();
    config.limits.max_in_flight_bytes = 64;
    let gw = TestGateway::start_with_shipped_schemas(config).await;
    let client = IngestClient::connect(gw.base.clone()).await.unwrap();
    let calls = (0..4).map(|c| {
        let mut client = client.clone();
        let batch = Batch {
            events: (0..5)
                .map(|i| json_event(&format!("budget-{c}-{i}"), i))
                .collect(),
        };
        assert!(batch.encoded_len() > 64);
        async move { client.publish(batch).await }
    });
    let answers = tokio::time::timeout(
        std::time::Duration::from_secs(20),
        futures::future::join_all(calls),
    )
    .await
    .expect("calls over the budget waited on each other");
    for answer in answers {
        assert_eq!(answer.unwrap().into_inner().accepted, 5);
    }
    let metric = |metrics: &str, name: &str| {
        metrics
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("{name} in {metrics}"))
            .to_owned()
    };
    let read = || async {
        let response = reqwest::get(gw.url("/metrics")).await.unwrap();
        response.text().await.unwrap()
    };
    let waits = metric(&read().await, "headwater_ingest_budget_waits_total ");
    assert_ne!(
        waits, "headwater_ingest_budget_waits_total 0",
        "none waited"
    );
    // The gauge is the process's: the other tests of this file may hold bytes for a moment.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let mut held = metric(&read().await, "headwater_ingest_in_flight_bytes ");
    while held != "headwater_ingest_in_flight_bytes 0" && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        held = metric(&read().await, "headwater_ingest_in_flight_bytes ");
    }
    assert_eq!(held, "headwater_ingest_in_flight_bytes 0", "all given back");
    assert_eq!(gw.records("events").await.len(), 20);
    gw.stop().await;
}
