//! Decoding request bodies into events: a JSON array, `{"events":[...]}`, NDJSON, or a
//! protobuf `Batch`. Payload bytes are sliced from the body as received, never re-encoded.
//!
//! Elements are counted before (protobuf, NDJSON) or while (JSON) they are materialised, so a
//! batch over `max_events` is refused having built at most `max_events` of them: a body of
//! millions of tiny elements costs its own size, not a reference or a struct per element.

pub mod wire;

use std::fmt;

use bytes::Bytes;
use compact_str::CompactString;
use headwater_schemas::document::{self, JsonValue};
use prost::Message;
use serde::Deserialize;
use serde::de::{DeserializeSeed, Deserializer as _, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;

use crate::error::IngestError;
use crate::validate::{Invalid, Validate, Verdict};

/// Most attributes one protobuf event may carry (entries of its `attributes` map as sent, each
/// becoming an `hw.attr.*` record header). An event with more is rejected before they are
/// decoded. Fixed: the decoder enforces it before any configuration is at hand.
pub const MAX_ATTRIBUTES: usize = 64;
/// Most bytes the attribute keys and values of one event may take together. With the bounded
/// `id`, `type` and `source` (`gateway.limits`) the envelope headers of a record stay within
/// the 16 KiB the log keeps for them next to the largest payload.
pub const MAX_ATTRIBUTE_BYTES: usize = 8 * 1024;
/// Longest reason quoted from a parser for a malformed element.
const MAX_REASON_BYTES: usize = 512;

pub use headwater_schemas::PayloadFormat;

/// An event as the client sent it, before validation and enrichment. Its id, type and source
/// are `CompactString`s: up to 24 bytes each (most types and sources, short ids) are held in
/// place, not allocated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IncomingEvent {
    /// Client-given id, if any.
    pub id: Option<CompactString>,
    /// Event type.
    pub event_type: CompactString,
    /// Schema version; `None` means the latest.
    pub version: Option<u32>,
    /// Device or service id: the record key.
    pub source: CompactString,
    /// Client time in milliseconds since the epoch.
    pub ts: Option<i64>,
    /// Payload bytes as received.
    pub payload: Bytes,
    /// Payload encoding.
    pub format: PayloadFormat,
    /// Extra string attributes (OTLP resource and record attributes, protobuf `attributes`).
    pub attributes: Vec<(String, String)>,
    /// The validator's answer, if decoding already has it: a small JSON body is parsed once
    /// and each payload validated on that parse ([`decode_json_validated`]). `None`: not yet
    /// validated.
    pub verdict: Option<Result<Verdict, Invalid>>,
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

/// The elements of a JSON array as sent: the first `max` of them, and how many there were.
struct Elements<'a> {
    kept: Vec<&'a RawValue>,
    count: usize,
}

/// Reads a JSON array keeping at most `max` elements; the rest are only counted (skipped by
/// [`IgnoredAny`], which allocates nothing), so the answer can say how many were sent.
#[derive(Clone, Copy)]
struct CountedArray {
    max: usize,
}

impl<'de> DeserializeSeed<'de> for CountedArray {
    type Value = Elements<'de>;

    fn deserialize<D: serde::Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for CountedArray {
    type Value = Elements<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array of events")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut kept = Vec::new();
        while kept.len() < self.max {
            match seq.next_element::<&'de RawValue>()? {
                Some(element) => kept.push(element),
                None => {
                    let count = kept.len();
                    return Ok(Elements { kept, count });
                }
            }
        }
        let mut count = kept.len();
        while seq.next_element::<IgnoredAny>()?.is_some() {
            count += 1;
        }
        Ok(Elements { kept, count })
    }
}

/// The one pass over a JSON array when every element is a well-formed event: each is decoded
/// as it is read, nothing is copied and no element is read twice. An element that is not an
/// event, or more than `max` of them, fails the pass, and the body goes to the per-element
/// path ([`CountedArray`], then [`decode_one`]), which says which and why.
#[derive(Clone, Copy)]
struct EventArray<'b> {
    max: usize,
    body: &'b Bytes,
}

impl<'de> DeserializeSeed<'de> for EventArray<'_> {
    type Value = Vec<Decoded>;

    fn deserialize<D: serde::Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for EventArray<'_> {
    type Value = Vec<Decoded>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array of events")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        // About 200 bytes an event: room for all of them, within the limit.
        let mut events = Vec::with_capacity((self.body.len() / 128).clamp(1, self.max.max(1)));
        while let Some(event) = seq.next_element::<JsonEvent<'de>>()? {
            if events.len() == self.max {
                return Err(serde::de::Error::custom("over the limit"));
            }
            match complete(self.body, event) {
                Ok(event) => events.push(Decoded::Event(event)),
                Err(reason) => return Err(serde::de::Error::custom(reason)),
            }
        }
        Ok(events)
    }
}

