//! OTLP logs as events: each log record becomes one JSON event. The type is the record's
//! `event_name` or `event.name` attribute (else the configured default), the source the
//! resource's `service.instance.id`, `host.name` or `service.name`.

use bytes::Bytes;
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsPartialSuccess, ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value as Any;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue};
use serde_json::{Map, Value, json};

use crate::decode::{Decoded, IncomingEvent, PayloadFormat, check_count};
use crate::error::IngestError;
use crate::ingest::Report;

/// Attribute naming an OTLP log record's event type.
pub const EVENT_NAME: &str = "event.name";
/// Source used when the resource names none.
pub const UNKNOWN_SOURCE: &str = "unknown";
const SOURCE_ATTRIBUTES: [&str; 3] = ["service.instance.id", "host.name", "service.name"];

/// Turns an export request into events, refusing more than `max_events` log records.
pub fn decode_request(
    request: ExportLogsServiceRequest,
    default_type: &str,
    max_events: usize,
) -> Result<Vec<Decoded>, IngestError> {
    let count: usize = request
        .resource_logs
        .iter()
        .flat_map(|r| &r.scope_logs)
        .map(|s| s.log_records.len())
        .sum();
    check_count(count, max_events)?;
    let mut out = Vec::with_capacity(count);
    for resource_logs in request.resource_logs {
        let resource = resource_logs
            .resource
            .map(|r| r.attributes)
            .unwrap_or_default();
        let source = SOURCE_ATTRIBUTES
            .iter()
            .find_map(|name| string_attribute(&resource, name))
            .unwrap_or_else(|| UNKNOWN_SOURCE.to_owned());
        let resource_json = attributes_json(&resource);
        for scope_logs in resource_logs.scope_logs {
            let scope = scope_logs
                .scope
                .map(|s| json!({"name": s.name, "version": s.version}))
                .unwrap_or(Value::Null);
            for record in scope_logs.log_records {
                let event_type = Some(record.event_name.clone())
                    .filter(|n| !n.is_empty())
                    .or_else(|| string_attribute(&record.attributes, EVENT_NAME))
                    .unwrap_or_else(|| default_type.to_owned());
                let time = if record.time_unix_nano != 0 {
                    record.time_unix_nano
                } else {
                    record.observed_time_unix_nano
                };
                let payload = json!({
                    "severity_number": record.severity_number,
                    "severity_text": record.severity_text,
                    "body": record.body.as_ref().map_or(Value::Null, any_json),
                    "attributes": attributes_json(&record.attributes),
                    "resource": resource_json.clone(),
                    "scope": scope.clone(),
                    "trace_id": hex::encode(&record.trace_id),
                    "span_id": hex::encode(&record.span_id),
                    "time_unix_nano": record.time_unix_nano,
                    "observed_time_unix_nano": record.observed_time_unix_nano,
                });
                out.push(Decoded::Event(IncomingEvent {
                    id: None,
                    event_type,
                    version: None,
                    source: source.clone(),
                    ts: (time != 0).then_some((time / 1_000_000) as i64),
                    payload: Bytes::from(payload.to_string()),
                    format: PayloadFormat::Json,
                    attributes: Vec::new(),
                }));
            }
        }
    }
    Ok(out)
}

/// The OTLP answer to a batch: partial success names the rejected records and why.
pub fn response(report: &Report) -> ExportLogsServiceResponse {
    if report.rejected == 0 {
        return ExportLogsServiceResponse {
            partial_success: None,
        };
    }
    let reasons: Vec<String> = report
        .errors
        .iter()
        .take(5)
        .map(|e| format!("record {}: {}", e.index, e.reason))
        .collect();
    ExportLogsServiceResponse {
        partial_success: Some(ExportLogsPartialSuccess {
            rejected_log_records: report.rejected as i64,
            error_message: reasons.join("; "),
        }),
    }
}

