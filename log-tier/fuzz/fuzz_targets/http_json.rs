//! Fuzzes the gateway's JSON and NDJSON batch decoders with arbitrary bodies: no panic, never
//! more events kept than the limit, every payload and dead-letter slice a part of the body;
//! and the body parsed once (`decode_json_validated`) against the serde_json way
//! (`decode_json`, then the registry on the payload's text): the same events and answers.
#![no_main]

use std::sync::OnceLock;

use bytes::Bytes;
use headwater_gateway::decode::{
    Decoded, IncomingEvent, decode_json, decode_json_validated, decode_ndjson,
};
use headwater_gateway::{Invalid, Validate, Verdict};
use headwater_schemas::document::JsonValue;
use headwater_schemas::{LoadOptions, Payload, Registry, SourceFile};
use libfuzzer_sys::fuzz_target;

/// Small, so that the over-the-limit path is reached by short inputs.
const MAX_EVENTS: usize = 8;

/// Validates against one JSON Schema, type `t.n`, from the text or from the parsed body.
struct Schemas(Registry);

impl Schemas {
    fn answer(&self, event: &IncomingEvent, payload: Payload<'_>) -> Result<Verdict, Invalid> {
        let version = event.version.unwrap_or(0);
        self.0
            .validate(&event.event_type, version, payload)
            .map(|info| Verdict {
                topic: info.topic.as_str().into(),
                version: info.version,
            })
            .map_err(Invalid::from)
    }
}

impl Validate for Schemas {
    fn validate(&self, event: &IncomingEvent) -> Result<Verdict, Invalid> {
        self.answer(event, Payload::Json(&event.payload))
    }

    fn validate_parsed(&self, event: &IncomingEvent, payload: JsonValue<'_>) -> Result<Verdict, Invalid> {
        self.answer(event, Payload::Parsed(payload))
    }

    fn knows_type(&self, _event_type: &str) -> bool {
        false
    }
}

fn schemas() -> &'static Schemas {
    static SCHEMAS: OnceLock<Schemas> = OnceLock::new();
    SCHEMAS.get_or_init(|| {
        let schema = r#"{"type":"object","properties":{"n":{"type":"integer","minimum":0},
            "a":{"type":"array","items":{"type":["string","number"]}}},
            "additionalProperties":{"type":"string","maxLength":4}}"#;
        let sources = vec![SourceFile {
            name: "t.n.v1.schema.json".to_owned(),
            text: schema.to_owned(),
        }];
        match Registry::from_sources(sources, &LoadOptions::default()) {
            Ok(registry) => Schemas(registry),
            Err(problems) => panic!("{problems:?}"),
        }
    })
}

fn check(body: &Bytes, decoded: &[Decoded]) {
    assert!(decoded.len() <= MAX_EVENTS, "{} events kept", decoded.len());
    let range = body.as_ptr_range();
    let inside = |b: &Bytes| b.is_empty() || range.contains(&b.as_ptr());
    for d in decoded {
        match d {
            Decoded::Event(e) => {
                assert!(inside(&e.payload), "payload not sliced from the body");
                assert!(!e.event_type.is_empty() && !e.source.is_empty());
            }
            Decoded::Bad { raw, reason } => {
                assert!(inside(raw), "dead letter not sliced from the body");
                assert!(reason.len() <= 1024, "reason of {} bytes", reason.len());
            }
        }
    }
}

/// The once-parsed path gives what the serde_json path and the registry on the text give.
fn agree(body: &Bytes) {
    let schemas = schemas();
    let once = decode_json_validated(body, MAX_EVENTS, schemas);
    let twice = decode_json(body, MAX_EVENTS);
    let (once, twice) = match (once, twice) {
        (Ok(once), Ok(twice)) => (once, twice),
        (Err(once), Err(twice)) => return assert_eq!(once.to_string(), twice.to_string()),
        (once, twice) => panic!("once {once:?}, twice {twice:?}"),
    };
    check(body, &once);
    assert_eq!(once.len(), twice.len());
    for (once, twice) in once.iter().zip(&twice) {
        match (once, twice) {
            (Decoded::Event(once), Decoded::Event(twice)) => {
                let mut unchecked = once.clone();
                let verdict = unchecked.verdict.take();
                assert_eq!(&unchecked, twice);
                if let Some(verdict) = verdict {
                    assert_eq!(verdict, schemas.validate(twice));
                }
            }
            (once, twice) => assert_eq!(once, twice),
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let body = Bytes::copy_from_slice(data);
    if let Ok(decoded) = decode_json(&body, MAX_EVENTS) {
        check(&body, &decoded);
    }
    agree(&body);
    if let Ok(decoded) = decode_ndjson(&body, MAX_EVENTS) {
        check(&body, &decoded);
    }
});
