//! The records of a batch: each event's envelope as `hw.*` headers (the schema crate's names in
//! its order, then the gateway's enrichment), and dead letters with their reason. A record is
//! kept as [`RecordParts`] until it is appended, so that it can be built again (an append
//! refused as too large is retried in parts) without copying a byte: header names are static,
//! and header values are spans of one buffer per append ([`Arena`]) or shared by the batch.

use bytes::Bytes;
use headwater_log::batch::HeadersWriter;
use headwater_log::{EncodedHeaders, PreparedRecord};

use super::RequestMeta;
use super::headers;
use crate::decode::IncomingEvent;

/// What every record of a batch carries, made once per batch.
#[derive(Clone)]
pub(super) struct BatchHeaders {
    received_at_ms: i64,
    received_at: Bytes,
    tenant: Bytes,
    client_ip: Option<Bytes>,
    user_agent: Option<Bytes>,
}

impl BatchHeaders {
    pub(super) fn new(meta: &RequestMeta, received_at_ms: i64) -> Self {
        let text = |text: &str| Bytes::copy_from_slice(text.as_bytes());
        Self {
            received_at_ms,
            received_at: Bytes::from(received_at_ms.to_string()),
            tenant: text(&meta.principal.tenant),
            client_ip: meta.client_ip.map(|ip| Bytes::from(ip.to_string())),
            user_agent: meta.user_agent.as_deref().map(text),
        }
    }
}

/// The text of an append's header values, written one after the other into one buffer: a
/// value is a span of it ([`Value::Span`]) and costs no allocation of its own. Frozen once
/// every record of the append is planned; each record's headers are then slices of it.
pub(super) struct Arena(Vec<u8>);

impl Arena {
    /// Room for `bytes` of values before the buffer grows.
    pub(super) fn with_capacity(bytes: usize) -> Self {
        Self(Vec::with_capacity(bytes))
    }

    /// The values written, to resolve the spans of [`RecordParts::record`] in.
    pub(super) fn freeze(self) -> Bytes {
        Bytes::from(self.0)
    }

    fn text(&mut self, text: &[u8]) -> Span {
        let start = self.0.len();
        self.0.extend_from_slice(text);
        Span(start, self.0.len())
    }

    /// `n` in decimal, as `to_string` writes it (`itoa`: two digits a step, no formatter).
    fn number(&mut self, n: i64) -> Span {
        self.text(itoa::Buffer::new().format(n).as_bytes())
    }
}

/// A header value written into the append's [`Arena`]: its span there.
#[derive(Clone, Copy)]
struct Span(usize, usize);

impl Span {
    fn resolve(self, arena: &Bytes) -> Bytes {
        arena.slice(self.0..self.1)
    }

    fn of(self, arena: &[u8]) -> &[u8] {
        &arena[self.0..self.1]
    }
}

/// An event's envelope as a record keeps it until it is appended: spans of the arena, no
/// header list of its own (built only as the record is, in [`RecordParts::record`]).
struct EventHeaders {
    id: Span,
    event_type: Span,
    version: Span,
    /// The client's time; `None`: `received_at`.
    ts: Option<Span>,
    format: &'static str,
    /// `hw.attr.` + key, and the value.
    attributes: Vec<(String, Span)>,
}

/// A dead letter's reason, and the value's size when it was cut (`hw.error`, `hw.truncated`).
struct DeadLetter {
    reason: Bytes,
    truncated: Option<Bytes>,
}

/// A record before it is appended (see the module documentation).
pub(super) struct RecordParts {
    /// The source; `None` for an element that is not an event.
    key: Option<Span>,
    value: Bytes,
    /// `None` for an element that is not an event (its headers: `received_at`, `tenant`).
    event: Option<EventHeaders>,
    dead_letter: Option<Box<DeadLetter>>,
    timestamp_ms: i64,
}

impl RecordParts {
    /// Writes the record's headers and ends it in `out`; `arena` is the append's [`Arena`],
    /// frozen, and `batch` what every record of the batch carries. The headers: the schema
    /// crate's `hw.*` set in `Envelope::to_headers`'s order (so the router and sinks rebuild it
    /// with `Envelope::from_headers`), then the gateway's enrichment, the attributes, and a dead
    /// letter's reason.
    pub(super) fn write_headers(
        &self,
        arena: &[u8],
        batch: &BatchHeaders,
        out: &mut HeadersWriter,
    ) {
        let mut put = |name: &str, value: &[u8]| out.header(name, Some(value));
        match (&self.event, self.key) {
            (Some(event), Some(source)) => {
                put(headers::ID, event.id.of(arena));
                put(headers::TYPE, event.event_type.of(arena));
                put(headers::VERSION, event.version.of(arena));
                put(headers::SOURCE, source.of(arena));
                put(
                    headers::TS,
                    event.ts.map_or(&batch.received_at[..], |ts| ts.of(arena)),
                );
                put(headers::RECEIVED_AT, &batch.received_at);
                put(headers::TENANT, &batch.tenant);
                put(headers::FORMAT, event.format.as_bytes());
                if let Some(ip) = &batch.client_ip {
                    put(headers::CLIENT_IP, ip);
                }
                if let Some(agent) = &batch.user_agent {
                    put(headers::USER_AGENT, agent);
                }
                for (name, value) in &event.attributes {
                    put(name, value.of(arena));
                }
            }
            _ => {
                put(headers::RECEIVED_AT, &batch.received_at);
                put(headers::TENANT, &batch.tenant);
            }
        }
        if let Some(dead) = &self.dead_letter {
            put(headers::ERROR, &dead.reason);
            if let Some(size) = &dead.truncated {
                put(headers::TRUNCATED, size);
            }
        }
        out.end_record();
    }