/// Reads `{"events": [...]}` (other keys ignored) through the array's seed.
struct EventsObject<S>(S);

impl<'de, S: DeserializeSeed<'de> + Copy> Visitor<'de> for EventsObject<S> {
    type Value = S::Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object with an `events` array")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut events = None;
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            if key != "events" {
                map.next_value::<IgnoredAny>()?;
            } else if events.is_some() {
                return Err(serde::de::Error::duplicate_field("events"));
            } else {
                events = Some(map.next_value_seed(self.0)?);
            }
        }
        events.ok_or_else(|| serde::de::Error::missing_field("events"))
    }
}

/// Decodes a JSON array of events or an object `{"events": [...]}`; more than `max_events`
/// elements are refused having kept only `max_events` of them. A body of well-formed events
/// is decoded in one pass ([`EventArray`]); any other goes element by element.
pub fn decode_json(body: &Bytes, max_events: usize) -> Result<Vec<Decoded>, IngestError> {
    let text = std::str::from_utf8(body)
        .map_err(|e| IngestError::Malformed(format!("body is not UTF-8: {e}")))?;
    let one_pass = EventArray {
        max: max_events,
        body,
    };
    if let Ok(events) = read_array(text, one_pass) {
        return Ok(events);
    }
    let elements = read_array(text, CountedArray { max: max_events })?;
    check_count(elements.count, max_events)?;
    Ok(elements
        .kept
        .into_iter()
        .map(|raw| decode_one(body, raw.get()))
        .collect())
}

/// [`decode_json`], each event's payload validated as the body is read: a body of up to
/// [`INLINE_DECODE_BYTES`] whose elements are all plainly events is parsed once by simd-json
/// ([`document::with_document`]), each event's fields read from that parse, its payload sliced
/// from the body as sent and validated on the same parse ([`Validate::validate_parsed`]), so
/// no payload is parsed twice. Any other body (larger, or with an element that is not plainly
/// an event) is decoded by [`decode_json`] and validated later, event by event, with the same
/// answers.
pub fn decode_json_validated(
    body: &Bytes,
    max_events: usize,
    validator: &dyn Validate,
) -> Result<Vec<Decoded>, IngestError> {
    if body.len() <= INLINE_DECODE_BYTES
        && let Some(decoded) = decode_document(body, max_events, validator)
    {
        return Ok(decoded);
    }
    decode_json(body, max_events)
}

/// The events of a body parsed once, validated; `None` when the body is not an array (or
/// `{"events": [...]}`) of at most `max` plain events, for [`decode_json`] to decide and word.
fn decode_document(body: &Bytes, max: usize, validator: &dyn Validate) -> Option<Vec<Decoded>> {
    document::with_document(body, |root| {
        let elements = match root.elements() {
            Some(elements) => elements,
            None => events_member(root)?,
        };
        if elements.len() > max {
            return None;
        }
        let mut events = Vec::with_capacity(elements.len());
        let mut payloads = Vec::with_capacity(elements.len());
        // Every element is read before any is validated: one that is not an event sends the
        // body the other way, and the validations would have been for nothing. Each event is
        // written once, where it stays, and its verdict set in place.
        for element in elements {
            let (event, payload) = plain_event(body, element)?;
            events.push(Decoded::Event(event));
            payloads.push(payload);
        }
        for (decoded, payload) in events.iter_mut().zip(payloads) {
            if let Decoded::Event(event) = decoded {
                event.verdict = Some(validator.validate_parsed(event, payload));
            }
        }
        Some(events)
    })
    .flatten()
}

