//! Decoding request bodies into events: a JSON array, `{"events":[...]}`, NDJSON, or a
//! protobuf `Batch`. Payload bytes are sliced from the body as received, never re-encoded.

use bytes::Bytes;
use headwater_schemas::proto::v1::{Batch, Event as ProtoEvent};
use prost::Message;
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::error::IngestError;

pub use headwater_schemas::PayloadFormat;

/// An event as the client sent it, before validation and enrichment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IncomingEvent {
    /// Client-given id, if any.
    pub id: Option<String>,
    /// Event type.
    pub event_type: String,
    /// Schema version; `None` means the latest.
    pub version: Option<u32>,
    /// Device or service id: the record key.
    pub source: String,
    /// Client time in milliseconds since the epoch.
    pub ts: Option<i64>,
    /// Payload bytes as received.
    pub payload: Bytes,
    /// Payload encoding.
    pub format: PayloadFormat,
    /// Extra string attributes (OTLP resource and record attributes, protobuf `attributes`).
    pub attributes: Vec<(String, String)>,
}

/// One element of a batch: an event, or what was sent and why it is not one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decoded {
    /// A well-formed event.
    Event(IncomingEvent),
    /// Not an event; `raw` is kept for the dead-letter topic.
    Bad {
        /// The element's bytes as received.
        raw: Bytes,
        /// Why it is not an event.
        reason: String,
    },
}

#[derive(Deserialize)]
struct JsonEvent<'a> {
    #[serde(default)]
    id: Option<String>,
    #[serde(rename = "type", default)]
    event_type: Option<String>,
    #[serde(default)]
    version: Option<u32>,
    #[serde(default)]
    source: Option<String>,
    #[serde(default)]
    ts: Option<i64>,
    #[serde(borrow, default)]
    payload: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct JsonBatch<'a> {
    #[serde(borrow)]
    events: Vec<&'a RawValue>,
}

/// Decodes a JSON array of events or an object `{"events": [...]}`.
pub fn decode_json(body: &Bytes, max_events: usize) -> Result<Vec<Decoded>, IngestError> {
    let text = std::str::from_utf8(body)
        .map_err(|e| IngestError::Malformed(format!("body is not UTF-8: {e}")))?;
    let first = text.trim_start().as_bytes().first().copied();
    let elements: Vec<&RawValue> = match first {
        Some(b'[') => {
            serde_json::from_str(text).map_err(|e| IngestError::Malformed(format!("JSON: {e}")))?
        }
        Some(b'{') => {
            serde_json::from_str::<JsonBatch<'_>>(text)
                .map_err(|e| {
                    IngestError::Malformed(format!("JSON: expected {{\"events\": [...]}}: {e}"))
                })?
                .events
        }
        _ => {
            return Err(IngestError::Malformed(
                "JSON: expected an array of events or {\"events\": [...]}".to_owned(),
            ));
        }
    };
    check_count(elements.len(), max_events)?;
    Ok(elements
        .into_iter()
        .map(|raw| decode_one(body, raw.get()))
        .collect())
}

/// Decodes newline-delimited JSON, one event a line; blank lines are skipped, a malformed
/// line is one bad event.
pub fn decode_ndjson(body: &Bytes, max_events: usize) -> Result<Vec<Decoded>, IngestError> {
    let text = std::str::from_utf8(body)
        .map_err(|e| IngestError::Malformed(format!("body is not UTF-8: {e}")))?;
    let lines: Vec<&str> = text
        .split('\n')
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    check_count(lines.len(), max_events)?;
    Ok(lines
        .into_iter()
        .map(|line| decode_one(body, line))
        .collect())
}

/// Decodes one JSON event whose text lies inside `body`.
fn decode_one(body: &Bytes, text: &str) -> Decoded {
    let raw = body.slice_ref(text.as_bytes());
    let event: JsonEvent<'_> = match serde_json::from_str(text) {
        Ok(event) => event,
        Err(error) => {
            return Decoded::Bad {
                raw,
                reason: format!("not an event object: {error}"),
            };
        }
    };
    let Some(event_type) = event.event_type.filter(|t| !t.is_empty()) else {
        return bad(raw, "missing `type`");
    };
    let Some(source) = event.source.filter(|s| !s.is_empty()) else {
        return bad(raw, "missing `source`");
    };
    let Some(payload) = event.payload else {
        return bad(raw, "missing `payload`");
    };
    Decoded::Event(IncomingEvent {
        id: event.id.filter(|id| !id.is_empty()),
        event_type,
        version: event.version.filter(|v| *v != 0),
        source,
        ts: event.ts,
        payload: body.slice_ref(payload.get().as_bytes()),
        format: PayloadFormat::Json,
        attributes: Vec::new(),
    })
}

fn bad(raw: Bytes, reason: &str) -> Decoded {
    Decoded::Bad {
        raw,
        reason: reason.to_owned(),
    }
}

/// Decodes a protobuf `headwater.v1.Batch`; an event without type, source or a known
/// `payload_format` is one bad event, kept re-encoded for the dead-letter topic.
pub fn decode_protobuf(body: &Bytes, max_events: usize) -> Result<Vec<Decoded>, IngestError> {
    let batch = Batch::decode(body.clone())
        .map_err(|e| IngestError::Malformed(format!("protobuf Batch: {e}")))?;
    check_count(batch.events.len(), max_events)?;
    Ok(batch.events.into_iter().map(decode_proto_event).collect())
}

