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
//! built. A large body decodes off the async workers.
//!
//! A record's payload is written as JSON straight from the decoded record ([`RecordJson`]):
//! members in the order of a sorted map, a key given twice taking its last value, each
//! resource and scope written once and copied in as text. Beside the text, the tape simd-json
//! would parse it into is built from the record ([`tape`]), and the payload is validated on
//! that tape, not parsed back.

mod bounds;
mod tape;

use bytes::Bytes;
use compact_str::CompactString;
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsPartialSuccess, ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value as Any;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue};
use opentelemetry_proto::tonic::logs::v1::LogRecord;
use opentelemetry_proto::tonic::resource::v1::Resource;
use serde::ser::{Serialize, SerializeMap, SerializeSeq, Serializer};
use serde_json::value::RawValue;

use crate::collector::Collector;
use crate::config::Limits;
use crate::decode::{Decoded, IncomingEvent, PayloadFormat, check_count, decode_sized};
use crate::error::IngestError;
use crate::ingest::Report;
use crate::validate::Validate;

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

/// An export request as events, and how to answer it.
#[derive(Debug)]
pub struct Export {
    /// The events to publish.
    pub events: Vec<Decoded>,
    /// `Some(records)` when the request is kept whole as one event of that many log records.
    whole: Option<u64>,
}

impl Export {
    /// The OTLP answer once `report` says what became of [`Export::events`]: partial success
    /// names the rejected records and why (every record of a request kept whole, if its event
    /// was rejected).
    pub fn response(&self, report: &Report) -> ExportLogsServiceResponse {
        if report.rejected == 0 {
            return ExportLogsServiceResponse {
                partial_success: None,
            };
        }
        let reasons: Vec<String> = report
            .errors
            .iter()
            .take(5)
            .map(|e| match self.whole {
                Some(_) => format!("request: {}", e.reason),
                None => format!("record {}: {}", e.index, e.reason),
            })
            .collect();
        let rejected = match self.whole {
            Some(records) => i64::try_from(records).unwrap_or(i64::MAX),
            None => report.rejected as i64,
        };
        ExportLogsServiceResponse {
            partial_success: Some(ExportLogsPartialSuccess {
                rejected_log_records: rejected,
                error_message: reasons.join("; "),
            }),
        }
    }
}

/// Decodes an export request body into events within the collector's limits: one event per
/// log record ([`decode_body`]), or the whole request as one event of
/// `gateway.otlp_request_type` ([`decode_whole`]). A large body is decoded on the blocking
/// pool, a small one on the request's task ([`decode_sized`]).
pub async fn decode(
    collector: &Collector,
    body: Bytes,
    encoding: Encoding,
) -> Result<Export, IngestError> {
    let limits = collector.limits.clone();
    match collector.otlp_request_type.clone() {
        Some(request_type) => {
            decode_sized(body.len(), move || {
                decode_whole(body, encoding, &request_type, &limits)
            })
            .await
        }
        None => {
            let default_type = collector.otlp_default_type.clone();
            let validator = collector.pipeline.validator.clone();
            let events = decode_sized(body.len(), move || {
                decode_body(&body, encoding, &default_type, &limits, Some(&*validator))
            })
            .await?;
            Ok(Export {
                events,
                whole: None,
            })
        }
    }
}

