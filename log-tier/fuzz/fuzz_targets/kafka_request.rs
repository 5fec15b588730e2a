//! Fuzzes the Kafka listener's request decoder (`kafka::decode_request`: frame → API, version,
//! header, body) and the SASL/PLAIN token parser with arbitrary bytes: no panic and no abort;
//! a decoded request carries the frame's API key and version, within the served ranges.
#![no_main]

use bytes::Bytes;
use headwater_kafka::{SASL, SUPPORTED, decode_request, sasl::parse_plain};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(decoded) = decode_request(Bytes::copy_from_slice(data)) {
        assert_eq!(decoded.api_key as i16, i16::from_be_bytes([data[0], data[1]]));
        assert_eq!(decoded.version, i16::from_be_bytes([data[2], data[3]]));
        let served = SUPPORTED.iter().chain(SASL).any(|(key, min, max)| {
            *key == decoded.api_key && (*min..=*max).contains(&decoded.version)
        });
        assert!(served, "{:?} v{} decoded", decoded.api_key, decoded.version);
    }
    if let Ok(credentials) = parse_plain(data) {
        assert!(!credentials.user.is_empty() && !credentials.password.is_empty());
    }
});
