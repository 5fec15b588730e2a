//! The event envelope carried on the hot path, and its JSON form (payload inline when JSON).

use std::fmt;

use base64::Engine as _;
use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use bytes::Bytes;
use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::value::RawValue;

use crate::error::SchemaError;

/// Standard base64 (RFC 4648) for protobuf payloads in JSON: written padded, read padded or not.
const BASE64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_decode_padding_mode(DecodePaddingMode::Indifferent)
        .with_decode_allow_trailing_bits(true),
);

/// How an event's payload is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PayloadFormat {
    /// UTF-8 JSON text.
    #[default]
    Json,
    /// Protobuf binary encoding of the schema's message.
    Protobuf,
}

impl PayloadFormat {
    /// The name used on the wire and in the `hw.format` header: `json` or `protobuf`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Json => "json",
            Self::Protobuf => "protobuf",
        }
    }

    /// Parses a wire name; the empty string (proto3's default) means `json`.
    pub fn from_wire(name: &str) -> Result<Self, SchemaError> {
        match name {
            "" | "json" => Ok(Self::Json),
            "protobuf" => Ok(Self::Protobuf),
            other => Err(SchemaError::UnknownFormat(other.to_owned())),
        }
    }
}

impl fmt::Display for PayloadFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One event as the gateway appends it: the envelope travels in record headers, the payload
/// bytes as received are the record value, and the record key is `source`.
///
/// Its serde form is the JSON the sinks write: every field by name, `payload` inline as raw JSON
/// when `payload_format` is `json` (a string if those bytes are not valid JSON), base64 when
/// `protobuf`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Envelope {
    /// Event id: client-given or a ULID assigned by the gateway.
    pub id: String,
    /// Event type, e.g. `playback.start`.
    pub event_type: String,
    /// Schema version the payload was validated against (never 0 once resolved).
    pub version: u32,
    /// Device or service id; the record key.
    pub source: String,
    /// Client time, milliseconds since the Unix epoch.
    pub ts: i64,
    /// Server receive time, milliseconds since the Unix epoch.
    pub received_at: i64,
    /// Tenant the event belongs to.
    pub tenant: String,
    /// Payload bytes exactly as received.
    pub payload: Bytes,
    /// Encoding of `payload`.
    pub payload_format: PayloadFormat,
}

#[derive(Serialize)]
struct EnvelopeOut<'a> {
    id: &'a str,
    #[serde(rename = "type")]
    event_type: &'a str,
    version: u32,
    source: &'a str,
    ts: i64,
    received_at: i64,
    tenant: &'a str,
    payload_format: PayloadFormat,
    payload: PayloadOut<'a>,
}

enum PayloadOut<'a> {
    Raw(&'a RawValue),
    Text(String),
}

impl Serialize for PayloadOut<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Raw(raw) => raw.serialize(serializer),
            Self::Text(text) => serializer.serialize_str(text),
        }
    }
}

impl Serialize for Envelope {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let payload = match self.payload_format {
            PayloadFormat::Json => match serde_json::from_slice::<&RawValue>(&self.payload) {
                Ok(raw) => PayloadOut::Raw(raw),
                Err(_) => PayloadOut::Text(String::from_utf8_lossy(&self.payload).into_owned()),
            },
            PayloadFormat::Protobuf => PayloadOut::Text(BASE64.encode(&self.payload)),
        };
        EnvelopeOut {
            id: &self.id,
            event_type: &self.event_type,
            version: self.version,
            source: &self.source,
            ts: self.ts,
            received_at: self.received_at,
            tenant: &self.tenant,
            payload_format: self.payload_format,
            payload,
        }
        .serialize(serializer)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EnvelopeIn {
    #[serde(default)]
    id: String,
    #[serde(rename = "type")]
    event_type: String,
    #[serde(default)]
    version: u32,
    #[serde(default)]
    source: String,
    #[serde(default)]
    ts: i64,
    #[serde(default)]
    received_at: i64,
    #[serde(default)]
    tenant: String,
    #[serde(default)]
    payload_format: PayloadFormat,
    payload: Box<RawValue>,
}

impl<'de> Deserialize<'de> for Envelope {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = EnvelopeIn::deserialize(deserializer)?;
        let payload = match raw.payload_format {
            PayloadFormat::Json => Bytes::copy_from_slice(raw.payload.get().as_bytes()),
            PayloadFormat::Protobuf => {
                let text: String = serde_json::from_str(raw.payload.get())
                    .map_err(|_| D::Error::custom("a protobuf payload must be a base64 string"))?;
                Bytes::from(BASE64.decode(&text).map_err(D::Error::custom)?)
            }
        };
        Ok(Self {
            id: raw.id,
            event_type: raw.event_type,
            version: raw.version,
            source: raw.source,
            ts: raw.ts,
            received_at: raw.received_at,
            tenant: raw.tenant,
            payload,
            payload_format: raw.payload_format,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(format: PayloadFormat, payload: &'static [u8]) -> Envelope {
        Envelope {
            id: "01J0000000000000000000000A".into(),
            event_type: "playback.start".into(),
            version: 1,
            source: "tv-1".into(),
            ts: 1_700_000_000_000,
            received_at: 1_700_000_000_123,
            tenant: "acme".into(),
            payload: Bytes::from_static(payload),
            payload_format: format,
        }
    }

    #[test]
    fn json_payload_is_inlined_raw() {
        let env = sample(PayloadFormat::Json, br#"{"title_id":"t1","position_ms":0}"#);
        let text = serde_json::to_string(&env).unwrap();
        assert!(
            text.contains(r#""payload":{"title_id":"t1","position_ms":0}"#),
            "{text}"
        );
        assert!(text.contains(r#""type":"playback.start""#));
        let back: Envelope = serde_json::from_str(&text).unwrap();
        assert_eq!(back, env);
    }

    #[test]
    fn protobuf_payload_is_base64() {
        let env = sample(PayloadFormat::Protobuf, &[8, 150, 1, 0xff]);
        let text = serde_json::to_string(&env).unwrap();
        assert!(text.contains(r#""payload":"CJYB/w==""#), "{text}");
        let back: Envelope = serde_json::from_str(&text).unwrap();
        assert_eq!(back, env);
        let unpadded: Envelope = serde_json::from_str(&text.replace("==", "")).unwrap();
        assert_eq!(unpadded, env);
        let bad = serde_json::from_str::<Envelope>(&text.replace("CJYB", "CJ!B"));
        assert!(bad.is_err());
    }

    #[test]
    fn invalid_json_payload_becomes_a_string() {
        let env = sample(PayloadFormat::Json, b"{not json");
        let text = serde_json::to_string(&env).unwrap();
        assert!(text.contains(r#""payload":"{not json""#), "{text}");
    }

    #[test]
    fn wire_format_names() {
        assert_eq!(PayloadFormat::from_wire("").unwrap(), PayloadFormat::Json);
        assert_eq!(
            PayloadFormat::from_wire("protobuf").unwrap(),
            PayloadFormat::Protobuf
        );
        assert!(PayloadFormat::from_wire("xml").is_err());
    }
}