    /// The record to append, with the `headers` [`write_headers`](Self::write_headers) wrote
    /// for it.
    pub(super) fn prepared(&self, arena: &Bytes, headers: EncodedHeaders) -> PreparedRecord {
        PreparedRecord {
            key: self.key.map(|key| key.resolve(arena)),
            value: Some(self.value.clone()),
            headers,
            timestamp_ms: self.timestamp_ms,
        }
    }

    /// A valid event's record: key = source, value = the payload as received, the envelope
    /// in the headers.
    pub(super) fn valid(
        arena: &mut Arena,
        batch: &BatchHeaders,
        event: &IncomingEvent,
        id: &str,
        version: u32,
    ) -> Self {
        let (key, headers) = envelope(arena, event, id, version);
        Self {
            key: Some(key),
            value: event.payload.clone(),
            event: Some(headers),
            dead_letter: None,
            timestamp_ms: batch.received_at_ms,
        }
    }

    /// An event that failed validation, for the dead-letter topic: its envelope (version 0
    /// when the client gave none) and the reason.
    pub(super) fn invalid(
        arena: &mut Arena,
        batch: &BatchHeaders,
        event: &IncomingEvent,
        id: &str,
        reason: &str,
        max_value_bytes: usize,
    ) -> Self {
        let (key, headers) = envelope(arena, event, id, event.version.unwrap_or(0));
        Self::dead_letter(
            batch,
            Some(key),
            Some(headers),
            &event.payload,
            reason,
            max_value_bytes,
        )
    }

    /// An element that is not an event, as received, for the dead-letter topic.
    pub(super) fn malformed(
        batch: &BatchHeaders,
        raw: &Bytes,
        reason: &str,
        max_value_bytes: usize,
    ) -> Self {
        Self::dead_letter(batch, None, None, raw, reason, max_value_bytes)
    }

    /// A dead letter: `reason` in `hw.error`, and a value over `max_value_bytes` cut to it
    /// (saying so in `hw.truncated`), so that the log takes it rather than failing the batch.
    fn dead_letter(
        batch: &BatchHeaders,
        key: Option<Span>,
        event: Option<EventHeaders>,
        value: &Bytes,
        reason: &str,
        max_value_bytes: usize,
    ) -> Self {
        let (value, truncated) = if value.len() > max_value_bytes {
            let size = Bytes::from(value.len().to_string());
            (value.slice(..max_value_bytes), Some(size))
        } else {
            (value.clone(), None)
        };
        Self {
            key,
            value,
            event,
            dead_letter: Some(Box::new(DeadLetter {
                reason: Bytes::copy_from_slice(reason.as_bytes()),
                truncated,
            })),
            timestamp_ms: batch.received_at_ms,
        }
    }
}

