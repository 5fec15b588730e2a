//! The envelope as Kafka record headers (`hw.*`), and back.
//!
//! Every value is UTF-8 text; numbers are decimal. The record key is the source id and the
//! record value is the payload as received, so a record is fully described by key, value and
//! these headers.

use bytes::Bytes;

use crate::envelope::{Envelope, PayloadFormat};
use crate::error::SchemaError;

/// Header: event id.
pub const ID: &str = "hw.id";
/// Header: event type.
pub const TYPE: &str = "hw.type";
/// Header: schema version (decimal).
pub const VERSION: &str = "hw.version";
/// Header: source (device or service) id.
pub const SOURCE: &str = "hw.source";
/// Header: client time, ms since the Unix epoch (decimal, may be negative).
pub const TS: &str = "hw.ts";
/// Header: server receive time, ms since the Unix epoch (decimal).
pub const RECEIVED_AT: &str = "hw.received_at";
/// Header: tenant.
pub const TENANT: &str = "hw.tenant";
/// Header: payload format, `json` or `protobuf`.
pub const FORMAT: &str = "hw.format";
/// Header: why the event was sent to the dead-letter topic (DLQ records only).
pub const ERROR: &str = "hw.error";

impl Envelope {
    /// The envelope as record headers, in a fixed order (`hw.id` … `hw.format`).
    pub fn to_headers(&self) -> Vec<(String, Bytes)> {
        let text = |s: &str| Bytes::copy_from_slice(s.as_bytes());
        vec![
            (ID.to_owned(), text(&self.id)),
            (TYPE.to_owned(), text(&self.event_type)),
            (VERSION.to_owned(), Bytes::from(self.version.to_string())),
            (SOURCE.to_owned(), text(&self.source)),
            (TS.to_owned(), Bytes::from(self.ts.to_string())),
            (
                RECEIVED_AT.to_owned(),
                Bytes::from(self.received_at.to_string()),
            ),
            (TENANT.to_owned(), text(&self.tenant)),
            (
                FORMAT.to_owned(),
                Bytes::from_static(self.payload_format.as_str().as_bytes()),
            ),
        ]
    }

    /// Headers for the dead-letter topic: [`Envelope::to_headers`] plus `hw.error` = `reason`.
    pub fn to_dlq_headers(&self, reason: &str) -> Vec<(String, Bytes)> {
        let mut headers = self.to_headers();
        headers.push((ERROR.to_owned(), Bytes::copy_from_slice(reason.as_bytes())));
        headers
    }

    /// Rebuilds an envelope from record headers and the record value. Unknown headers and
    /// `hw.error` are ignored; when a name repeats, the last one wins. Every `hw.*` header of
    /// [`Envelope::to_headers`] must be present.
    pub fn from_headers<K, V>(
        headers: impl IntoIterator<Item = (K, V)>,
        payload: Bytes,
    ) -> Result<Envelope, SchemaError>
    where
        K: AsRef<str>,
        V: AsRef<[u8]>,
    {
        // Numbers and the format are parsed as they are met (no string of their own); a later
        // header of the same name replaces the earlier one's result, error included.
        let mut found: [Option<String>; 4] = Default::default();
        let mut version: Option<Result<u32, SchemaError>> = None;
        let (mut ts, mut received_at): (Option<Result<i64, _>>, Option<Result<i64, _>>) =
            (None, None);
        let mut format: Option<Result<PayloadFormat, _>> = None;
        let names = [ID, TYPE, VERSION, SOURCE, TS, RECEIVED_AT, TENANT, FORMAT];
        for (key, value) in headers {
            if let Some(slot) = names.iter().position(|n| *n == key.as_ref()) {
                let name = names[slot];
                let text =
                    std::str::from_utf8(value.as_ref()).map_err(|_| SchemaError::BadHeader {
                        name,
                        reason: "not UTF-8".to_owned(),
                    })?;
                match slot {
                    2 => version = Some(parse_number(VERSION, text)),
                    4 => ts = Some(parse_number(TS, text)),
                    5 => received_at = Some(parse_number(RECEIVED_AT, text)),
                    7 => {
                        format = Some(PayloadFormat::from_wire(text).map_err(|e| {
                            SchemaError::BadHeader {
                                name: FORMAT,
                                reason: e.to_string(),
                            }
                        }));
                    }
                    0 => found[0] = Some(text.to_owned()),
                    1 => found[1] = Some(text.to_owned()),
                    3 => found[2] = Some(text.to_owned()),
                    _ => found[3] = Some(text.to_owned()),
                }
            }
        }
        let mut take =
            |slot: usize, name| found[slot].take().ok_or(SchemaError::MissingHeader(name));
        let id = take(0, ID)?;
        let event_type = take(1, TYPE)?;
        let version = given(version, VERSION)?;
        let source = take(2, SOURCE)?;
        let ts = given(ts, TS)?;
        let received_at = given(received_at, RECEIVED_AT)?;
        let tenant = take(3, TENANT)?;
        let payload_format = given(format, FORMAT)?;
        Ok(Envelope {
            id,
            event_type,
            version,
            source,
            ts,
            received_at,
            tenant,
            payload,
            payload_format,
        })
    }
}