/// Turns one wire `Event` into an incoming event.
pub fn decode_proto_event(event: ProtoEvent) -> Decoded {
    let problem = if event.r#type.is_empty() {
        Some("missing `type`".to_owned())
    } else if event.source.is_empty() {
        Some("missing `source`".to_owned())
    } else {
        PayloadFormat::from_wire(&event.payload_format)
            .err()
            .map(|e| e.to_string())
    };
    if let Some(reason) = problem {
        return Decoded::Bad {
            raw: Bytes::from(event.encode_to_vec()),
            reason,
        };
    }
    let format = PayloadFormat::from_wire(&event.payload_format).unwrap_or_default();
    let mut attributes: Vec<(String, String)> = event.attributes.into_iter().collect();
    attributes.sort();
    Decoded::Event(IncomingEvent {
        id: Some(event.id).filter(|id| !id.is_empty()),
        event_type: event.r#type,
        version: Some(event.version).filter(|v| *v != 0),
        source: event.source,
        ts: Some(event.ts).filter(|ts| *ts != 0),
        payload: Bytes::from(event.payload),
        format,
        attributes,
    })
}

/// Refuses batches over the limit before any per-event work.
pub fn check_count(count: usize, max_events: usize) -> Result<(), IngestError> {
    if count > max_events {
        return Err(IngestError::TooManyEvents {
            count,
            limit: max_events,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events(decoded: &[Decoded]) -> Vec<&IncomingEvent> {
        decoded
            .iter()
            .filter_map(|d| match d {
                Decoded::Event(e) => Some(e),
                Decoded::Bad { .. } => None,
            })
            .collect()
    }

    #[test]
    fn array_and_object_forms_keep_payload_bytes_as_sent() {
        let body = Bytes::from_static(
            br#"[{"id":"e1","type":"playback.start","version":1,"source":"tv-1","ts":5,"payload":{"title_id":"t", "position_ms":0}}]"#,
        );
        let decoded = decode_json(&body, 10).unwrap();
        let event = events(&decoded)[0].clone();
        assert_eq!(event.id.as_deref(), Some("e1"));
        assert_eq!(event.version, Some(1));
        assert_eq!(&event.payload[..], br#"{"title_id":"t", "position_ms":0}"#);
        let body = Bytes::from_static(br#"{"events":[{"type":"a","source":"s","payload":[1,2]}]}"#);
        let decoded = decode_json(&body, 10).unwrap();
        assert_eq!(&events(&decoded)[0].payload[..], b"[1,2]");
    }

    #[test]
    fn bad_elements_are_reported_one_by_one() {
        let body = Bytes::from_static(
            br#"[{"type":"a","source":"s","payload":1}, 42, {"source":"s","payload":1}, {"type":"a","payload":1}, {"type":"a","source":"s"}]"#,
        );
        let decoded = decode_json(&body, 10).unwrap();
        let reasons: Vec<String> = decoded
            .iter()
            .filter_map(|d| match d {
                Decoded::Bad { reason, .. } => Some(reason.clone()),
                Decoded::Event(_) => None,
            })
            .collect();
        assert_eq!(reasons.len(), 4);
        assert!(reasons[0].starts_with("not an event object"), "{reasons:?}");
        assert_eq!(
            &reasons[1..],
            ["missing `type`", "missing `source`", "missing `payload`"]
        );
    }

    #[test]
    fn malformed_json_is_a_malformed_body() {
        for body in [
            &b"[{\"type\":"[..],
            b"hello",
            b"",
            b"{\"events\": 3}",
            b"\xff\xfe",
        ] {
            let error = decode_json(&Bytes::copy_from_slice(body), 10).unwrap_err();
            assert!(matches!(error, IngestError::Malformed(_)), "{error}");
        }
    }

    #[test]
    fn ndjson_lines_decode_independently() {
        let body = Bytes::from_static(b"{\"type\":\"a\",\"source\":\"s\",\"payload\":{}}\n\nnot json\n{\"type\":\"b\",\"source\":\"s\",\"payload\":2}\n");
        let decoded = decode_ndjson(&body, 10).unwrap();
        assert_eq!(decoded.len(), 3);
        assert!(matches!(&decoded[1], Decoded::Bad { raw, .. } if &raw[..] == b"not json"));
        assert_eq!(events(&decoded).len(), 2);
    }

    #[test]
    fn protobuf_batches_decode_and_truncated_ones_are_malformed() {
        let batch = Batch {
            events: vec![
                ProtoEvent {
                    id: "p1".into(),
                    r#type: "device.telemetry".into(),
                    version: 1,
                    source: "tv-9".into(),
                    ts: 5,
                    payload: vec![8, 1],
                    payload_format: "protobuf".into(),
                    ..ProtoEvent::default()
                },
                ProtoEvent {
                    r#type: "x".into(),
                    payload_format: "yaml".into(),
                    source: "s".into(),
                    ..ProtoEvent::default()
                },
            ],
        };
        let bytes = Bytes::from(batch.encode_to_vec());
        let decoded = decode_protobuf(&bytes, 10).unwrap();
        let good = events(&decoded);
        assert_eq!(good.len(), 1);
        assert_eq!(good[0].format, PayloadFormat::Protobuf);
        assert_eq!(&good[0].payload[..], &[8, 1]);
        assert!(matches!(&decoded[1], Decoded::Bad { reason, .. } if reason.contains("yaml")));
        let truncated = bytes.slice(..bytes.len() - 3);
        assert!(matches!(
            decode_protobuf(&truncated, 10),
            Err(IngestError::Malformed(_))
        ));
    }

    #[test]
    fn too_many_events_is_refused_before_decoding_them() {
        let body = Bytes::from(format!("[{}]", ["1"; 11].join(",")));
        assert!(matches!(
            decode_json(&body, 10),
            Err(IngestError::TooManyEvents {
                count: 11,
                limit: 10
            })
        ));
    }
}
