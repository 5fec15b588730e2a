//! OTLP logs as events: each log record becomes one JSON event. The type is the record's
//! `event_name` or `event.name` attribute (else the configured default), the source the
//! resource's `service.instance.id`, `host.name` or `service.name`, the id the record's
//! `log.record.uid` attribute if it has one (so a retried export is not appended twice).
//!
//! Bounded before and while decoding: a request that could decode to more than
//! [`DECODED_SIZE_FACTOR`] × `max_decompressed_bytes` is sized first ([`bounds`]: records
//! counted, the decoded form estimated) and refused over that or `max_events_per_batch`; then
//! the events it becomes may total at most `max_decompressed_bytes`, the copies of each
//! resource and scope (every record carries them) charged before any record of theirs is
//! built; and the parsed payloads kept for validation ([`IncomingEvent::parsed`]) at most as
//! much again (beyond that an event's payload is parsed back when it is validated). A large
//! body decodes off the async workers.

mod bounds;

use bytes::Bytes;
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsPartialSuccess, ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value as Any;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue};
use opentelemetry_proto::tonic::logs::v1::LogRecord;
use serde_json::{Value, json};

use crate::collector::Collector;
use crate::config::Limits;
use crate::decode::{Decoded, IncomingEvent, PayloadFormat, check_count, decode_sized};
use crate::error::IngestError;
use crate::ingest::Report;

/// Attribute naming an OTLP log record's event type.
pub const EVENT_NAME: &str = "event.name";
/// Attribute holding a log record's unique id (OpenTelemetry semantic conventions: records
/// with the same id are duplicates); it becomes the event's id, deduplicated like any other.
pub const RECORD_UID: &str = "log.record.uid";
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

/// Decodes an export request body into events within the collector's limits
/// ([`decode_body`]): a large body on the blocking pool, a small one on the request's task
/// ([`decode_sized`]).
pub async fn decode(
    collector: &Collector,
    body: Bytes,
    encoding: Encoding,
) -> Result<Vec<Decoded>, IngestError> {
    let limits = collector.limits.clone();
    let default_type = collector.otlp_default_type.clone();
    decode_sized(body.len(), move || {
        decode_body(&body, encoding, &default_type, &limits)
    })
    .await
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
    let decoded_limit = limits
        .max_decompressed_bytes
        .saturating_mul(DECODED_SIZE_FACTOR);
    // A body too small to decode past the limit, whatever it holds, is not walked first; its
    // records are counted once decoded (`decode_request`).
    if bounds::worst_case(body.len()) > decoded_limit {
        let size = match encoding {
            Encoding::Protobuf => bounds::protobuf(body),
            Encoding::Json => bounds::json(body),
        }
        .map_err(malformed)?;
        let records = usize::try_from(size.records).unwrap_or(usize::MAX);
        check_count(records, limits.max_events_per_batch as usize)?;
        if size.decoded_bytes > decoded_limit {
            return Err(IngestError::ExpandsTooLarge {
                how: "once decoded",
                limit: decoded_limit,
            });
        }
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
    // What the parsed payloads kept for validation may take; past it they are dropped.
    let mut parsed_left = limits.max_decompressed_bytes;
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
        let resource = attributes_value(resource);
        let resource_len = json_len(&resource)?;
        for scope_logs in resource_logs.scope_logs {
            let scope = scope_logs
                .scope
                .map(|s| json!({"name": s.name, "version": s.version}))
                .unwrap_or(Value::Null);
            // Every record of the scope carries a copy of these: charged before any is built.
            let copies = resource_len + json_len(&scope)?;
            let records = scope_logs.log_records.len() as u64;
            budget.charge(((copies + source.len()) as u64).saturating_mul(records))?;
            for record in scope_logs.log_records {
                let mut event =
                    record_event(record, default_type, &source, (&resource, &scope), copies)?;
                let own = event.payload.len().saturating_sub(copies) + event.event_type.len();
                budget.charge(own as u64)?;
                let kept = event.parsed.as_deref().map_or(0, value_bytes);
                match parsed_left.checked_sub(kept) {
                    Some(left) => parsed_left = left,
                    None => event.parsed = None,
                }
                out.push(Decoded::Event(event));
            }
        }
    }
    Ok(out)
}

