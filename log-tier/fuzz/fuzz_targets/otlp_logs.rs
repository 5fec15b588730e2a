//! Fuzzes the OTLP logs decoder (protobuf and the JSON mapping): no panic, and an accepted
//! request never becomes more events, or more payload bytes, than the limits allow (the budget
//! that keeps resource and scope copies from multiplying a small body). Each record's tape,
//! built beside its payload for validation, is one value holding every node after its root.
#![no_main]

use bytes::Bytes;
use headwater_gateway::decode::{Decoded, IncomingEvent};
use headwater_gateway::otlp::{Encoding, decode_body};
use headwater_gateway::{AcceptAll, Invalid, Limits, Validate, Verdict};
use headwater_schemas::TapeNode;
use libfuzzer_sys::fuzz_target;

/// Accepts every event; checks the shape of each built tape.
struct TapeShape(AcceptAll);

impl Validate for TapeShape {
    fn validate(&self, event: &IncomingEvent) -> Result<Verdict, Invalid> {
        self.0.validate(event)
    }

    fn validate_built(
        &self,
        event: &IncomingEvent,
        tape: &[TapeNode<'_>],
    ) -> Result<Verdict, Invalid> {
        match tape.first() {
            Some(TapeNode::Object { len: 10, count }) => assert_eq!(count + 1, tape.len()),
            other => panic!("a record's tape starts with {other:?}"),
        }
        self.validate(event)
    }

    fn knows_type(&self, event_type: &str) -> bool {
        self.0.knows_type(event_type)
    }
}

fuzz_target!(|data: &[u8]| {
    let limits = Limits {
        max_body_bytes: 64 * 1024,
        max_decompressed_bytes: 64 * 1024,
        max_events_per_batch: 16,
        ..Limits::default()
    };
    let body = Bytes::copy_from_slice(data);
    let validator = TapeShape(AcceptAll {
        topic: "events".to_owned(),
    });
    for encoding in [Encoding::Protobuf, Encoding::Json] {
        if let Ok(decoded) = decode_body(&body, encoding, "otlp.log", &limits, Some(&validator)) {
            assert!(decoded.len() <= limits.max_events_per_batch as usize);
            let bytes: u64 = decoded
                .iter()
                .map(|d| match d {
                    Decoded::Event(e) => e.payload.len() as u64,
                    Decoded::Bad { raw, .. } => raw.len() as u64,
                })
                .sum();
            assert!(
                bytes <= limits.max_decompressed_bytes,
                "{bytes} bytes of events"
            );
        }
    }
});
