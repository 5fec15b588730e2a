//! OTLP logs as events: each log record becomes one JSON event. The type is the record's
//! `event_name` or `event.name` attribute (else the configured default), the source the
//! resource's `service.instance.id`, `host.name` or `service.name`.
//!
//! Bounded before and while decoding: the encoded request is sized first ([`bounds`]: records
//! counted, the decoded form estimated) and refused over `max_events_per_batch` or
//! [`DECODED_SIZE_FACTOR`] × `max_decompressed_bytes`; then the events it becomes may total at
//! most `max_decompressed_bytes`, the copies of each resource and scope (every record carries
//! them) charged before any record of theirs is built. Decoding runs off the async workers.

mod bounds;

use bytes::Bytes;
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsPartialSuccess, ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value as Any;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue};
use opentelemetry_proto::tonic::logs::v1::LogRecord;
use serde::Serialize;
use serde_json::value::{RawValue, to_raw_value};
use serde_json::{Map, Value, json};

use crate::collector::Collector;
use crate::config::Limits;
use crate::decode::{Decoded, IncomingEvent, PayloadFormat, check_count, off_workers};
use crate::error::IngestError;
use crate::ingest::Report;

/// Attribute naming an OTLP log record's event type.
pub const EVENT_NAME: &str = "event.name";
/// Source used when the resource names none.
pub const UNKNOWN_SOURCE: &str = "unknown";
/// How many times `max_decompressed_bytes` the decoded form of a request may take (estimated
/// before decoding). Dense protobuf attributes decode to at most about 7 times their encoded
/// size; empty elements to 50 to 90 times.
pub const DECODED_SIZE_FACTOR: u64 = 4;
const SOURCE_ATTRIBUTES: [&str; 3] = ["service.instance.id", "host.name", "service.name"];

/// How an export request body is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// Protobuf (`application/x-protobuf`, and gRPC).
    Protobuf,
    /// The OTLP JSON mapping (`application/json`).
    Json,
}

/// Decodes an export request body into events on the blocking pool ([`off_workers`]), within
/// the collector's limits ([`decode_body`]).
pub async fn decode(
    collector: &Collector,
    body: Bytes,
    encoding: Encoding,
) -> Result<Vec<Decoded>, IngestError> {
    let limits = collector.limits.clone();
    let default_type = collector.otlp_default_type.clone();
    off_workers(move || decode_body(&body, encoding, &default_type, &limits)).await
}

/// Sizes, decodes and converts one export request body: 413 when it holds more than
/// `max_events_per_batch` records or would decode to more than [`DECODED_SIZE_FACTOR`] ×
/// `max_decompressed_bytes` ([`bounds`]), 400 when it does not decode, else
/// [`decode_request`].
pub fn decode_body(
    body: &Bytes,
    encoding: Encoding,
    default_type: &str,
    limits: &Limits,
) -> Result<Vec<Decoded>, IngestError> {
    let name = match encoding {
        Encoding::Protobuf => "protobuf",
        Encoding::Json => "JSON",
    };
    let malformed = |e: String| IngestError::Malformed(format!("OTLP {name}: {e}"));
    let size = match encoding {
        Encoding::Protobuf => bounds::protobuf(body),
        Encoding::Json => bounds::json(body),
    }
    .map_err(malformed)?;
    let records = usize::try_from(size.records).unwrap_or(usize::MAX);
    check_count(records, limits.max_events_per_batch as usize)?;
    let decoded_limit = limits
        .max_decompressed_bytes
        .saturating_mul(DECODED_SIZE_FACTOR);
    if size.decoded_bytes > decoded_limit {
        return Err(IngestError::ExpandsTooLarge {
            how: "once decoded",
            limit: decoded_limit,
        });
    }
    let request = match encoding {
        Encoding::Protobuf => {
            prost::Message::decode(body.clone()).map_err(|e| malformed(e.to_string()))?
        }
        Encoding::Json => serde_json::from_slice(body).map_err(|e| malformed(e.to_string()))?,
    };
    decode_request(request, default_type, limits)
}

/// What the events of one request may total, in bytes, and what they total so far.
struct Budget {
    left: u64,
    limit: u64,
}