/// One log record as an event of `source`, its payload carrying `resource` and `scope` (JSON of
/// `copies` bytes together): built as a JSON value (the record's strings moved into it, not
/// copied), written once, and kept for validation so the payload is not parsed back.
fn record_event(
    mut record: LogRecord,
    default_type: &str,
    source: &str,
    (resource, scope): (&Value, &Value),
    copies: usize,
) -> Result<IncomingEvent, IngestError> {
    let event_type = Some(std::mem::take(&mut record.event_name))
        .filter(|n| !n.is_empty())
        .or_else(|| string_attribute(&record.attributes, EVENT_NAME))
        .unwrap_or_else(|| default_type.to_owned());
    let id = string_attribute(&record.attributes, RECORD_UID);
    let time = if record.time_unix_nano != 0 {
        record.time_unix_nano
    } else {
        record.observed_time_unix_nano
    };
    let fields = [
        ("attributes", attributes_value(record.attributes)),
        ("body", record.body.map_or(Value::Null, any_value)),
        (
            "observed_time_unix_nano",
            record.observed_time_unix_nano.into(),
        ),
        ("resource", resource.clone()),
        ("scope", scope.clone()),
        ("severity_number", record.severity_number.into()),
        ("severity_text", Value::String(record.severity_text)),
        ("span_id", Value::String(hex::encode(&record.span_id))),
        ("time_unix_nano", record.time_unix_nano.into()),
        ("trace_id", Value::String(hex::encode(&record.trace_id))),
    ];
    let payload = Value::Object(fields.into_iter().map(|(k, v)| (k.to_owned(), v)).collect());
    let mut bytes = Vec::with_capacity(copies + 256);
    serde_json::to_writer(&mut bytes, &payload)
        .map_err(|e| IngestError::Malformed(format!("OTLP record: {e}")))?;
    Ok(IncomingEvent {
        id,
        event_type,
        version: None,
        source: source.to_owned(),
        ts: (time != 0).then_some((time / 1_000_000) as i64),
        payload: Bytes::from(bytes),
        format: PayloadFormat::Json,
        attributes: Vec::new(),
        parsed: Some(Box::new(payload)),
    })
}

/// About how much memory `value` holds: its own struct, its strings, and for each object
/// entry a key and its share of the map's nodes. (OTLP values nest no deeper than prost
/// decodes, 100 levels.)
fn value_bytes(value: &Value) -> u64 {
    /// A map entry's share of its B-tree node besides key and value: links and spare slots.
    const ENTRY_OVERHEAD: usize = 16;
    let own = std::mem::size_of::<Value>() as u64;
    own + match value {
        Value::String(s) => s.len() as u64,
        Value::Array(items) => items.iter().map(value_bytes).sum(),
        Value::Object(map) => map
            .iter()
            .map(|(k, v)| {
                (std::mem::size_of::<String>() + k.len() + ENTRY_OVERHEAD) as u64 + value_bytes(v)
            })
            .sum(),
        Value::Null | Value::Bool(_) | Value::Number(_) => 0,
    }
}