/// The record key (the source) and the envelope of an event, written into the arena. An event
/// without client time gets `ts` = `received_at`.
fn envelope(
    arena: &mut Arena,
    event: &IncomingEvent,
    id: &str,
    version: u32,
) -> (Span, EventHeaders) {
    let source = arena.text(event.source.as_bytes());
    let headers = EventHeaders {
        id: arena.text(id.as_bytes()),
        event_type: arena.text(event.event_type.as_bytes()),
        version: arena.number(version.into()),
        ts: event.ts.map(|ts| arena.number(ts)),
        format: event.format.as_str(),
        attributes: event
            .attributes
            .iter()
            .map(|(key, value)| {
                (
                    format!("{}{key}", headers::ATTRIBUTE_PREFIX),
                    arena.text(value.as_bytes()),
                )
            })
            .collect(),
    };
    (source, headers)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use headwater_schemas::{Envelope, PayloadFormat};

    use headwater_log::Record;

    use super::*;
    use crate::auth::Principal;

    /// The record as a log that takes header lists sees it: headers written, then decoded.
    fn record(parts: &RecordParts, arena: &Bytes, batch: &BatchHeaders) -> Record {
        let mut writer = HeadersWriter::default();
        parts.write_headers(arena, batch, &mut writer);
        let headers = writer.freeze().records().next().unwrap();
        parts.prepared(arena, headers).into_record().unwrap()
    }

    fn meta() -> RequestMeta {
        RequestMeta {
            principal: Principal {
                tenant: Arc::from("acme"),
                key_index: 0,
            },
            client_ip: Some("10.1.2.3".parse().unwrap()),
            user_agent: Some("tv/1.0".to_owned()),
        }
    }

    fn event(ts: Option<i64>) -> IncomingEvent {
        IncomingEvent {
            id: Some("e1".to_owned()),
            event_type: "playback.start".to_owned(),
            version: None,
            source: "tv-1".to_owned(),
            ts,
            payload: Bytes::from_static(br#"{"n":1}"#),
            format: PayloadFormat::Json,
            attributes: vec![("k".to_owned(), "v".to_owned())],
            verdict: None,
        }
    }

    fn pairs(record: &Record) -> Vec<(String, String)> {
        record
            .headers
            .iter()
            .map(|h| {
                let value = h.value.as_deref().unwrap_or_default();
                (
                    h.key.to_string(),
                    String::from_utf8_lossy(value).into_owned(),
                )
            })
            .collect()
    }

    #[test]
    fn a_valid_record_carries_the_schema_crates_envelope_then_the_enrichment() {
        let batch = BatchHeaders::new(&meta(), 1_700_000_000_123);
        let mut arena = Arena::with_capacity(8);
        let event = event(Some(-5));
        let parts = RecordParts::valid(&mut arena, &batch, &event, "e1", 3);
        let record = record(&parts, &arena.freeze(), &batch);
        let envelope = Envelope {
            id: "e1".to_owned(),
            event_type: "playback.start".to_owned(),
            version: 3,
            source: "tv-1".to_owned(),
            ts: -5,
            received_at: 1_700_000_000_123,
            tenant: "acme".to_owned(),
            payload: Bytes::new(),
            payload_format: PayloadFormat::Json,
        };
        let mut expected: Vec<(String, String)> = envelope
            .to_headers()
            .into_iter()
            .map(|(k, v)| (k, String::from_utf8_lossy(&v).into_owned()))
            .collect();
        expected.extend([
            ("hw.client_ip".to_owned(), "10.1.2.3".to_owned()),
            ("hw.user_agent".to_owned(), "tv/1.0".to_owned()),
            ("hw.attr.k".to_owned(), "v".to_owned()),
        ]);
        assert_eq!(pairs(&record), expected);
        assert_eq!(record.key.as_deref(), Some(&b"tv-1"[..]));
        assert_eq!(record.value, Some(event.payload.clone()));
        assert_eq!(record.timestamp_ms, 1_700_000_000_123);
    }

    #[test]
    fn numbers_are_written_as_to_string_writes_them() {
        let numbers = [0, 7, -7, 10, 1_700_000_000_123, -1, i64::MAX, i64::MIN];
        let mut arena = Arena::with_capacity(4);
        let written: Vec<Span> = numbers.iter().map(|n| arena.number(*n)).collect();
        let arena = arena.freeze();
        for (n, value) in numbers.iter().zip(&written) {
            assert_eq!(value.resolve(&arena), n.to_string().as_bytes(), "{n}");
        }
    }

    #[test]
    fn an_event_without_client_time_gets_received_at() {
        let batch = BatchHeaders::new(&meta(), 42);
        let mut arena = Arena::with_capacity(0);
        let parts = RecordParts::valid(&mut arena, &batch, &event(None), "e1", 1);
        let record = record(&parts, &arena.freeze(), &batch);
        let ts = pairs(&record).into_iter().find(|(k, _)| k == "hw.ts");
        assert_eq!(ts, Some(("hw.ts".to_owned(), "42".to_owned())));
    }

    #[test]
    fn dead_letters_say_why_and_are_cut_to_the_limit() {
        let batch = BatchHeaders::new(&meta(), 7);
        let mut arena = Arena::with_capacity(0);
        let invalid = RecordParts::invalid(&mut arena, &batch, &event(None), "e1", "bad", 3);
        let invalid = record(&invalid, &arena.freeze(), &batch);
        let headers = pairs(&invalid);
        assert!(headers.contains(&("hw.version".to_owned(), "0".to_owned())));
        assert!(headers.contains(&("hw.error".to_owned(), "bad".to_owned())));
        assert!(headers.contains(&("hw.truncated".to_owned(), "7".to_owned())));
        assert_eq!(invalid.value.as_deref(), Some(&br#"{"n"#[..]));
        let raw = Bytes::from_static(b"[1,2]");
        let malformed = RecordParts::malformed(&batch, &raw, "not an event", 100);
        let malformed = record(&malformed, &Bytes::new(), &batch);
        assert_eq!(
            pairs(&malformed),
            [
                ("hw.received_at".to_owned(), "7".to_owned()),
                ("hw.tenant".to_owned(), "acme".to_owned()),
                ("hw.error".to_owned(), "not an event".to_owned()),
            ]
        );
        assert_eq!(malformed.key, None);
        assert_eq!(malformed.value, Some(raw));
    }
}
