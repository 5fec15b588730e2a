//! Fuzzes the sealed-segment index decoders: no panic, and what decodes re-encodes identically.
#![no_main]

use headwater_log::index::{OffsetIndex, TimeIndex};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Some((index, trailer)) = OffsetIndex::decode(data) {
        assert_eq!(index.encode(trailer), data);
    }
    if let Some((index, max)) = TimeIndex::decode(data) {
        assert_eq!(index.encode(max), data);
    }
});