/// The elements of `{"events": [...]}`, its other members ignored; `None` unless `events` is
/// there once and an array.
fn events_member(root: JsonValue<'_>) -> Option<document::Elements<'_>> {
    let mut events = None;
    for (name, value) in root.members()? {
        if name == "events" {
            if events.is_some() {
                return None;
            }
            events = Some(value.elements()?);
        }
    }
    events
}

/// An element that is plainly an event, as [`JsonEvent`] and [`complete`] read it (each field
/// at most once, of its type or `null`, other members ignored; `type`, `source` and `payload`
/// present), and its payload; `None` for anything else.
fn plain_event<'a>(body: &Bytes, element: JsonValue<'a>) -> Option<(IncomingEvent, JsonValue<'a>)> {
    /// What `read` found, `null` as `None`, anything else as not plainly an event.
    fn or_null<T>(read: Option<T>, value: &JsonValue<'_>) -> Option<Option<T>> {
        match read {
            Some(read) => Some(Some(read)),
            None => value.is_null().then_some(None),
        }
    }
    let (mut id, mut event_type, mut version, mut source, mut ts, mut payload) =
        (None, None, None, None, None, None);
    let mut seen = 0u8;
    for (name, value) in element.members()? {
        let field = match name {
            "id" => 0,
            "type" => 1,
            "version" => 2,
            "source" => 3,
            "ts" => 4,
            "payload" => 5,
            _ => continue,
        };
        if seen & (1 << field) != 0 {
            return None;
        }
        seen |= 1 << field;
        match field {
            0 => id = or_null(value.as_str().map(CompactString::from), &value)?,
            1 => event_type = or_null(value.as_str().map(CompactString::from), &value)?,
            2 => {
                let read = value.as_u64().and_then(|n| u32::try_from(n).ok());
                version = or_null(read, &value)?;
            }
            3 => source = or_null(value.as_str().map(CompactString::from), &value)?,
            4 => ts = or_null(value.as_i64(), &value)?,
            _ => payload = (!value.is_null()).then_some(value),
        }
    }
    let event_type = event_type.filter(|t| !t.is_empty())?;
    let source = source.filter(|s| !s.is_empty())?;
    let payload = payload?;
    let event = IncomingEvent {
        id: id.filter(|id| !id.is_empty()),
        event_type,
        version: version.filter(|v| *v != 0),
        source,
        ts,
        payload: body.slice_ref(payload.raw()),
        format: PayloadFormat::Json,
        attributes: Vec::new(),
        verdict: None,
    };
    Some((event, payload))
}

/// Reads a JSON array, or an object `{"events": [...]}`, through `seed`.
fn read_array<'de, S: DeserializeSeed<'de> + Copy>(
    text: &'de str,
    seed: S,
) -> Result<S::Value, IngestError> {
    let mut deserializer = serde_json::Deserializer::from_str(text);
    match text.trim_start().as_bytes().first() {
        Some(b'[') => seed
            .deserialize(&mut deserializer)
            .and_then(|elements| deserializer.end().map(|()| elements))
            .map_err(|e| IngestError::Malformed(format!("JSON: {e}"))),
        Some(b'{') => deserializer
            .deserialize_map(EventsObject(seed))
            .and_then(|elements| deserializer.end().map(|()| elements))
            .map_err(|e| {
                IngestError::Malformed(format!("JSON: expected {{\"events\": [...]}}: {e}"))
            }),
        _ => Err(IngestError::Malformed(
            "JSON: expected an array of events or {\"events\": [...]}".to_owned(),
        )),
    }
}

/// Decodes newline-delimited JSON, one event a line; blank lines are skipped, a malformed
/// line is one bad event. The lines are counted before any is decoded.
pub fn decode_ndjson(body: &Bytes, max_events: usize) -> Result<Vec<Decoded>, IngestError> {
    let text = std::str::from_utf8(body)
        .map_err(|e| IngestError::Malformed(format!("body is not UTF-8: {e}")))?;
    let lines = || text.split('\n').map(str::trim).filter(|l| !l.is_empty());
    check_count(lines().count(), max_events)?;
    Ok(lines().map(|line| decode_one(body, line)).collect())
}

/// Decodes one JSON event whose text lies inside `body`.
fn decode_one(body: &Bytes, text: &str) -> Decoded {
    let raw = body.slice_ref(text.as_bytes());
    let event: JsonEvent<'_> = match serde_json::from_str(text) {
        Ok(event) => event,
        Err(error) => {
            return Decoded::Bad {
                raw,
                reason: clipped(format!("not an event object: {error}")),
            };
        }
    };
    match complete(body, event) {
        Ok(event) => Decoded::Event(event),
        Err(reason) => bad(raw, reason),
    }
}