/// One export request kept whole as one event of `request_type`: its payload the protobuf
/// `ExportLogsServiceRequest` as received (a JSON request decoded and encoded as protobuf),
/// its source that of the first resource. The request's records are counted on the wire down
/// to the records, not into them (`max_events_per_batch` bounds them; broken framing down to
/// there is a 400), and it must fit in `max_event_bytes` (else 413); validation against the
/// type's schema then checks all of it decodes.
pub fn decode_whole(
    body: Bytes,
    encoding: Encoding,
    request_type: &str,
    limits: &Limits,
) -> Result<Export, IngestError> {
    let (payload, records, source) = match encoding {
        Encoding::Protobuf => {
            let records = bounds::count_records(&body)
                .map_err(|e| IngestError::Malformed(format!("OTLP protobuf: {e}")))?;
            // A first resource that does not decode names no source; validation refuses it.
            let mut resource = Resource::default();
            for encoded in bounds::first_resource(&body) {
                if prost::Message::merge(&mut resource, encoded).is_err() {
                    resource = Resource::default();
                    break;
                }
            }
            let source =
                source_of(&resource.attributes).unwrap_or_else(|| UNKNOWN_SOURCE.to_owned());
            (body, records, source)
        }
        Encoding::Json => {
            let request = decode_message(&body, encoding, limits)?;
            let records = record_count(&request);
            let source = request
                .resource_logs
                .first()
                .and_then(|r| r.resource.as_ref())
                .and_then(|r| source_of(&r.attributes))
                .unwrap_or_else(|| UNKNOWN_SOURCE.to_owned());
            let payload = Bytes::from(prost::Message::encode_to_vec(&request));
            (payload, records as u64, source)
        }
    };
    check_count(
        usize::try_from(records).unwrap_or(usize::MAX),
        limits.max_events_per_batch as usize,
    )?;
    if payload.len() as u64 > u64::from(limits.max_event_bytes) {
        return Err(IngestError::WholeRequestTooLarge {
            size: payload.len(),
            limit: u64::from(limits.max_event_bytes),
        });
    }
    let event = IncomingEvent {
        id: None,
        event_type: request_type.into(),
        version: None,
        source: source.into(),
        ts: None,
        payload,
        format: PayloadFormat::Protobuf,
        attributes: Vec::new(),
        verdict: None,
    };
    Ok(Export {
        events: vec![Decoded::Event(event)],
        whole: Some(records),
    })
}

/// The log records of a decoded request.
fn record_count(request: &ExportLogsServiceRequest) -> usize {
    request
        .resource_logs
        .iter()
        .flat_map(|r| &r.scope_logs)
        .map(|s| s.log_records.len())
        .sum()
}

/// The source a resource names: its `service.instance.id`, `host.name` or `service.name`.
fn source_of(resource: &[KeyValue]) -> Option<String> {
    SOURCE_ATTRIBUTES
        .iter()
        .find_map(|name| string_attribute(resource, name))
}

/// Sizes, decodes and converts one export request body ([`decode_message`], then
/// [`decode_request`]).
pub fn decode_body(
    body: &Bytes,
    encoding: Encoding,
    default_type: &str,
    limits: &Limits,
    validator: Option<&dyn Validate>,
) -> Result<Vec<Decoded>, IngestError> {
    decode_request(
        decode_message(body, encoding, limits)?,
        default_type,
        limits,
        validator,
    )
}

/// Sizes and decodes one export request body: 413 when it holds more than
/// `max_events_per_batch` records or would decode to more than [`DECODED_SIZE_FACTOR`] ×
/// `max_decompressed_bytes` ([`bounds`]), 400 when it does not decode.
fn decode_message(
    body: &Bytes,
    encoding: Encoding,
    limits: &Limits,
) -> Result<ExportLogsServiceRequest, IngestError> {
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
    Ok(match encoding {
        Encoding::Protobuf => {
            prost::Message::decode(body.clone()).map_err(|e| malformed(e.to_string()))?
        }
        Encoding::Json => serde_json::from_slice(body).map_err(|e| malformed(e.to_string()))?,
    })
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
/// refused, and so are events that would total more than `max_decompressed_bytes`. With a
/// `validator`, each event comes validated (on the tape built beside its payload).
pub fn decode_request(
    request: ExportLogsServiceRequest,
    default_type: &str,
    limits: &Limits,
    validator: Option<&dyn Validate>,
) -> Result<Vec<Decoded>, IngestError> {
    let count = record_count(&request);
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
        let source = source_of(&resource).unwrap_or_else(|| UNKNOWN_SOURCE.to_owned());
        let resource_text = json_text(&Attributes(&resource))?;
        let mut resource_tape = Vec::new();
        let resource_tape = validator
            .and_then(|_| tape::attributes(&resource, &mut resource_tape))
            .map(|()| resource_tape);
        for scope_logs in resource_logs.scope_logs {
            let named = scope_logs
                .scope
                .as_ref()
                .map(|scope| (scope.name.as_str(), scope.version.as_str()));
            let scope_text = match named {
                Some((name, version)) => json_text(&Scope { name, version })?,
                None => json_text(&())?,
            };
            let scope_tape = tape::scope(named);
            let copied = Copied {
                resource: (&resource_text, resource_tape.as_deref()),
                scope: (&scope_text, &scope_tape),
            };
            // Every record of the scope carries a copy of these: charged before any is built.
            let copies = copied.len();
            let records = scope_logs.log_records.len() as u64;
            budget.charge(((copies + source.len()) as u64).saturating_mul(records))?;
            for record in scope_logs.log_records {
                let event = record_event(record, default_type, &source, &copied, validator)?;
                let own = event.payload.len().saturating_sub(copies) + event.event_type.len();
                budget.charge(own as u64)?;
                out.push(Decoded::Event(event));
            }
        }
    }
    Ok(out)
}