fn string_attribute(attributes: &[KeyValue], name: &str) -> Option<String> {
    attributes
        .iter()
        .find(|kv| kv.key == name)
        .and_then(|kv| match &kv.value {
            Some(AnyValue {
                value: Some(Any::StringValue(s)),
            }) if !s.is_empty() => Some(s.clone()),
            _ => None,
        })
}

fn attributes_json(attributes: &[KeyValue]) -> Value {
    let map: Map<String, Value> = attributes
        .iter()
        .map(|kv| {
            (
                kv.key.clone(),
                kv.value.as_ref().map_or(Value::Null, any_json),
            )
        })
        .collect();
    Value::Object(map)
}

fn any_json(value: &AnyValue) -> Value {
    match &value.value {
        None => Value::Null,
        Some(Any::StringValue(s)) => Value::String(s.clone()),
        Some(Any::BoolValue(b)) => Value::Bool(*b),
        Some(Any::IntValue(i)) => json!(i),
        Some(Any::DoubleValue(d)) => json!(d),
        Some(Any::ArrayValue(a)) => Value::Array(a.values.iter().map(any_json).collect()),
        Some(Any::KvlistValue(kv)) => attributes_json(&kv.values),
        Some(Any::BytesValue(b)) => Value::String(hex::encode(b)),
        // An index into a profiles string table; log records do not carry one.
        Some(_) => Value::Null,
    }
}

#[cfg(test)]
mod tests {
    use opentelemetry_proto::tonic::common::v1::InstrumentationScope;
    use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
    use opentelemetry_proto::tonic::resource::v1::Resource;

    use super::*;

    fn kv(key: &str, value: &str) -> KeyValue {
        KeyValue {
            key: key.to_owned(),
            value: Some(AnyValue {
                value: Some(Any::StringValue(value.to_owned())),
            }),
            ..KeyValue::default()
        }
    }

    fn request(records: Vec<LogRecord>) -> ExportLogsServiceRequest {
        ExportLogsServiceRequest {
            resource_logs: vec![ResourceLogs {
                resource: Some(Resource {
                    attributes: vec![kv("service.name", "player"), kv("host.name", "tv-9")],
                    ..Resource::default()
                }),
                scope_logs: vec![ScopeLogs {
                    scope: Some(InstrumentationScope {
                        name: "app".into(),
                        ..InstrumentationScope::default()
                    }),
                    log_records: records,
                    ..ScopeLogs::default()
                }],
                ..ResourceLogs::default()
            }],
        }
    }

    #[test]
    fn records_map_to_events_with_type_source_and_time() {
        let records = vec![
            LogRecord {
                time_unix_nano: 1_700_000_000_123_000_000,
                severity_text: "ERROR".into(),
                body: Some(AnyValue {
                    value: Some(Any::StringValue("boom".into())),
                }),
                attributes: vec![kv(EVENT_NAME, "client.error"), kv("code", "E42")],
                ..LogRecord::default()
            },
            LogRecord::default(),
        ];
        let decoded = decode_request(request(records), "otel.log", 10).unwrap();
        let Decoded::Event(first) = &decoded[0] else {
            panic!("{decoded:?}")
        };
        assert_eq!(first.event_type, "client.error");
        assert_eq!(first.source, "tv-9");
        assert_eq!(first.ts, Some(1_700_000_000_123));
        let payload: Value = serde_json::from_slice(&first.payload).unwrap();
        assert_eq!(payload["body"], "boom");
        assert_eq!(payload["attributes"]["code"], "E42");
        assert_eq!(payload["resource"]["service.name"], "player");
        let Decoded::Event(second) = &decoded[1] else {
            panic!("{decoded:?}")
        };
        assert_eq!(second.event_type, "otel.log");
        assert_eq!(second.ts, None);
    }

    #[test]
    fn too_many_records_are_refused() {
        let records = vec![LogRecord::default(); 11];
        assert!(matches!(
            decode_request(request(records), "otel.log", 10),
            Err(IngestError::TooManyEvents {
                count: 11,
                limit: 10
            })
        ));
    }
}
