//! Fuzzes the gateway's JSON and NDJSON batch decoders with arbitrary bodies: no panic, never
//! more events kept than the limit, every payload and dead-letter slice a part of the body.
#![no_main]

use bytes::Bytes;
use headwater_gateway::decode::{Decoded, decode_json, decode_ndjson};
use libfuzzer_sys::fuzz_target;

/// Small, so that the over-the-limit path is reached by short inputs.
const MAX_EVENTS: usize = 8;

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

fuzz_target!(|data: &[u8]| {
    let body = Bytes::copy_from_slice(data);
    if let Ok(decoded) = decode_json(&body, MAX_EVENTS) {
        check(&body, &decoded);
    }
    if let Ok(decoded) = decode_ndjson(&body, MAX_EVENTS) {
        check(&body, &decoded);
    }
});
