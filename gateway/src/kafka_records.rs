//! Records a tenant produces over the Kafka port to a schema-governed topic, checked like
//! gateway events: the schema registry validates the payload, the schema must send events of
//! that type to the topic produced to, and the envelope headers are completed so the router
//! reads the record as it reads a gateway event.
//!
//! The Kafka listener stamps `hw.tenant` and `hw.received_at` before this runs; here:
//! `hw.type` is required; `hw.version` (default: the latest) becomes the resolved version;
//! `hw.format` defaults to `json`; `hw.id` defaults to a new ULID; `hw.source` defaults to the
//! record key; `hw.ts` defaults to the record timestamp.

use bytes::Bytes;
use headwater_log::{Header, Record};
use headwater_schemas::headers::{FORMAT, ID, SOURCE, TS, TYPE, VERSION};
use headwater_schemas::{Payload, PayloadFormat};

use crate::registry::SchemaRegistry;

impl SchemaRegistry {
    /// Whether a schema sends events to `topic` (a tenant's records there are validated).
    pub fn governs(&self, topic: &str) -> bool {
        self.snapshot()
            .list()
            .iter()
            .any(|info| info.topic == topic)
    }

    /// Checks one record produced to `topic` and completes its envelope headers; `Err` is the
    /// reason it is refused.
    pub fn admit_record(&self, topic: &str, record: &mut Record) -> Result<(), String> {
        let text = |name: &str| -> Result<Option<String>, String> {
            let found = record.headers.iter().rev().find(|h| h.key == name);
            match found.and_then(|h| h.value.as_deref()) {
                None => Ok(None),
                Some(bytes) => std::str::from_utf8(bytes)
                    .map(|s| Some(s.to_owned()))
                    .map_err(|_| format!("header {name} is not UTF-8")),
            }
        };
        let event_type = text(TYPE)?.ok_or_else(|| format!("missing header {TYPE}"))?;
        let version = match text(VERSION)? {
            None => 0,
            Some(v) => v
                .parse::<u32>()
                .map_err(|_| format!("header {VERSION} `{v}` is not a version number"))?,
        };
        let format = match text(FORMAT)? {
            None => PayloadFormat::Json,
            Some(f) => PayloadFormat::from_wire(&f).map_err(|e| e.to_string())?,
        };
        let value = record.value.as_deref().unwrap_or_default();
        let payload = match format {
            PayloadFormat::Json => Payload::Json(value),
            PayloadFormat::Protobuf => Payload::Protobuf(value),
        };
        let registry = self.snapshot();
        let info = registry
            .validate(&event_type, version, payload)
            .map_err(|rejection| rejection.reason)?;
        if info.topic != topic {
            return Err(format!(
                "events of type {event_type:?} version {} go to topic {:?}, not {topic:?}",
                info.version, info.topic
            ));
        }
        let source = match text(SOURCE)? {
            Some(source) => source,
            None => record
                .key
                .as_deref()
                .and_then(|k| std::str::from_utf8(k).ok())
                .filter(|k| !k.is_empty())
                .map(str::to_owned)
                .ok_or_else(|| format!("missing header {SOURCE} and no UTF-8 record key"))?,
        };
        let id = text(ID)?.unwrap_or_else(|| ulid::Ulid::new().to_string());
        let ts = text(TS)?.unwrap_or_else(|| record.timestamp_ms.to_string());
        if ts.parse::<i64>().is_err() {
            return Err(format!(
                "header {TS} `{ts}` is not milliseconds since the epoch"
            ));
        }
        let resolved = info.version.to_string();
        let names = [ID, TYPE, VERSION, SOURCE, TS, FORMAT];
        record.headers.retain(|h| !names.contains(&h.key.as_ref()));
        let envelope = [
            (ID, id),
            (TYPE, event_type),
            (VERSION, resolved),
            (SOURCE, source),
            (TS, ts),
            (FORMAT, format.as_str().to_owned()),
        ];
        record
            .headers
            .extend(envelope.into_iter().map(|(key, value)| Header {
                key: key.into(),
                value: Some(Bytes::from(value)),
            }));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use headwater_schemas::LoadOptions;

    use super::*;

    const SCHEMA: &str =
        r#"{"type":"object","properties":{"n":{"type":"integer","minimum":0}},"required":["n"]}"#;

    fn registry() -> (tempfile::TempDir, SchemaRegistry) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("t.count.v1.schema.json"), SCHEMA).unwrap();
        let registry = SchemaRegistry::load(dir.path(), LoadOptions::default()).unwrap();
        (dir, registry)
    }

    fn record(value: &str, headers: &[(&str, &str)]) -> Record {
        Record {
            partition: None,
            key: Some(Bytes::from_static(b"tv-1")),
            value: Some(Bytes::copy_from_slice(value.as_bytes())),
            headers: headers
                .iter()
                .map(|(k, v)| Header {
                    key: (*k).to_owned().into(),
                    value: Some(Bytes::copy_from_slice(v.as_bytes())),
                })
                .collect(),
            timestamp_ms: 1_234,
        }
    }

    fn header<'a>(record: &'a Record, name: &str) -> Option<&'a str> {
        let found = record.headers.iter().find(|h| h.key == name)?;
        std::str::from_utf8(found.value.as_deref()?).ok()
    }

    #[test]
    fn the_default_topic_is_governed_and_others_are_not() {
        let (_dir, registry) = registry();
        assert!(registry.governs("events"));
        assert!(!registry.governs("events.dlq"));
        assert!(!registry.governs("acme.raw"));
    }

    #[test]
    fn a_valid_record_gets_a_complete_envelope() {
        let (_dir, registry) = registry();
        let mut r = record(r#"{"n":1}"#, &[("hw.type", "t.count"), ("x", "kept")]);
        registry.admit_record("events", &mut r).unwrap();
        assert_eq!(header(&r, "hw.version"), Some("1"));
        assert_eq!(header(&r, "hw.source"), Some("tv-1"));
        assert_eq!(header(&r, "hw.ts"), Some("1234"));
        assert_eq!(header(&r, "hw.format"), Some("json"));
        assert_eq!(header(&r, "x"), Some("kept"));
        assert_eq!(header(&r, "hw.id").map(str::len), Some(26));
    }

    #[test]
    fn invalid_payloads_unknown_types_and_wrong_topics_are_refused() {
        let (_dir, registry) = registry();
        let mut bad = record(r#"{"n":-5}"#, &[("hw.type", "t.count")]);
        let reason = registry.admit_record("events", &mut bad).unwrap_err();
        assert!(reason.contains("minimum"), "{reason}");
        let mut untyped = record(r#"{"n":1}"#, &[]);
        let reason = registry.admit_record("events", &mut untyped).unwrap_err();
        assert_eq!(reason, "missing header hw.type");
        let mut unknown = record(r#"{"n":1}"#, &[("hw.type", "nope")]);
        let reason = registry.admit_record("events", &mut unknown).unwrap_err();
        assert!(reason.contains("unknown event type"), "{reason}");
        let mut elsewhere = record(r#"{"n":1}"#, &[("hw.type", "t.count")]);
        let reason = registry.admit_record("other", &mut elsewhere).unwrap_err();
        assert!(reason.contains("go to topic \"events\""), "{reason}");
        let mut version = record(r#"{"n":1}"#, &[("hw.type", "t.count"), ("hw.version", "x")]);
        assert!(registry.admit_record("events", &mut version).is_err());
    }
}
