//! The records of a batch: each event's envelope as `hw.*` headers (the schema crate's names in
//! its order, then the gateway's enrichment), and dead letters with their reason. The headers
//! are encoded as the batch is planned, each record's once, into one buffer per topic append
//! ([`HeadersWriter`]), and the log copies them into its batch as they are
//! ([`headwater_log::Log::append_prepared`]); a record is then kept as a [`PreparedRecord`]
//! (its key a slice of that buffer, its value the payload shared), which an append refused as
//! too large builds again in parts without copying a byte.

use std::net::IpAddr;
use std::sync::OnceLock;

use bytes::Bytes;
use headwater_log::batch::{FrozenHeaders, HeadersWriter};
use headwater_log::{EncodedHeaders, PreparedRecord};
use headwater_schemas::PayloadFormat;

use super::RequestMeta;
use super::headers;
use crate::decode::IncomingEvent;

/// What every record of a batch carries, made once per batch (the tail of each format when a
/// record of that format first needs it: a batch is mostly of one).
pub(super) struct BatchHeaders<'a> {
    meta: &'a RequestMeta,
    received_at_ms: i64,
    received_at: String,
    /// An event's headers from `received_at` on, encoded once: `received_at`, `tenant`, the
    /// format (one block for each), the client's address and user agent.
    json_tail: OnceLock<EncodedHeaders>,
    protobuf_tail: OnceLock<EncodedHeaders>,
}

impl<'a> BatchHeaders<'a> {
    pub(super) fn new(meta: &'a RequestMeta, received_at_ms: i64) -> Self {
        Self {
            meta,
            received_at_ms,
            received_at: received_at_ms.to_string(),
            json_tail: OnceLock::new(),
            protobuf_tail: OnceLock::new(),
        }
    }

    /// The headers of a record of `format` from `received_at` on.
    fn tail(&self, format: PayloadFormat) -> &EncodedHeaders {
        let cell = match format {
            PayloadFormat::Json => &self.json_tail,
            PayloadFormat::Protobuf => &self.protobuf_tail,
        };
        cell.get_or_init(|| {
            // Five headers: about 100 bytes, and the agent.
            let agent = self.meta.user_agent.as_ref().map_or(0, String::len);
            let mut out = HeadersWriter::with_capacity(1, 128 + agent);
            out.header(headers::RECEIVED_AT, Some(self.received_at.as_bytes()));
            out.header(headers::TENANT, Some(self.meta.principal.tenant.as_bytes()));
            out.header(headers::FORMAT, Some(format.as_str().as_bytes()));
            if let Some(ip) = self.meta.client_ip {
                out.header(headers::CLIENT_IP, Some(ip_text(ip).as_bytes()));
            }
            if let Some(agent) = &self.meta.user_agent {
                out.header(headers::USER_AGENT, Some(agent.as_bytes()));
            }
            out.end_record();
            out.freeze().records().next().unwrap_or_default()
        })
    }
}

/// `ip` as `Display` writes it, on the stack: an IPv4 address by its four numbers, with a
/// tenth of the instructions `Display` takes (it formats through padding support); an IPv6 one
/// by `Display`.
fn ip_text(ip: IpAddr) -> IpText {
    let mut text = IpText {
        bytes: [0; IpText::MAX],
        len: 0,
    };
    match ip {
        IpAddr::V4(v4) => {
            let mut number = itoa::Buffer::new();
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    text.push(b".");
                }
                text.push(number.format(octet).as_bytes());
            }
        }
        IpAddr::V6(v6) => {
            let mut cursor = std::io::Cursor::new(&mut text.bytes[..]);
            // The longest IPv6 text (an IPv4-mapped address in full) is 45 bytes.
            let _ = std::io::Write::write_fmt(&mut cursor, format_args!("{v6}"));
            text.len = usize::try_from(cursor.position()).unwrap_or(0);
        }
    }
    text
}

/// An address's text ([`ip_text`]).
struct IpText {
    bytes: [u8; IpText::MAX],
    len: usize,
}

impl IpText {
    /// The longest text of an IP address: an IPv4-mapped IPv6 address in full.
    const MAX: usize = 45;

    fn push(&mut self, part: &[u8]) {
        self.bytes[self.len..self.len + part.len()].copy_from_slice(part);
        self.len += part.len();
    }

    fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

/// A record whose headers are written ([`HeadersWriter::end_record`] done), waiting for the
/// writer to be frozen: its key is a span of the headers (the value of `hw.source`).
pub(super) struct RecordParts {
    /// The source's place in the headers; `None` for an element that is not an event.
    key: Option<std::ops::Range<usize>>,
    value: Bytes,
    timestamp_ms: i64,
}

impl RecordParts {
    /// A valid event's record: key = source, value = the payload as received, the envelope
    /// in the headers.
    pub(super) fn valid(
        out: &mut HeadersWriter,
        batch: &BatchHeaders,
        event: &IncomingEvent,
        id: &str,
        version: u32,
    ) -> Self {
        let key = envelope(out, batch, event, id, version);
        out.end_record();
        Self {
            key: Some(key),
            value: event.payload.clone(),
            timestamp_ms: batch.received_at_ms,
        }
    }

    /// An event that failed validation, for the dead-letter topic: its envelope (version 0
    /// when the client gave none) and the reason.
    pub(super) fn invalid(
        out: &mut HeadersWriter,
        batch: &BatchHeaders,
        event: &IncomingEvent,
        id: &str,
        reason: &str,
        max_value_bytes: usize,
    ) -> Self {
        let key = envelope(out, batch, event, id, event.version.unwrap_or(0));
        Self::dead_letter(
            out,
            batch,
            Some(key),
            &event.payload,
            reason,
            max_value_bytes,
        )
    }

    /// An element that is not an event, as received, for the dead-letter topic (headers:
    /// `received_at`, `tenant`, and the reason).
    pub(super) fn malformed(
        out: &mut HeadersWriter,
        batch: &BatchHeaders,
        raw: &Bytes,
        reason: &str,
        max_value_bytes: usize,
    ) -> Self {
        out.header(headers::RECEIVED_AT, Some(batch.received_at.as_bytes()));
        out.header(
            headers::TENANT,
            Some(batch.meta.principal.tenant.as_bytes()),
        );
        Self::dead_letter(out, batch, None, raw, reason, max_value_bytes)
    }

    /// A dead letter: `reason` in `hw.error`, and a value over `max_value_bytes` cut to it
    /// (saying so in `hw.truncated`), so that the log takes it rather than failing the batch.
    fn dead_letter(
        out: &mut HeadersWriter,
        batch: &BatchHeaders,
        key: Option<std::ops::Range<usize>>,
        value: &Bytes,
        reason: &str,
        max_value_bytes: usize,
    ) -> Self {
        out.header(headers::ERROR, Some(reason.as_bytes()));
        let value = if value.len() > max_value_bytes {
            let mut size = itoa::Buffer::new();
            out.header(
                headers::TRUNCATED,
                Some(size.format(value.len()).as_bytes()),
            );
            value.slice(..max_value_bytes)
        } else {
            value.clone()
        };
        out.end_record();
        Self {
            key,
            value,
            timestamp_ms: batch.received_at_ms,
        }
    }

    /// The record to append: `headers` its headers in the frozen writer `frozen`
    /// ([`FrozenHeaders::records`], in the order the records were written).
    pub(super) fn prepared(
        self,
        frozen: &FrozenHeaders,
        headers: EncodedHeaders,
    ) -> PreparedRecord {
        PreparedRecord {
            key: self.key.map(|key| frozen.slice(key)),
            value: Some(self.value),
            headers,
            timestamp_ms: self.timestamp_ms,
        }
    }
}

/// Writes an event's envelope, the schema crate's `hw.*` set in `Envelope::to_headers`'s order
/// (so the router and sinks rebuild it with `Envelope::from_headers`), then the gateway's
/// enrichment and the attributes; returns where the source (the record key) was written. An
/// event without client time gets `ts` = `received_at`. Numbers are written as `to_string`
/// writes them (`itoa`: two digits a step, no formatter).
fn envelope(
    out: &mut HeadersWriter,
    batch: &BatchHeaders,
    event: &IncomingEvent,
    id: &str,
    version: u32,
) -> std::ops::Range<usize> {
    let mut number = itoa::Buffer::new();
    out.header(headers::ID, Some(id.as_bytes()));
    out.header(headers::TYPE, Some(str::as_bytes(&event.event_type)));
    out.header(headers::VERSION, Some(number.format(version).as_bytes()));
    let source = out.header(headers::SOURCE, Some(str::as_bytes(&event.source)));
    match event.ts {
        Some(ts) => out.header(headers::TS, Some(number.format(ts).as_bytes())),
        None => out.header(headers::TS, Some(batch.received_at.as_bytes())),
    };
    out.extend(batch.tail(event.format));
    for (key, value) in &event.attributes {
        let name = format!("{}{key}", headers::ATTRIBUTE_PREFIX);
        out.header(&name, Some(value.as_bytes()));
    }
    source
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use headwater_schemas::Envelope;

    use headwater_log::Record;

    use super::*;

    use crate::auth::Principal;

    #[test]
    fn an_address_is_written_as_display_writes_it() {
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        let mut samples: Vec<u32> = vec![0, 1, 0x7f00_0001, 0x0a01_0203, u32::MAX, 0x6400_00ff];
        for _ in 0..1_000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            samples.push(state as u32);
        }
        for bits in samples {
            let ip = IpAddr::V4(std::net::Ipv4Addr::from_bits(bits));
            assert_eq!(ip_text(ip).as_bytes(), ip.to_string().as_bytes());
        }
        for v6 in [
            "2001:db8::1",
            "::",
            "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
            "0:0:0:0:0:ffff:255.255.255.255",
            "1:2:3:4:5:6:255.255.255.255",
        ] {
            let ip: IpAddr = v6.parse().unwrap();
            assert_eq!(ip_text(ip).as_bytes(), ip.to_string().as_bytes());
        }
    }

