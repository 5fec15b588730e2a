//! Fuzzes the OTLP logs decoder (protobuf and the JSON mapping): no panic, and an accepted
//! request never becomes more events, or more payload bytes, than the limits allow (the budget
//! that keeps resource and scope copies from multiplying a small body).
#![no_main]

use bytes::Bytes;
use headwater_gateway::Limits;
use headwater_gateway::decode::Decoded;
use headwater_gateway::otlp::{Encoding, decode_body};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let limits = Limits {
        max_body_bytes: 64 * 1024,
        max_decompressed_bytes: 64 * 1024,
        max_events_per_batch: 16,
        ..Limits::default()
    };
    let body = Bytes::copy_from_slice(data);
    for encoding in [Encoding::Protobuf, Encoding::Json] {
        if let Ok(decoded) = decode_body(&body, encoding, "otlp.log", &limits) {
            assert!(decoded.len() <= limits.max_events_per_batch as usize);
            let bytes: u64 = decoded
                .iter()
                .map(|d| match d {
                    Decoded::Event(e) => e.payload.len() as u64,
                    Decoded::Bad { raw, .. } => raw.len() as u64,
                })
                .sum();
            assert!(bytes <= limits.max_decompressed_bytes, "{bytes} bytes of events");
        }
    }
});
