//! Fuzzes the gateway's protobuf `Batch` decoder (the wire walk that counts events before any
//! is decoded, then each event) with arbitrary bodies: no panic, never more events kept than
//! the limit, an accepted event carries at most the attribute limit.
#![no_main]

use bytes::Bytes;
use headwater_gateway::decode::{Decoded, MAX_ATTRIBUTES, decode_protobuf, wire};
use libfuzzer_sys::fuzz_target;

const MAX_EVENTS: usize = 8;

fuzz_target!(|data: &[u8]| {
    let body = Bytes::copy_from_slice(data);
    // The walker alone: it ends (at most one item per byte, plus one error).
    let fields = wire::Fields::new(data).take(data.len() + 2).count();
    assert!(fields <= data.len() + 1);
    if let Ok(decoded) = decode_protobuf(&body, MAX_EVENTS) {
        assert!(decoded.len() <= MAX_EVENTS);
        for d in decoded {
            if let Decoded::Event(e) = d {
                assert!(e.attributes.len() <= MAX_ATTRIBUTES);
                assert!(!e.event_type.is_empty() && !e.source.is_empty());
            }
        }
    }
});
