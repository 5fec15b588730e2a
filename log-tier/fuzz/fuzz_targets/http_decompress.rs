//! Fuzzes the gateway's `Content-Encoding` undoing (gzip, zstd, identity): no panic, and never
//! more bytes out than the limit, whatever the input claims.
#![no_main]

use bytes::Bytes;
use headwater_gateway::body::decompress;
use http::header::{CONTENT_ENCODING, HeaderMap, HeaderValue};
use libfuzzer_sys::fuzz_target;

const LIMIT: u64 = 256 * 1024;

fuzz_target!(|data: &[u8]| {
    let Some((&which, body)) = data.split_first() else {
        return;
    };
    let mut headers = HeaderMap::new();
    let encoding = ["gzip", "zstd", "identity", "x-gzip"][usize::from(which % 4)];
    headers.insert(CONTENT_ENCODING, HeaderValue::from_static(encoding));
    if let Ok(out) = decompress(&headers, Bytes::copy_from_slice(body), LIMIT) {
        assert!(out.len() as u64 <= LIMIT, "{} bytes out", out.len());
    }
});