impl Budget {
    fn charge(&mut self, bytes: u64) -> Result<(), IngestError> {
        self.left = self
            .left
            .checked_sub(bytes)
            .ok_or(IngestError::ExpandsTooLarge {
                how: "of events (every log record carries a copy of its resource and scope; \
                      send fewer records per request)",
                limit: self.limit,
            })?;
        Ok(())
    }
}

/// A log record as its event's payload; fields in the order `json!` wrote them (sorted), the
/// resource and scope written once per request and copied in as they are.
#[derive(Serialize)]
struct Payload<'a> {
    attributes: Value,
    body: Value,
    observed_time_unix_nano: u64,
    resource: &'a RawValue,
    scope: &'a RawValue,
    severity_number: i32,
    severity_text: &'a str,
    span_id: String,
    time_unix_nano: u64,
    trace_id: String,
}

/// Turns an export request into events: more than `max_events_per_batch` log records are
/// refused, and so are events that would total more than `max_decompressed_bytes`.
pub fn decode_request(
    request: ExportLogsServiceRequest,
    default_type: &str,
    limits: &Limits,
) -> Result<Vec<Decoded>, IngestError> {
    let count: usize = request
        .resource_logs
        .iter()
        .flat_map(|r| &r.scope_logs)
        .map(|s| s.log_records.len())
        .sum();
    check_count(count, limits.max_events_per_batch as usize)?;
    let mut budget = Budget {
        left: limits.max_decompressed_bytes,
        limit: limits.max_decompressed_bytes,
    };
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
        let resource_json = raw_json(&attributes_json(&resource))?;
        for scope_logs in resource_logs.scope_logs {
            let scope = scope_logs
                .scope
                .map(|s| json!({"name": s.name, "version": s.version}))
                .unwrap_or(Value::Null);
            let scope_json = raw_json(&scope)?;
            // Every record of the scope carries a copy of these: charged before any is built.
            let copies = resource_json.get().len() + scope_json.get().len();
            let records = scope_logs.log_records.len() as u64;
            budget.charge(((copies + source.len()) as u64).saturating_mul(records))?;
            for record in scope_logs.log_records {
                let event =
                    record_event(record, default_type, &source, &resource_json, &scope_json)?;
                let own = event.payload.len().saturating_sub(copies) + event.event_type.len();
                budget.charge(own as u64)?;
                out.push(Decoded::Event(event));
            }
        }
    }
    Ok(out)
}

/// One log record as an event of `source`, its payload carrying `resource` and `scope`.
fn record_event(
    record: LogRecord,
    default_type: &str,
    source: &str,
    resource: &RawValue,
    scope: &RawValue,
) -> Result<IncomingEvent, IngestError> {
    let event_type = Some(record.event_name.clone())
        .filter(|n| !n.is_empty())
        .or_else(|| string_attribute(&record.attributes, EVENT_NAME))
        .unwrap_or_else(|| default_type.to_owned());
    let time = if record.time_unix_nano != 0 {
        record.time_unix_nano
    } else {
        record.observed_time_unix_nano
    };
    let payload = Payload {
        attributes: attributes_json(&record.attributes),
        body: record.body.as_ref().map_or(Value::Null, any_json),
        observed_time_unix_nano: record.observed_time_unix_nano,
        resource,
        scope,
        severity_number: record.severity_number,
        severity_text: &record.severity_text,
        span_id: hex::encode(&record.span_id),
        time_unix_nano: record.time_unix_nano,
        trace_id: hex::encode(&record.trace_id),
    };
    let payload = serde_json::to_vec(&payload)
        .map_err(|e| IngestError::Malformed(format!("OTLP record: {e}")))?;
    Ok(IncomingEvent {
        id: None,
        event_type,
        version: None,
        source: source.to_owned(),
        ts: (time != 0).then_some((time / 1_000_000) as i64),
        payload: Bytes::from(payload),
        format: PayloadFormat::Json,
        attributes: Vec::new(),
    })
}