/// How long `value` is as JSON text.
fn json_len(value: &Value) -> Result<usize, IngestError> {
    serde_json::to_vec(value)
        .map(|v| v.len())
        .map_err(|e| IngestError::Malformed(format!("OTLP attributes: {e}")))
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

/// Attributes as a JSON object (of a key given twice, the last value).
fn attributes_value(attributes: Vec<KeyValue>) -> Value {
    Value::Object(
        attributes
            .into_iter()
            .map(|kv| (kv.key, kv.value.map_or(Value::Null, any_value)))
            .collect(),
    )
}

/// An attribute value as JSON: bytes as hex, a key-value list as an object, a double that is
/// not finite as null.
fn any_value(value: AnyValue) -> Value {
    match value.value {
        None => Value::Null,
        Some(Any::StringValue(s)) => Value::String(s),
        Some(Any::BoolValue(b)) => Value::Bool(b),
        Some(Any::IntValue(i)) => Value::from(i),
        Some(Any::DoubleValue(d)) => Value::from(d),
        Some(Any::ArrayValue(a)) => Value::Array(a.values.into_iter().map(any_value).collect()),
        Some(Any::KvlistValue(kv)) => attributes_value(kv.values),
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
        // What validation checks is what the payload holds.
        let parsed: Value = serde_json::from_slice(&event.payload).unwrap();
        assert_eq!(event.parsed.as_deref(), Some(&parsed));
        assert_eq!(
            std::str::from_utf8(&event.payload).unwrap(),
            r#"{"attributes":{"code":"E42"},"body":null,"observed_time_unix_nano":0,"resource":{"host.name":"tv-9","service.name":"player"},"scope":{"name":"app","version":""},"severity_number":9,"severity_text":"","span_id":"","time_unix_nano":7,"trace_id":"0102"}"#
        );
    }

    #[test]
    fn attribute_values_of_every_kind_are_written_as_a_map_would() {
        let any = |value| AnyValue { value: Some(value) };
        let record = LogRecord {
            body: Some(any(Any::KvlistValue(
                opentelemetry_proto::tonic::common::v1::KeyValueList {
                    values: vec![kv("z", "last"), kv("a", "first")],
                },
            ))),
            attributes: vec![
                kv("dup", "one"),
                KeyValue {
                    key: "n".into(),
                    value: Some(any(Any::ArrayValue(
                        opentelemetry_proto::tonic::common::v1::ArrayValue {
                            values: vec![
                                any(Any::IntValue(-3)),
                                any(Any::DoubleValue(1.5)),
                                any(Any::DoubleValue(f64::NAN)),
                                any(Any::BoolValue(true)),
                                any(Any::BytesValue(vec![0xab, 0x01])),
                                AnyValue { value: None },
                            ],
                        },
                    ))),
                    ..KeyValue::default()
                },
                kv("dup", "two"),
                KeyValue {
                    key: "none".into(),
                    value: None,
                    ..KeyValue::default()
                },
            ],
            ..LogRecord::default()
        };
        let decoded = decode_request(request(vec![record]), "otel.log", &limits(10)).unwrap();
        let Decoded::Event(event) = &decoded[0] else {
            panic!("{decoded:?}")
        };
        let text = std::str::from_utf8(&event.payload).unwrap();
        assert!(
            text.starts_with(
                r#"{"attributes":{"dup":"two","n":[-3,1.5,null,true,"ab01",null],"none":null},"body":{"a":"first","z":"last"},"#
            ),
            "{text}"
        );
    }

    #[test]
    fn parsed_payloads_are_kept_only_within_the_budget() {
        let limits = Limits {
            max_events_per_batch: 100,
            max_decompressed_bytes: 20_000,
            ..Limits::default()
        };
        let record = LogRecord {
            body: Some(AnyValue {
                value: Some(Any::StringValue("x".repeat(2_000))),
            }),
            attributes: (0..20).map(|i| kv(&format!("k{i}"), "v")).collect(),
            ..LogRecord::default()
        };
        let decoded = decode_request(request(vec![record; 8]), "otel.log", &limits).unwrap();
        let events: Vec<&IncomingEvent> = decoded
            .iter()
            .map(|d| match d {
                Decoded::Event(e) => e,
                Decoded::Bad { .. } => panic!("{d:?}"),
            })
            .collect();
        // Each payload's bytes fit the events' budget; their values, larger, only the first few.
        assert_eq!(events.len(), 8);
        let kept: Vec<u64> = events
            .iter()
            .filter_map(|e| e.parsed.as_deref().map(value_bytes))
            .collect();
        assert!(!kept.is_empty() && kept.len() < 8, "{} kept", kept.len());
        assert!(kept.iter().sum::<u64>() <= 20_000);
        assert!(events[..kept.len()].iter().all(|e| e.parsed.is_some()));
        assert!(events[kept.len()..].iter().all(|e| e.parsed.is_none()));
    }

    #[test]
    fn a_record_uid_becomes_the_event_id() {
        let records = vec![
            LogRecord {
                attributes: vec![kv(RECORD_UID, "01J9Z3")],
                ..LogRecord::default()
            },
            LogRecord {
                attributes: vec![kv(RECORD_UID, "")],
                ..LogRecord::default()
            },
        ];
        let decoded = decode_request(request(records), "otel.log", &limits(10)).unwrap();
        let ids: Vec<_> = decoded
            .iter()
            .map(|d| match d {
                Decoded::Event(e) => e.id.clone(),
                Decoded::Bad { .. } => panic!("{d:?}"),
            })
            .collect();
        assert_eq!(ids, [Some("01J9Z3".to_owned()), None]);
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