/// The incoming event of a JSON event object read from `body`, or why it is not one.
fn complete(body: &Bytes, event: JsonEvent<'_>) -> Result<IncomingEvent, &'static str> {
    let Some(event_type) = event.event_type.filter(|t| !t.is_empty()) else {
        return Err("missing `type`");
    };
    let Some(source) = event.source.filter(|s| !s.is_empty()) else {
        return Err("missing `source`");
    };
    let Some(payload) = event.payload else {
        return Err("missing `payload`");
    };
    Ok(IncomingEvent {
        id: event
            .id
            .filter(|id| !id.is_empty())
            .map(CompactString::from),
        event_type: event_type.into(),
        version: event.version.filter(|v| *v != 0),
        source: source.into(),
        ts: event.ts,
        payload: body.slice_ref(payload.get().as_bytes()),
        format: PayloadFormat::Json,
        attributes: Vec::new(),
        verdict: None,
    })
}

fn bad(raw: Bytes, reason: &str) -> Decoded {
    Decoded::Bad {
        raw,
        reason: reason.to_owned(),
    }
}

/// `reason` cut to [`MAX_REASON_BYTES`]: a parser may quote what it was sent.
fn clipped(mut reason: String) -> String {
    if reason.len() > MAX_REASON_BYTES {
        let mut cut = MAX_REASON_BYTES;
        while !reason.is_char_boundary(cut) {
            cut -= 1;
        }
        reason.truncate(cut);
        reason.push('…');
    }
    reason
}

/// Decodes a protobuf `headwater.v1.Batch`. The batch is walked first ([`wire::Fields`]):
/// more than `max_events` events are refused before any is decoded. Each event is then decoded
/// from its own bytes; one that is not an `Event`, has more than [`MAX_ATTRIBUTES`]
/// attributes, or lacks type, source or a known `payload_format` is one bad event, kept as
/// received for the dead-letter topic.
pub fn decode_protobuf(body: &Bytes, max_events: usize) -> Result<Vec<Decoded>, IngestError> {
    let malformed = |reason: String| IngestError::Malformed(format!("protobuf Batch: {reason}"));
    let mut events = Vec::new();
    let mut count = 0usize;
    for field in wire::Fields::new(body) {
        match field.map_err(|e| malformed(e.to_string()))? {
            (1, wire::Value::Len(event)) => {
                count += 1;
                if count <= max_events {
                    events.push(body.slice_ref(event));
                }
            }
            (1, _) => return Err(malformed("`events` is not length-delimited".to_owned())),
            // Unknown fields are skipped, as prost skips them.
            _ => {}
        }
    }
    check_count(count, max_events)?;
    Ok(events.into_iter().map(decode_event_bytes).collect())
}

/// Decodes one `Event` from its bytes. A walk of its fields ([`wire::Fields`]) counts its
/// attributes before any is decoded and reads its strings in place, each checked as UTF-8 once
/// (every occurrence, as prost checks each string it merges; the last one given is kept);
/// prost then decodes the rest ([`NumbersAndBytes`]).
fn decode_event_bytes(raw: Bytes) -> Decoded {
    let not_an_event = |raw: &Bytes, reason: String| bad(raw.clone(), &reason);
    let mut attributes = 0usize;
    let mut strings = Strings::default();
    for field in wire::Fields::new(&raw) {
        match field {
            Ok((9, _)) => attributes += 1,
            Ok((tag @ (1 | 2 | 4 | 6 | 8), value)) => {
                let name = Strings::name(tag);
                let wire::Value::Len(bytes) = value else {
                    let reason = format!("not a protobuf Event: `{name}` is not length-delimited");
                    return not_an_event(&raw, reason);
                };
                let Ok(text) = std::str::from_utf8(bytes) else {
                    let reason = format!("not a protobuf Event: `{name}` is not UTF-8");
                    return not_an_event(&raw, reason);
                };
                strings.set(tag, text);
            }
            Ok(_) => {}
            Err(error) => return not_an_event(&raw, format!("not a protobuf Event: {error}")),
        }
    }
    if attributes > MAX_ATTRIBUTES {
        let reason = format!("{attributes} attributes are over the limit of {MAX_ATTRIBUTES}");
        return not_an_event(&raw, reason);
    }
    match NumbersAndBytes::decode(raw.clone()) {
        Ok(rest) => from_proto(&strings, rest, &raw),
        Err(error) => not_an_event(&raw, clipped(format!("not a protobuf Event: {error}"))),
    }
}

/// The strings of a `headwater.v1.Event`, as slices of its bytes.
#[derive(Default)]
struct Strings<'a> {
    id: &'a str,
    r#type: &'a str,
    source: &'a str,
    payload_format: &'a str,
}