/// The `hw.error` reason of a dead-letter record, if it has one (last one wins).
pub fn dlq_reason<K, V>(headers: impl IntoIterator<Item = (K, V)>) -> Option<String>
where
    K: AsRef<str>,
    V: AsRef<[u8]>,
{
    headers
        .into_iter()
        .filter(|(k, _)| k.as_ref() == ERROR)
        .last()
        .map(|(_, v)| String::from_utf8_lossy(v.as_ref()).into_owned())
}

/// A header parsed as it was met, or missing.
fn given<T>(parsed: Option<Result<T, SchemaError>>, name: &'static str) -> Result<T, SchemaError> {
    parsed.unwrap_or(Err(SchemaError::MissingHeader(name)))
}

fn parse_number<T: std::str::FromStr>(name: &'static str, text: &str) -> Result<T, SchemaError> {
    text.parse().map_err(|_| SchemaError::BadHeader {
        name,
        reason: format!("{text:?} is not a decimal number"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn format() -> impl Strategy<Value = PayloadFormat> {
        prop_oneof![Just(PayloadFormat::Json), Just(PayloadFormat::Protobuf)]
    }

    prop_compose! {
        fn envelope()(
            id in ".*", event_type in "[a-z]{1,8}(\\.[a-z_]{1,8}){0,2}", version in any::<u32>(),
            source in ".*", ts in any::<i64>(), received_at in any::<i64>(), tenant in ".*",
            payload in proptest::collection::vec(any::<u8>(), 0..128), payload_format in format(),
        ) -> Envelope {
            Envelope {
                id, event_type, version, source, ts, received_at, tenant,
                payload: Bytes::from(payload), payload_format,
            }
        }
    }

    proptest! {
        #[test]
        fn headers_round_trip(env in envelope(), reason in ".*") {
            let headers = env.to_headers();
            let back = Envelope::from_headers(headers, env.payload.clone()).unwrap();
            prop_assert_eq!(&back, &env);
            let dlq = env.to_dlq_headers(&reason);
            prop_assert_eq!(dlq_reason(dlq.clone()), Some(reason));
            prop_assert_eq!(Envelope::from_headers(dlq, env.payload.clone()).unwrap(), env);
        }
    }

    #[test]
    fn header_names_and_values_are_text() {
        let env = Envelope {
            version: 2,
            ts: -5,
            ..Envelope::default()
        };
        let headers = env.to_headers();
        let names: Vec<&str> = headers.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            names,
            [ID, TYPE, VERSION, SOURCE, TS, RECEIVED_AT, TENANT, FORMAT]
        );
        assert_eq!(headers[2].1.as_ref(), b"2");
        assert_eq!(headers[4].1.as_ref(), b"-5");
        assert_eq!(headers[7].1.as_ref(), b"json");
    }

    #[test]
    fn missing_and_bad_headers_are_errors() {
        let env = Envelope::default();
        let mut headers = env.to_headers();
        headers.retain(|(k, _)| k != TENANT);
        let err = Envelope::from_headers(headers, Bytes::new()).unwrap_err();
        assert_eq!(err.to_string(), "missing header hw.tenant");

        let mut headers = env.to_headers();
        headers[2].1 = Bytes::from_static(b"x");
        let err = Envelope::from_headers(headers, Bytes::new()).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("header hw.version has an invalid value"),
            "{err}"
        );

        let mut headers = env.to_headers();
        headers[7].1 = Bytes::from_static(b"xml");
        assert!(Envelope::from_headers(headers, Bytes::new()).is_err());

        // A repeated name: the last one decides, a bad value included.
        let mut headers = env.to_headers();
        headers.insert(0, (TS.to_owned(), Bytes::from_static(b"x")));
        headers.push((FORMAT.to_owned(), Bytes::from_static(b"protobuf")));
        let back = Envelope::from_headers(headers, Bytes::new()).unwrap();
        assert_eq!((back.ts, back.payload_format), (0, PayloadFormat::Protobuf));
        let mut headers = env.to_headers();
        headers.push((RECEIVED_AT.to_owned(), Bytes::from_static(b"-")));
        let err = Envelope::from_headers(headers, Bytes::new()).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("header hw.received_at has an invalid value"),
            "{err}"
        );
    }
}
