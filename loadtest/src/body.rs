//! Request bodies: JSON array, NDJSON or protobuf `Batch`, optionally gzip or zstd.

use std::io::Write as _;

use headwater_schemas::proto::v1::{Batch, Event};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message as _;

use crate::cli::{BodyFormat, Compression};
use crate::fleet::GenEvent;

/// One event as the JSON the gateway takes (the generator's strings need no escaping).
fn write_json(out: &mut Vec<u8>, ev: &GenEvent) {
    let _ = write!(
        out,
        r#"{{"id":"{}","type":"{}","version":1,"source":"{}","ts":{},"payload":{}}}"#,
        ev.id, ev.event_type, ev.source, ev.ts, ev.payload
    );
}

/// The protobuf form of a batch (payload bytes are the JSON payload, format `json`).
pub fn proto_batch(events: &[GenEvent]) -> Batch {
    Batch {
        events: events
            .iter()
            .map(|ev| Event {
                id: ev.id.clone(),
                r#type: ev.event_type.to_owned(),
                version: 1,
                source: ev.source.clone(),
                ts: ev.ts,
                payload: ev.payload.as_bytes().to_vec().into(),
                payload_format: "json".to_owned(),
                ..Event::default()
            })
            .collect(),
    }
}

/// `events` as an OTLP logs export: one resource per run of events from the same source
/// (`service.instance.id`), each event a log record without an event name (the receiver's
/// default type) whose body is the payload's JSON text and whose `log.record.uid` is its id.
pub fn otlp_request(events: &[GenEvent]) -> ExportLogsServiceRequest {
    let text = |s: &str| {
        Some(AnyValue {
            value: Some(any_value::Value::StringValue(s.to_owned())),
        })
    };
    let attribute = |key: &str, value: &str| KeyValue {
        key: key.to_owned(),
        value: text(value),
        ..KeyValue::default()
    };
    let mut resource_logs: Vec<ResourceLogs> = Vec::new();
    for (i, ev) in events.iter().enumerate() {
        if i == 0 || events[i - 1].source != ev.source {
            resource_logs.push(ResourceLogs {
                resource: Some(Resource {
                    attributes: vec![
                        attribute("service.name", "headwater-loadtest"),
                        attribute("service.instance.id", &ev.source),
                    ],
                    ..Resource::default()
                }),
                scope_logs: vec![ScopeLogs {
                    scope: Some(InstrumentationScope {
                        name: "headwater-loadtest".to_owned(),
                        ..InstrumentationScope::default()
                    }),
                    ..ScopeLogs::default()
                }],
                ..ResourceLogs::default()
            });
        }
        let nanos = u64::try_from(ev.ts).unwrap_or(0).saturating_mul(1_000_000);
        let records = resource_logs
            .last_mut()
            .and_then(|r| r.scope_logs.last_mut())
            .map(|s| &mut s.log_records);
        if let Some(records) = records {
            records.push(LogRecord {
                time_unix_nano: nanos,
                observed_time_unix_nano: nanos,
                severity_number: 9,
                severity_text: "INFO".to_owned(),
                body: text(&ev.payload),
                attributes: vec![
                    attribute("log.record.uid", &ev.id),
                    attribute("loadtest.type", ev.event_type),
                ],
                ..LogRecord::default()
            });
        }
    }
    ExportLogsServiceRequest { resource_logs }
}

/// The uncompressed HTTP body of `events` in `format`.
pub fn encode(events: &[GenEvent], format: BodyFormat) -> Vec<u8> {
    let mut out = Vec::with_capacity(events.len() * 256);
    match format {
        BodyFormat::Json => {
            out.push(b'[');
            for (i, ev) in events.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_json(&mut out, ev);
            }
            out.push(b']');
        }
        BodyFormat::Ndjson => {
            for ev in events {
                write_json(&mut out, ev);
                out.push(b'\n');
            }
        }
        BodyFormat::Protobuf => proto_batch(events).encode(&mut out).unwrap_or(()),
    }
    out
}

/// The `Content-Type` of `format`.
pub fn content_type(format: BodyFormat) -> &'static str {
    match format {
        BodyFormat::Json => "application/json",
        BodyFormat::Ndjson => "application/x-ndjson",
        BodyFormat::Protobuf => "application/x-protobuf",
    }
}

/// `body` compressed with `compression` (identity returns it unchanged).
pub fn compress(body: Vec<u8>, compression: Compression) -> std::io::Result<Vec<u8>> {
    match compression {
        Compression::None => Ok(body),
        Compression::Zstd => zstd::encode_all(body.as_slice(), 3),
        Compression::Gzip => {
            let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            enc.write_all(&body)?;
            enc.finish()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fleet::Fleet;
    use crate::fleet::tests::spec_of;

    fn events() -> Vec<GenEvent> {
        let fleet = Fleet::new(spec_of("r", 5, 0.0)).unwrap();
        fleet.batch(0, 1)
    }

    #[test]
    fn json_and_ndjson_parse_back() {
        let evs = events();
        let arr: Vec<serde_json::Value> =
            serde_json::from_slice(&encode(&evs, BodyFormat::Json)).unwrap();
        assert_eq!(arr.len(), 5);
        assert_eq!(arr[2]["id"], "r-2");
        let nd = encode(&evs, BodyFormat::Ndjson);
        assert_eq!(
            nd.split(|b| *b == b'\n').filter(|l| !l.is_empty()).count(),
            5
        );
        let pb = Batch::decode(encode(&evs, BodyFormat::Protobuf).as_slice()).unwrap();
        assert_eq!(pb.events[4].id, "r-4");
    }

    #[test]
    fn otlp_groups_records_by_source_and_carries_ids() {
        let evs = events();
        let request = otlp_request(&evs);
        let records: Vec<&LogRecord> = request
            .resource_logs
            .iter()
            .flat_map(|r| &r.scope_logs)
            .flat_map(|s| &s.log_records)
            .collect();
        assert_eq!(records.len(), evs.len());
        let uid = &records[2].attributes[0];
        assert_eq!(uid.key, "log.record.uid");
        assert_eq!(
            uid.value.as_ref().and_then(|v| v.value.clone()),
            Some(any_value::Value::StringValue("r-2".into()))
        );
        for resource in &request.resource_logs {
            let source = &resource.resource.as_ref().unwrap().attributes[1];
            assert_eq!(source.key, "service.instance.id");
        }
    }

    #[test]
    fn compression_round_trips() {
        let body = encode(&events(), BodyFormat::Json);
        let z = compress(body.clone(), Compression::Zstd).unwrap();
        assert_eq!(zstd::decode_all(z.as_slice()).unwrap(), body);
        let g = compress(body.clone(), Compression::Gzip).unwrap();
        let mut out = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(g.as_slice()), &mut out)
            .unwrap();
        assert_eq!(out, body);
    }
}