/// What every record of a scope carries a copy of: its resource and scope, as JSON text and
/// as the tape of that text (the resource's `None` when it has none).
struct Copied<'a> {
    resource: (&'a RawValue, Option<&'a [headwater_schemas::TapeNode<'a>]>),
    scope: (&'a RawValue, &'a [headwater_schemas::TapeNode<'a>]),
}

impl Copied<'_> {
    /// Bytes of text copied into each record.
    fn len(&self) -> usize {
        self.resource.0.get().len() + self.scope.0.get().len()
    }
}

/// One log record as an event of `source`, its payload carrying the `copied` resource and
/// scope, written straight from the record; validated by `validator` on the tape built beside
/// the payload when there is one.
fn record_event(
    mut record: LogRecord,
    default_type: &str,
    source: &str,
    copied: &Copied<'_>,
    validator: Option<&dyn Validate>,
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
    let ids = tape::Ids::of(&record);
    // Sorted once, for the text and for the tape.
    let order = attribute_order(&record.attributes);
    let payload = RecordJson {
        record: &record,
        order: &order,
        ids: &ids,
        resource: copied.resource.0,
        scope: copied.scope.0,
    };
    let mut bytes = Vec::with_capacity(copied.len() + 256);
    payload
        .write(&mut bytes)
        .map_err(|e| IngestError::Malformed(format!("OTLP record: {e}")))?;
    let mut event = IncomingEvent {
        id: id.map(CompactString::from),
        event_type: event_type.into(),
        version: None,
        source: source.into(),
        ts: (time != 0).then_some((time / 1_000_000) as i64),
        payload: Bytes::from(bytes),
        format: PayloadFormat::Json,
        attributes: Vec::new(),
        verdict: None,
    };
    if let (Some(validator), Some(resource)) = (validator, copied.resource.1)
        && let Some(tape) = tape::record(&record, &order, &ids, resource, copied.scope.1)
    {
        event.verdict = Some(validator.validate_built(&event, &tape));
    }
    Ok(event)
}

/// `value` written as JSON text, once (a resource or a scope, copied into each record's
/// payload).
fn json_text(value: &impl Serialize) -> Result<Box<RawValue>, IngestError> {
    serde_json::value::to_raw_value(value)
        .map_err(|e| IngestError::Malformed(format!("OTLP attributes: {e}")))
}

/// A log record's payload: the members in the order of a sorted map ([`RecordJson::write`]).
struct RecordJson<'a> {
    record: &'a LogRecord,
    /// The record's attributes in their object's order ([`attribute_order`]).
    order: &'a [usize],
    ids: &'a tape::Ids,
    resource: &'a RawValue,
    scope: &'a RawValue,
}

impl RecordJson<'_> {
    /// Appends the payload to `out`. The member names are constants written as they are (none
    /// needs escaping), the values through serde_json; the ids' hex needs no escaping either.
    fn write(&self, out: &mut Vec<u8>) -> serde_json::Result<()> {
        let record = self.record;
        out.extend_from_slice(br#"{"attributes":"#);
        let attributes = Ordered {
            attributes: &record.attributes,
            order: self.order,
        };
        serde_json::to_writer(&mut *out, &attributes)?;
        out.extend_from_slice(br#","body":"#);
        serde_json::to_writer(&mut *out, &AnyJson(record.body.as_ref()))?;
        out.extend_from_slice(br#","observed_time_unix_nano":"#);
        serde_json::to_writer(&mut *out, &record.observed_time_unix_nano)?;
        out.extend_from_slice(br#","resource":"#);
        out.extend_from_slice(self.resource.get().as_bytes());
        out.extend_from_slice(br#","scope":"#);
        out.extend_from_slice(self.scope.get().as_bytes());
        out.extend_from_slice(br#","severity_number":"#);
        serde_json::to_writer(&mut *out, &record.severity_number)?;
        out.extend_from_slice(br#","severity_text":"#);
        serde_json::to_writer(&mut *out, &record.severity_text)?;
        out.extend_from_slice(br#","span_id":""#);
        out.extend_from_slice(self.ids.span_id.as_bytes());
        out.extend_from_slice(br#"","time_unix_nano":"#);
        serde_json::to_writer(&mut *out, &record.time_unix_nano)?;
        out.extend_from_slice(br#","trace_id":""#);
        out.extend_from_slice(self.ids.trace_id.as_bytes());
        out.extend_from_slice(br#""}"#);
        Ok(())
    }
}

/// An instrumentation scope as a JSON object.
struct Scope<'a> {
    name: &'a str,
    version: &'a str,
}

impl Serialize for Scope<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(2))?;
        map.serialize_entry("name", self.name)?;
        map.serialize_entry("version", self.version)?;
        map.end()
    }
}

/// Attributes as a JSON object: keys sorted, of a key given twice the last value.
struct Attributes<'a>(&'a [KeyValue]);

impl Serialize for Attributes<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let order = attribute_order(self.0);
        Ordered {
            attributes: self.0,
            order: &order,
        }
        .serialize(serializer)
    }
}

/// Attributes as a JSON object, in an order [`attribute_order`] gave.
struct Ordered<'a> {
    attributes: &'a [KeyValue],
    order: &'a [usize],
}

impl Serialize for Ordered<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.order.len()))?;
        for &at in self.order {
            let kv = &self.attributes[at];
            map.serialize_entry(&kv.key, &AnyJson(kv.value.as_ref()))?;
        }
        map.end()
    }
}

