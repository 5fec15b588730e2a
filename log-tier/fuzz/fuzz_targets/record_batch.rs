//! Fuzzes the RecordBatch v2 validator and decoder with arbitrary bytes: no panic, and any
//! batch the validator accepts decodes into exactly its records with dense offsets.
#![no_main]

use bytes::Bytes;
use headwater_log::batch::{decode_records, split_batches, validate_for_append};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(header) = validate_for_append(data) {
        let records = decode_records(&Bytes::copy_from_slice(data)).expect("a valid batch decodes");
        assert_eq!(records.len(), header.records_count as usize);
        for (i, r) in records.iter().enumerate() {
            assert_eq!(r.offset, header.base_offset + i as i64);
        }
    }
    let bytes = Bytes::copy_from_slice(data);
    for (_, batch) in split_batches(bytes) {
        let _ = decode_records(&batch);
    }
});