    /// The record `write` makes, as a log that takes header lists sees it.
    fn record(write: impl FnOnce(&mut HeadersWriter) -> RecordParts) -> Record {
        let mut writer = HeadersWriter::default();
        let parts = write(&mut writer);
        let frozen = writer.freeze();
        let headers = frozen.records().next().unwrap();
        parts.prepared(&frozen, headers).into_record().unwrap()
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
            id: Some("e1".into()),
            event_type: "playback.start".into(),
            version: None,
            source: "tv-1".into(),
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
        let meta = meta();
        let batch = BatchHeaders::new(&meta, 1_700_000_000_123);
        for format in [PayloadFormat::Json, PayloadFormat::Protobuf] {
            let event = IncomingEvent {
                format,
                ..event(Some(-5))
            };
            let record = record(|out| RecordParts::valid(out, &batch, &event, "e1", 3));
            let envelope = Envelope {
                id: "e1".to_owned(),
                event_type: "playback.start".to_owned(),
                version: 3,
                source: "tv-1".to_owned(),
                ts: -5,
                received_at: 1_700_000_000_123,
                tenant: "acme".to_owned(),
                payload: Bytes::new(),
                payload_format: format,
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
            assert_eq!(pairs(&record), expected, "{format:?}");
            assert_eq!(record.key.as_deref(), Some(&b"tv-1"[..]));
            assert_eq!(record.value, Some(event.payload.clone()));
            assert_eq!(record.timestamp_ms, 1_700_000_000_123);
        }
    }

    #[test]
    fn numbers_are_written_as_to_string_writes_them() {
        let meta = meta();
        let batch = BatchHeaders::new(&meta, 42);
        for n in [0, 7, -7, 10, 1_700_000_000_123, -1, i64::MAX, i64::MIN] {
            let record = record(|out| RecordParts::valid(out, &batch, &event(Some(n)), "e1", 1));
            let ts = pairs(&record).into_iter().find(|(k, _)| k == "hw.ts");
            assert_eq!(ts, Some(("hw.ts".to_owned(), n.to_string())), "{n}");
        }
        let record = record(|out| RecordParts::valid(out, &batch, &event(None), "e1", u32::MAX));
        let version = pairs(&record).into_iter().find(|(k, _)| k == "hw.version");
        assert_eq!(
            version,
            Some(("hw.version".to_owned(), u32::MAX.to_string()))
        );
    }

    #[test]
    fn an_event_without_client_time_gets_received_at() {
        let meta = meta();
        let batch = BatchHeaders::new(&meta, 42);
        let record = record(|out| RecordParts::valid(out, &batch, &event(None), "e1", 1));
        let ts = pairs(&record).into_iter().find(|(k, _)| k == "hw.ts");
        assert_eq!(ts, Some(("hw.ts".to_owned(), "42".to_owned())));
    }

    #[test]
    fn dead_letters_say_why_and_are_cut_to_the_limit() {
        let meta = meta();
        let batch = BatchHeaders::new(&meta, 7);
        let invalid = record(|out| RecordParts::invalid(out, &batch, &event(None), "e1", "bad", 3));
        let headers = pairs(&invalid);
        assert!(headers.contains(&("hw.version".to_owned(), "0".to_owned())));
        assert!(headers.contains(&("hw.error".to_owned(), "bad".to_owned())));
        assert!(headers.contains(&("hw.truncated".to_owned(), "7".to_owned())));
        assert_eq!(invalid.value.as_deref(), Some(&br#"{"n"#[..]));
        let raw = Bytes::from_static(b"[1,2]");
        let malformed =
            record(|out| RecordParts::malformed(out, &batch, &raw, "not an event", 100));
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
