//! The records of a batch: each event's envelope as `hw.*` headers (the schema crate's names in
//! its order, then the gateway's enrichment), and dead letters with their reason. A record is
//! kept as [`RecordParts`] until it is appended, so that it can be built again (an append
//! refused as too large is retried in parts) without copying a byte: header names are static,
//! and header values are slices of buffers shared by the whole batch.

use std::fmt::Write as _;

use bytes::{Bytes, BytesMut};
use headwater_log::{Header, Record};

use super::RequestMeta;
use super::headers;
use crate::decode::IncomingEvent;

/// What every record of a batch carries, made once per batch.
pub(super) struct BatchHeaders {
    received_at_ms: i64,
    received_at: Bytes,
    tenant: Bytes,
    client_ip: Option<Bytes>,
    user_agent: Option<Bytes>,
}

impl BatchHeaders {
    pub(super) fn new(meta: &RequestMeta, received_at_ms: i64) -> Self {
        let mut arena = Arena::with_capacity(128);
        Self {
            received_at_ms,
            received_at: arena.number(received_at_ms),
            tenant: arena.text(meta.principal.tenant.as_bytes()),
            client_ip: meta.client_ip.map(|ip| arena.display(ip)),
            user_agent: meta
                .user_agent
                .as_deref()
                .map(|ua| arena.text(ua.as_bytes())),
        }
    }
}

/// The text of header values, appended to one buffer and handed out as slices of it: a value
/// costs no allocation of its own.
pub(super) struct Arena(BytesMut);

impl Arena {
    /// Room for `bytes` of values before the buffer grows.
    pub(super) fn with_capacity(bytes: usize) -> Self {
        Self(BytesMut::with_capacity(bytes))
    }

    fn text(&mut self, text: &[u8]) -> Bytes {
        self.0.extend_from_slice(text);
        self.0.split().freeze()
    }

    /// `n` in decimal (as `to_string` writes it, without its formatting machinery).
    fn number(&mut self, n: i64) -> Bytes {
        let mut digits = [0u8; 20];
        let mut at = digits.len();
        let mut rest = n.unsigned_abs();
        loop {
            at -= 1;
            digits[at] = b'0' + (rest % 10) as u8;
            rest /= 10;
            if rest == 0 {
                break;
            }
        }
        if n < 0 {
            self.0.extend_from_slice(b"-");
        }
        self.text(&digits[at..])
    }

    fn display(&mut self, value: impl std::fmt::Display) -> Bytes {
        // Writing to a `BytesMut` cannot fail.
        let _ = write!(self.0, "{value}");
        self.0.split().freeze()
    }
}

