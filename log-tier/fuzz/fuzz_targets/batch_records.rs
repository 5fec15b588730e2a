//! Fuzzes record parsing behind a valid-looking batch header: the fuzzer's bytes become the
//! body of a batch whose length and CRC are then made right, so mutations reach the record
//! decoder instead of dying at the CRC check. No panic; an accepted batch decodes exactly.
#![no_main]

use bytes::{BufMut, Bytes, BytesMut};
use headwater_log::batch::{decode_records, validate_for_append, HEADER_LEN, LOG_OVERHEAD};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: (u8, i16, Vec<u8>)| {
    let (count, attributes, body) = input;
    let count = i32::from(count % 8) + 1;
    let mut buf = BytesMut::with_capacity(HEADER_LEN + body.len());
    buf.put_i64(0);
    buf.put_i32((HEADER_LEN - LOG_OVERHEAD + body.len()) as i32);
    buf.put_i32(-1);
    buf.put_i8(2);
    buf.put_u32(0);
    buf.put_i16(attributes & 0x0f);
    buf.put_i32(count - 1);
    buf.put_i64(0);
    buf.put_i64(0);
    buf.put_i64(-1);
    buf.put_i16(-1);
    buf.put_i32(-1);
    buf.put_i32(count);
    buf.put_slice(&body);
    let crc = crc32c_of(&buf[21..]);
    buf[17..21].copy_from_slice(&crc.to_be_bytes());
    if validate_for_append(&buf).is_ok() {
        let records = decode_records(&Bytes::from(buf.to_vec())).expect("a valid batch decodes");
        assert_eq!(records.len(), count as usize);
    }
    let _ = decode_records(&buf.freeze());
});

/// CRC-32C (Castagnoli), bitwise: the fuzz crate does not depend on crc32c.
fn crc32c_of(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 { (crc >> 1) ^ 0x82F6_3B78 } else { crc >> 1 };
        }
    }
    !crc
}