/// The places of the attributes an object of them holds, in its order: by key, and of a key
/// given more than once the last.
fn attribute_order(attributes: &[KeyValue]) -> Vec<usize> {
    // By key, and of one key the last given first; then the first of each key is kept.
    let mut order: Vec<usize> = (0..attributes.len()).collect();
    order.sort_unstable_by(|&a, &b| attributes[a].key.cmp(&attributes[b].key).then(b.cmp(&a)));
    order.dedup_by(|later, kept| attributes[*later].key == attributes[*kept].key);
    order
}

/// An attribute value as JSON: bytes as hex, a key-value list as an object, a double that is
/// not finite as null (as serde_json writes one).
struct AnyJson<'a>(Option<&'a AnyValue>);

impl Serialize for AnyJson<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.0.and_then(|v| v.value.as_ref()) {
            None => serializer.serialize_unit(),
            Some(Any::StringValue(s)) => serializer.serialize_str(s),
            Some(Any::BoolValue(b)) => serializer.serialize_bool(*b),
            Some(Any::IntValue(i)) => serializer.serialize_i64(*i),
            Some(Any::DoubleValue(d)) if d.is_finite() => serializer.serialize_f64(*d),
            Some(Any::DoubleValue(_)) => serializer.serialize_unit(),
            Some(Any::ArrayValue(a)) => {
                let mut seq = serializer.serialize_seq(Some(a.values.len()))?;
                for value in &a.values {
                    seq.serialize_element(&AnyJson(Some(value)))?;
                }
                seq.end()
            }
            Some(Any::KvlistValue(kv)) => Attributes(&kv.values).serialize(serializer),
            Some(Any::BytesValue(b)) => serializer.serialize_str(&hex::encode(b)),
            // An index into a profiles string table; log records do not carry one.
            Some(_) => serializer.serialize_unit(),
        }
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