/// `value` written once, to be copied into payloads as it is.
fn raw_json(value: &Value) -> Result<Box<RawValue>, IngestError> {
    to_raw_value(value).map_err(|e| IngestError::Malformed(format!("OTLP attributes: {e}")))
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

    fn limits(max_events: u32) -> Limits {
        Limits {
            max_events_per_batch: max_events,
            ..Limits::default()
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
        let decoded = decode_request(request(records), "otel.log", &limits(10)).unwrap();
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
            decode_request(request(records), "otel.log", &limits(10)),
            Err(IngestError::TooManyEvents {
                count: 11,
                limit: 10
            })
        ));
    }

    #[test]
    fn the_copies_of_a_large_resource_are_refused_before_any_record_is_built() {
        let mut export = request(vec![LogRecord::default(); 10_000]);
        let resource = export.resource_logs[0].resource.as_mut().unwrap();
        resource.attributes.push(kv("big", &"x".repeat(4 << 20)));
        let error = decode_request(export, "otel.log", &limits(10_000)).unwrap_err();
        assert!(
            matches!(error, IngestError::ExpandsTooLarge { limit, .. } if limit == 20 << 20),
            "{error}"
        );
        assert!(
            error.to_string().contains("copy of its resource"),
            "{error}"
        );
        // The same within the budget: every record carries the resource.
        let mut export = request(vec![LogRecord::default(); 4]);
        let resource = export.resource_logs[0].resource.as_mut().unwrap();
        resource.attributes.push(kv("big", &"x".repeat(4 << 20)));
        let decoded = decode_request(export, "otel.log", &limits(10)).unwrap();
        assert_eq!(decoded.len(), 4);
        let Decoded::Event(last) = &decoded[3] else {
            panic!("{decoded:?}")
        };
        let payload: Value = serde_json::from_slice(&last.payload).unwrap();
        assert_eq!(payload["resource"]["big"].as_str().unwrap().len(), 4 << 20);
    }

    #[test]
    fn payloads_keep_their_shape() {
        let record = LogRecord {
            time_unix_nano: 7,
            severity_number: 9,
            trace_id: vec![1, 2],
            attributes: vec![kv("code", "E42")],
            ..LogRecord::default()
        };
        let decoded = decode_request(request(vec![record]), "otel.log", &limits(10)).unwrap();
        let Decoded::Event(event) = &decoded[0] else {
            panic!("{decoded:?}")
        };
        assert_eq!(
            std::str::from_utf8(&event.payload).unwrap(),
            r#"{"attributes":{"code":"E42"},"body":null,"observed_time_unix_nano":0,"resource":{"host.name":"tv-9","service.name":"player"},"scope":{"name":"app","version":""},"severity_number":9,"severity_text":"","span_id":"","time_unix_nano":7,"trace_id":"0102"}"#
        );
    }

    #[test]
    fn bodies_are_sized_before_they_are_decoded() {
        let limits = limits(10);
        // 1M empty ResourceLogs: 2 MiB that decode to over 100 MiB.
        let bomb = Bytes::from([0x0a, 0x00].repeat(1_000_000));
        let error = decode_body(&bomb, Encoding::Protobuf, "otel.log", &limits).unwrap_err();
        assert!(
            matches!(
                error,
                IngestError::ExpandsTooLarge {
                    how: "once decoded",
                    ..
                }
            ),
            "{error}"
        );
        let json = format!(r#"{{"resourceLogs":[{}{{}}]}}"#, "{},".repeat(999_999));
        let error =
            decode_body(&Bytes::from(json), Encoding::Json, "otel.log", &limits).unwrap_err();
        assert!(
            matches!(error, IngestError::ExpandsTooLarge { .. }),
            "{error}"
        );
        let eleven = prost::Message::encode_to_vec(&request(vec![LogRecord::default(); 11]));
        let error = decode_body(
            &Bytes::from(eleven),
            Encoding::Protobuf,
            "otel.log",
            &limits,
        )
        .unwrap_err();
        assert!(
            matches!(
                error,
                IngestError::TooManyEvents {
                    count: 11,
                    limit: 10
                }
            ),
            "{error}"
        );
        let json = serde_json::to_vec(&request(vec![LogRecord::default(); 2])).unwrap();
        let decoded = decode_body(&Bytes::from(json), Encoding::Json, "otel.log", &limits).unwrap();
        assert_eq!(decoded.len(), 2);
        let error = decode_body(
            &Bytes::from_static(b"\x0a\x05"),
            Encoding::Protobuf,
            "t",
            &limits,
        )
        .unwrap_err();
        assert!(matches!(error, IngestError::Malformed(_)), "{error}");
    }
}