impl<'a> Strings<'a> {
    /// The name of the string field at `tag`.
    fn name(tag: u32) -> &'static str {
        match tag {
            1 => "id",
            2 => "type",
            4 => "source",
            6 => "tenant",
            _ => "payload_format",
        }
    }

    /// Keeps `text` as the string field at `tag` (the tenant is the gateway's to set).
    fn set(&mut self, tag: u32, text: &'a str) {
        match tag {
            1 => self.id = text,
            2 => self.r#type = text,
            4 => self.source = text,
            8 => self.payload_format = text,
            _ => {}
        }
    }
}

/// The fields of a `headwater.v1.Event` that are not strings, as prost decodes them: the same
/// tags and types as `ingest.proto`'s `Event` (the generated `proto::v1::Event`, which would
/// allocate a `String` for each string), its strings skipped as unknown fields here, read in
/// place by [`decode_event_bytes`]'s walk instead. The decoder's tests hold the two ways to
/// the generated type's answers.
#[derive(prost::Message)]
struct NumbersAndBytes {
    #[prost(uint32, tag = "3")]
    version: u32,
    #[prost(int64, tag = "5")]
    ts: i64,
    #[prost(bytes = "bytes", tag = "7")]
    payload: Bytes,
    #[prost(map = "string, string", tag = "9")]
    attributes: std::collections::HashMap<String, String>,
}

/// One wire `Event` as an incoming event; `raw` is its bytes as received.
fn from_proto(strings: &Strings<'_>, event: NumbersAndBytes, raw: &Bytes) -> Decoded {
    let attributes = event.attributes;
    let attribute_bytes: usize = attributes.iter().map(|(k, v)| k.len() + v.len()).sum();
    let format = PayloadFormat::from_wire(strings.payload_format);
    let problem = if strings.r#type.is_empty() {
        Some("missing `type`".to_owned())
    } else if strings.source.is_empty() {
        Some("missing `source`".to_owned())
    } else if attributes.len() > MAX_ATTRIBUTES {
        Some(format!(
            "{} attributes are over the limit of {MAX_ATTRIBUTES}",
            attributes.len()
        ))
    } else if attribute_bytes > MAX_ATTRIBUTE_BYTES {
        Some(format!(
            "attributes of {attribute_bytes} bytes are over the limit of {MAX_ATTRIBUTE_BYTES} bytes"
        ))
    } else {
        format.as_ref().err().map(|e| clipped(e.to_string()))
    };
    if let Some(reason) = problem {
        return Decoded::Bad {
            raw: raw.clone(),
            reason,
        };
    }
    let mut attributes: Vec<(String, String)> = attributes.into_iter().collect();
    attributes.sort();
    Decoded::Event(IncomingEvent {
        id: Some(strings.id)
            .filter(|id| !id.is_empty())
            .map(CompactString::from),
        event_type: strings.r#type.into(),
        version: Some(event.version).filter(|v| *v != 0),
        source: strings.source.into(),
        ts: Some(event.ts).filter(|ts| *ts != 0),
        payload: event.payload,
        format: format.unwrap_or_default(),
        attributes,
        verdict: None,
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

/// Bodies up to this size are decoded on the request's own task.
pub const INLINE_DECODE_BYTES: usize = 64 * 1024;

/// Runs `decode` of a body of `len` bytes: a large body (over [`INLINE_DECODE_BYTES`]) is CPU
/// work for milliseconds, so it goes off the async workers ([`off_workers`]) and other requests
/// (and this one's timeout) keep running; a small one decodes faster than a hop to the pool.
pub async fn decode_sized<T: Send + 'static>(
    len: usize,
    decode: impl FnOnce() -> Result<T, IngestError> + Send + 'static,
) -> Result<T, IngestError> {
    if len > INLINE_DECODE_BYTES {
        off_workers(decode).await
    } else {
        decode()
    }
}

/// Runs `decode` on tokio's blocking pool and waits for it: decoding a large body is CPU work
/// that must not hold an async worker, so other requests (and this one's timeout) keep running.
/// A panic in `decode` is resumed here, as if it had run inline.
pub async fn off_workers<T: Send + 'static>(
    decode: impl FnOnce() -> Result<T, IngestError> + Send + 'static,
) -> Result<T, IngestError> {
    match tokio::task::spawn_blocking(decode).await {
        Ok(result) => result,
        Err(error) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
        // Only a runtime shutting down cancels a blocking task.
        Err(_) => Err(IngestError::Overloaded),
    }
}

#[cfg(test)]
mod document_tests;
#[cfg(test)]
mod tests;