/// A header name: one of the gateway's, or an attribute's (`hw.attr.` + its key).
enum Name {
    Static(&'static str),
    Attribute(String),
}

/// A record before it is appended (see the module documentation).
pub(super) struct RecordParts {
    key: Option<Bytes>,
    value: Bytes,
    headers: Vec<(Name, Bytes)>,
    timestamp_ms: i64,
}

impl RecordParts {
    /// The record to append.
    pub(super) fn record(&self) -> Record {
        Record {
            partition: None,
            key: self.key.clone(),
            value: Some(self.value.clone()),
            headers: self
                .headers
                .iter()
                .map(|(name, value)| Header {
                    key: match name {
                        Name::Static(name) => (*name).to_owned(),
                        Name::Attribute(name) => name.clone(),
                    },
                    value: Some(value.clone()),
                })
                .collect(),
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
        let (key, headers) = envelope(arena, batch, event, id, version);
        Self {
            key: Some(key),
            value: event.payload.clone(),
            headers,
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
        let (key, headers) = envelope(arena, batch, event, id, event.version.unwrap_or(0));
        Self::dead_letter(
            batch,
            Some(key),
            headers,
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
        let headers = vec![
            (
                Name::Static(headers::RECEIVED_AT),
                batch.received_at.clone(),
            ),
            (Name::Static(headers::TENANT), batch.tenant.clone()),
        ];
        Self::dead_letter(batch, None, headers, raw, reason, max_value_bytes)
    }

    /// A dead letter: `reason` in `hw.error`, and a value over `max_value_bytes` cut to it
    /// (saying so in `hw.truncated`), so that the log takes it rather than failing the batch.
    fn dead_letter(
        batch: &BatchHeaders,
        key: Option<Bytes>,
        mut headers: Vec<(Name, Bytes)>,
        value: &Bytes,
        reason: &str,
        max_value_bytes: usize,
    ) -> Self {
        headers.push((
            Name::Static(headers::ERROR),
            Bytes::copy_from_slice(reason.as_bytes()),
        ));
        let value = if value.len() > max_value_bytes {
            let size = Bytes::from(value.len().to_string());
            headers.push((Name::Static(headers::TRUNCATED), size));
            value.slice(..max_value_bytes)
        } else {
            value.clone()
        };
        Self {
            key,
            value,
            headers,
            timestamp_ms: batch.received_at_ms,
        }
    }
}

/// The record key (the source) and the headers of an event's envelope: the schema crate's
/// `hw.*` set in `Envelope::to_headers`'s order (so the router and sinks rebuild it with
/// `Envelope::from_headers`), then the gateway's enrichment. An event without client time gets
/// `ts` = `received_at`.
fn envelope(
    arena: &mut Arena,
    batch: &BatchHeaders,
    event: &IncomingEvent,
    id: &str,
    version: u32,
) -> (Bytes, Vec<(Name, Bytes)>) {
    let source = arena.text(event.source.as_bytes());
    let ts = match event.ts {
        Some(ts) => arena.number(ts),
        None => batch.received_at.clone(),
    };
    let mut out = Vec::with_capacity(10 + event.attributes.len());
    out.extend([
        (Name::Static(headers::ID), arena.text(id.as_bytes())),
        (
            Name::Static(headers::TYPE),
            arena.text(event.event_type.as_bytes()),
        ),
        (Name::Static(headers::VERSION), arena.number(version.into())),
        (Name::Static(headers::SOURCE), source.clone()),
        (Name::Static(headers::TS), ts),
        (
            Name::Static(headers::RECEIVED_AT),
            batch.received_at.clone(),
        ),
        (Name::Static(headers::TENANT), batch.tenant.clone()),
        (
            Name::Static(headers::FORMAT),
            Bytes::from_static(event.format.as_str().as_bytes()),
        ),
    ]);
    if let Some(ip) = &batch.client_ip {
        out.push((Name::Static(headers::CLIENT_IP), ip.clone()));
    }
    if let Some(agent) = &batch.user_agent {
        out.push((Name::Static(headers::USER_AGENT), agent.clone()));
    }
    for (key, value) in &event.attributes {
        out.push((
            Name::Attribute(format!("{}{key}", headers::ATTRIBUTE_PREFIX)),
            arena.text(value.as_bytes()),
        ));
    }
    (source, out)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use headwater_schemas::{Envelope, PayloadFormat};

    use super::*;
    use crate::auth::Principal;

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
        }
    }

    fn pairs(record: &Record) -> Vec<(String, String)> {
        record
            .headers
            .iter()
            .map(|h| {
                let value = h.value.as_deref().unwrap_or_default();
                (h.key.clone(), String::from_utf8_lossy(value).into_owned())
            })
            .collect()
    }

    #[test]
    fn a_valid_record_carries_the_schema_crates_envelope_then_the_enrichment() {
        let batch = BatchHeaders::new(&meta(), 1_700_000_000_123);
        let mut arena = Arena::with_capacity(8);
        let event = event(Some(-5));
        let record = RecordParts::valid(&mut arena, &batch, &event, "e1", 3).record();
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
        let mut arena = Arena::with_capacity(4);
        for n in [0, 7, -7, 10, 1_700_000_000_123, -1, i64::MAX, i64::MIN] {
            assert_eq!(arena.number(n), n.to_string().as_bytes(), "{n}");
        }
    }

    #[test]
    fn an_event_without_client_time_gets_received_at() {
        let batch = BatchHeaders::new(&meta(), 42);
        let mut arena = Arena::with_capacity(0);
        let record = RecordParts::valid(&mut arena, &batch, &event(None), "e1", 1).record();
        let ts = pairs(&record).into_iter().find(|(k, _)| k == "hw.ts");
        assert_eq!(ts, Some(("hw.ts".to_owned(), "42".to_owned())));
    }

    #[test]
    fn dead_letters_say_why_and_are_cut_to_the_limit() {
        let batch = BatchHeaders::new(&meta(), 7);
        let mut arena = Arena::with_capacity(0);
        let invalid =
            RecordParts::invalid(&mut arena, &batch, &event(None), "e1", "bad", 3).record();
        let headers = pairs(&invalid);
        assert!(headers.contains(&("hw.version".to_owned(), "0".to_owned())));
        assert!(headers.contains(&("hw.error".to_owned(), "bad".to_owned())));
        assert!(headers.contains(&("hw.truncated".to_owned(), "7".to_owned())));
        assert_eq!(invalid.value.as_deref(), Some(&br#"{"n"#[..]));
        let raw = Bytes::from_static(b"[1,2]");
        let malformed = RecordParts::malformed(&batch, &raw, "not an event", 100).record();
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
