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
        payload: format!(r#"{{"title_id":"t","position_ms":{position}}}"#)
            .into_bytes()
            .into(),
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

/// With `otlp_request_type`, each export request is one record of topic `otlp_logs`: the
/// protobuf request as received (byte for byte over gRPC and OTLP/HTTP protobuf, re-encoded from
/// OTLP/JSON), keyed by the first resource's source; one that does not decode as the schema's
/// message is rejected whole, every record named, and dead-lettered.
#[tokio::test]
async fn otlp_requests_kept_whole_are_one_record_each() {
    let config = GatewayConfig {
        otlp_request_type: Some("otel.logs".to_owned()),
        ..GatewayConfig::default()
    };
    let gw = TestGateway::start_with_shipped_schemas(config).await;
    let mut request = otlp_request(None);
    let records = &mut request.resource_logs[0].scope_logs[0].log_records;
    records.push(LogRecord {
        severity_number: 13,
        ..records[0].clone()
    });
    let encoded = request.encode_to_vec();

    let mut client = LogsServiceClient::connect(gw.base.clone()).await.unwrap();
    let answer = client.export(request.clone()).await.unwrap().into_inner();
    assert!(answer.partial_success.is_none(), "{answer:?}");
    let http = reqwest::Client::new();
    let post = |content_type: &'static str, body: Vec<u8>| {
        http.post(gw.url("/v1/logs"))
            .header("content-type", content_type)
            .body(body)
            .send()
    };
    let response = post("application/x-protobuf", encoded.clone())
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let response = post("application/json", serde_json::to_vec(&request).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), 200);

    let stored = gw.records("otlp_logs").await;
    assert_eq!(stored.len(), 3);
    for (at, record) in stored.iter().enumerate() {
        let value = record.value.as_deref().unwrap();
        if at < 2 {
            assert_eq!(
                value,
                &encoded[..],
                "record {at} is the request as received"
            );
        }
        assert_eq!(ExportLogsServiceRequest::decode(value).unwrap(), request);
        assert_eq!(header(record, "hw.type").as_deref(), Some("otel.logs"));
        assert_eq!(header(record, "hw.format").as_deref(), Some("protobuf"));
        assert_eq!(record.key.as_deref(), Some(&b"tv-77"[..]));
    }
    assert!(gw.records("events").await.is_empty());

    // A string that is not UTF-8 passes the walk that counts records, not the schema's check.
    let mut broken = encoded.clone();
    let at = broken
        .windows(b"player started".len())
        .position(|w| w == b"player started")
        .unwrap();
    broken[at] = 0xff;
    let response = post("application/x-protobuf", broken.clone())
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let answer =
        opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceResponse::decode(
            response.bytes().await.unwrap(),
        )
        .unwrap();
    let partial = answer.partial_success.expect("partial success");
    assert_eq!(partial.rejected_log_records, 2, "{partial:?}");
    assert!(
        partial
            .error_message
            .starts_with("request: payload does not decode as"),
        "{}",
        partial.error_message
    );
    let dead = gw.records("events.dlq").await;
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].value.as_deref(), Some(&broken[..]));

    // Broken framing is a 400; nothing more is stored.
    let response = post(
        "application/x-protobuf",
        encoded[..encoded.len() - 3].to_vec(),
    )
    .await
    .unwrap();
    assert_eq!(response.status(), 400);
    assert_eq!(gw.records("otlp_logs").await.len(), 3);
    gw.stop().await;
}

/// A request kept whole must fit in one event: over `max_event_bytes` it is refused with 413
/// before anything is stored, and so is one of more records than `max_events_per_batch`.
#[tokio::test]
async fn otlp_requests_kept_whole_are_bounded_by_the_event_limits() {
    let mut config = GatewayConfig {
        otlp_request_type: Some("otel.logs".to_owned()),
        ..GatewayConfig::default()
    };
    config.limits.max_event_bytes = 1024;
    config.limits.max_events_per_batch = 50;
    let gw = TestGateway::start_with_shipped_schemas(config).await;
    let mut request = otlp_request(None);
    let records = &mut request.resource_logs[0].scope_logs[0].log_records;
    let one = records[0].clone();
    records.extend(std::iter::repeat_n(one, 19));
    let response = reqwest::Client::new()
        .post(gw.url("/v1/logs"))
        .header("content-type", "application/x-protobuf")
        .body(request.encode_to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 413);
    let text = response.text().await.unwrap();
    assert!(text.contains("send fewer records per request"), "{text}");

    let mut client = LogsServiceClient::connect(gw.base.clone()).await.unwrap();
    let mut many = otlp_request(None);
    let records = &mut many.resource_logs[0].scope_logs[0].log_records;
    let empty = LogRecord::default();
    records.extend(std::iter::repeat_n(empty, 60));
    let status = client.export(many).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status:?}");
    assert!(gw.records("otlp_logs").await.is_empty());
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