#[cfg(test)]
mod tests {
    use opentelemetry_proto::tonic::common::v1::InstrumentationScope;
    use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
    use opentelemetry_proto::tonic::resource::v1::Resource;
    use serde_json::Value;

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
        let decoded = decode_request(request(records), "otel.log", &limits(10), None).unwrap();
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
            decode_request(request(records), "otel.log", &limits(10), None),
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
        let error = decode_request(export, "otel.log", &limits(10_000), None).unwrap_err();
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
        let decoded = decode_request(export, "otel.log", &limits(10), None).unwrap();
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
        let decoded = decode_request(request(vec![record]), "otel.log", &limits(10), None).unwrap();
        let Decoded::Event(event) = &decoded[0] else {
            panic!("{decoded:?}")
        };
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
        let decoded = decode_request(request(vec![record]), "otel.log", &limits(10), None).unwrap();
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
    fn a_request_kept_whole_is_keyed_by_its_first_resource() {
        let whole = |request: &ExportLogsServiceRequest| {
            let body = Bytes::from(prost::Message::encode_to_vec(request));
            let export = decode_whole(body.clone(), Encoding::Protobuf, "t", &limits(10)).unwrap();
            assert_eq!(export.whole, Some(3));
            let [Decoded::Event(event)] = &export.events[..] else {
                panic!("{export:?}")
            };
            assert_eq!(event.payload, body);
            assert_eq!(event.format, PayloadFormat::Protobuf);
            event.source.clone()
        };
        let mut export = request(vec![LogRecord::default(); 3]);
        assert_eq!(whole(&export), "tv-9");
        // A second resource's source does not count; a first without one is unknown.
        let mut second = export.resource_logs[0].clone();
        second.resource.as_mut().unwrap().attributes = vec![kv("host.name", "other")];
        second.scope_logs.clear();
        export.resource_logs.push(second);
        assert_eq!(whole(&export), "tv-9");
        export.resource_logs[0].resource = None;
        assert_eq!(whole(&export), UNKNOWN_SOURCE);
        // A rejection names every record of the request.
        let export = decode_whole(
            Bytes::from(prost::Message::encode_to_vec(&request(
                vec![LogRecord::default(); 3],
            ))),
            Encoding::Protobuf,
            "t",
            &limits(10),
        )
        .unwrap();
        let report = Report {
            accepted: 0,
            rejected: 1,
            errors: vec![crate::ingest::RejectedEvent {
                index: 0,
                reason: "no".to_owned(),
            }],
        };
        let partial = export.response(&report).partial_success.unwrap();
        assert_eq!(partial.rejected_log_records, 3);
        assert_eq!(partial.error_message, "request: no");
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
        let decoded = decode_request(request(records), "otel.log", &limits(10), None).unwrap();
        let ids: Vec<_> = decoded
            .iter()
            .map(|d| match d {
                Decoded::Event(e) => e.id.as_deref(),
                Decoded::Bad { .. } => panic!("{d:?}"),
            })
            .collect();
        assert_eq!(ids, [Some("01J9Z3"), None]);
    }

    #[test]
    fn bodies_are_sized_before_they_are_decoded() {
        let limits = limits(10);
        // 1M empty ResourceLogs: 2 MiB that decode to over 100 MiB.
        let bomb = Bytes::from([0x0a, 0x00].repeat(1_000_000));
        let error = decode_body(&bomb, Encoding::Protobuf, "otel.log", &limits, None).unwrap_err();
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
        let error = decode_body(
            &Bytes::from(json),
            Encoding::Json,
            "otel.log",
            &limits,
            None,
        )
        .unwrap_err();
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
            None,
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
        let decoded = decode_body(
            &Bytes::from(json),
            Encoding::Json,
            "otel.log",
            &limits,
            None,
        )
        .unwrap();
        assert_eq!(decoded.len(), 2);
        let error = decode_body(
            &Bytes::from_static(b"\x0a\x05"),
            Encoding::Protobuf,
            "t",
            &limits,
            None,
        )
        .unwrap_err();
        assert!(matches!(error, IngestError::Malformed(_)), "{error}");
    }
}
