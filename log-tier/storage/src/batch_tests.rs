//! Tests of the batch codec against kafka-protocol's reference encoder and decoder.

use super::*;
use bytes::Bytes;
use kafka_protocol::indexmap::IndexMap;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{
    Compression, Record as KRecord, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions,
    TimestampType,
};
use proptest::prelude::*;

fn arb_bytes() -> impl Strategy<Value = Option<Bytes>> {
    proptest::option::of(proptest::collection::vec(any::<u8>(), 0..300).prop_map(Bytes::from))
}

fn arb_record() -> impl Strategy<Value = Record> {
    (
        arb_bytes(),
        arb_bytes(),
        proptest::collection::btree_map("[a-z]{1,8}", arb_bytes(), 0..4),
        0i64..4_000_000_000_000,
    )
        .prop_map(|(key, value, headers, timestamp_ms)| Record {
            partition: None,
            key,
            value,
            headers: headers
                .into_iter()
                .map(|(key, value)| Header {
                    key: key.into(),
                    value,
                })
                .collect(),
            timestamp_ms,
        })
}

fn to_kafka(records: &[Record], base_offset: i64, producer: ProducerFields) -> Vec<KRecord> {
    records
        .iter()
        .enumerate()
        .map(|(i, r)| KRecord {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: producer.producer_id,
            producer_epoch: producer.producer_epoch,
            timestamp_type: TimestampType::Creation,
            offset: base_offset + i as i64,
            // kafka-protocol reports base sequence + delta even without a producer.
            sequence: producer.base_sequence.wrapping_add(i as i32),
            timestamp: r.timestamp_ms,
            key: r.key.clone(),
            value: r.value.clone(),
            headers: r
                .headers
                .iter()
                .map(|h| (StrBytes::from_string(h.key.to_string()), h.value.clone()))
                .collect::<IndexMap<_, _>>(),
        })
        .collect()
}

fn compression(i: u8) -> Compression {
    match i {
        0 => Compression::None,
        1 => Compression::Gzip,
        2 => Compression::Snappy,
        3 => Compression::Lz4,
        _ => Compression::Zstd,
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Our hand-written encoder's output decodes with kafka-protocol to the same records.
    #[test]
    fn encoder_matches_kafka_protocol_decoder(
        records in proptest::collection::vec(arb_record(), 1..20),
        base in 0i64..1_000_000,
        pid in -1i64..5,
    ) {
        let producer = if pid < 0 { ProducerFields::NONE } else {
            ProducerFields { producer_id: pid, producer_epoch: 1, base_sequence: 7 }
        };
        let refs: Vec<&Record> = records.iter().collect();
        let mut buf = encode(&refs, producer).unwrap();
        set_base_offset(&mut buf, base);
        let header = validate_for_append(&buf).unwrap();
        prop_assert_eq!(header.records_count as usize, records.len());
        let mut bytes = buf.freeze();
        let decoded = RecordBatchDecoder::decode(&mut bytes).unwrap();
        prop_assert_eq!(decoded.records, to_kafka(&records, base, producer));
    }

    /// Batches kafka-protocol encodes (any compression) decode with ours, and pass validation.
    #[test]
    fn decoder_reads_kafka_protocol_batches(
        records in proptest::collection::vec(arb_record(), 1..20),
        codec in 0u8..5,
        base in 0i64..1_000_000,
    ) {
        let producer = ProducerFields { producer_id: 3, producer_epoch: 0, base_sequence: 0 };
        let kafka = to_kafka(&records, base, producer);
        let mut buf = bytes::BytesMut::new();
        let options = RecordEncodeOptions { version: 2, compression: compression(codec) };
        RecordBatchEncoder::encode(&mut buf, &kafka, &options).unwrap();
        let header = validate_for_append(&buf).unwrap();
        prop_assert_eq!(header.base_offset, base);
        prop_assert_eq!(header.producer_id, 3);
        prop_assert_eq!(header.last_sequence(), records.len() as i32 - 1);
        let stored = decode_records(&buf.freeze()).unwrap();
        prop_assert_eq!(stored.len(), records.len());
        for (i, (s, r)) in stored.iter().zip(&records).enumerate() {
            prop_assert_eq!(s.offset, base + i as i64);
            prop_assert_eq!(s.timestamp_ms, r.timestamp_ms);
            prop_assert_eq!(&s.key, &r.key);
            prop_assert_eq!(&s.value, &r.value);
            prop_assert_eq!(&s.headers, &r.headers);
        }
    }

    /// Any single flipped bit after the base offset is caught by validation (except in the
    /// partition leader epoch, which the v2 CRC does not cover either).
    #[test]
    fn flipped_bits_are_detected(records in proptest::collection::vec(arb_record(), 1..5), at in any::<usize>(), bit in 0u8..8) {
        let refs: Vec<&Record> = records.iter().collect();
        let mut buf = encode(&refs, ProducerFields::NONE).unwrap();
        let mut i = 8 + at % (buf.len() - 12);
        if i >= 12 {
            i += 4;
        }
        buf[i] ^= 1 << bit;
        prop_assert!(validate_for_append(&buf).is_err());
    }
}

#[test]
fn duplicate_header_keys_keep_order() {
    let r = Record {
        key: Some(Bytes::from_static(b"k")),
        value: None,
        headers: vec![
            Header {
                key: "a".into(),
                value: Some(Bytes::from_static(b"1")),
            },
            Header {
                key: "a".into(),
                value: None,
            },
            Header {
                key: "b".into(),
                value: Some(Bytes::new()),
            },
        ],
        timestamp_ms: 5,
        partition: None,
    };
    let buf = encode(&[&r, &r], ProducerFields::NONE).unwrap().freeze();
    let out = decode_records(&buf).unwrap();
    assert_eq!(out.len(), 2);
    assert_eq!(out[1].offset, 1);
    assert_eq!(out[0].headers, r.headers);
    assert_eq!(out[0].value, None);
}

#[test]
fn common_header_names_decode_borrowed_and_others_owned() {
    let header = |key: &str| Header {
        key: key.to_owned().into(),
        value: Some(Bytes::from_static(b"v")),
    };
    let r = Record {
        headers: vec![
            header("hw.id"),
            header("hw.received_at"),
            header("hw.truncated"),
            header("hw.attr.region"),
            header("hw."),
            header("x"),
        ],
        ..Record::default()
    };
    let buf = encode(&[&r], ProducerFields::NONE).unwrap().freeze();
    let out = decode_records(&buf).unwrap();
    assert_eq!(out[0].headers, r.headers);
    let borrowed: Vec<bool> = out[0]
        .headers
        .iter()
        .map(|h| matches!(h.key, std::borrow::Cow::Borrowed(_)))
        .collect();
    assert_eq!(borrowed, [true, true, true, false, false, false]);
}

#[test]
fn validation_rejects_bad_batches() {
    let r = Record {
        value: Some(Bytes::from_static(b"v")),
        ..Record::default()
    };
    let buf = encode(&[&r], ProducerFields::NONE).unwrap();
    assert!(validate_for_append(&buf[..buf.len() - 1]).is_err());
    assert!(validate_for_append(&buf[..30]).is_err());
    let mut magic = buf.clone();
    magic[16] = 1;
    assert!(validate_for_append(&magic).is_err());
    let mut two = buf.clone();
    two.extend_from_slice(&buf);
    assert!(validate_for_append(&two).is_err());
    assert!(encode::<Record>(&[], ProducerFields::NONE).is_err());
    assert_eq!(split_batches(two.freeze()).count(), 2);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Decoders never panic on arbitrary bytes (a cheap stand-in for a fuzz target).
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let _ = validate_for_append(&bytes);
        let b = Bytes::from(bytes.clone());
        let _ = split_batches(b.clone()).count();
        let _ = decode_records(&b);
        let _ = crate::index::OffsetIndex::decode(&bytes);
        let _ = crate::index::TimeIndex::decode(&bytes);
    }

    /// A batch whose records were tampered with (CRC recomputed, so it looks intact) is refused
    /// or decodes consistently; never a panic, never a wrong offset count.
    #[test]
    fn tampered_records_with_fixed_crc(records in proptest::collection::vec(arb_record(), 1..5), at in any::<usize>(), byte in any::<u8>()) {
        let refs: Vec<&Record> = records.iter().collect();
        let mut buf = encode(&refs, ProducerFields::NONE).unwrap();
        let i = HEADER_LEN + at % (buf.len() - HEADER_LEN);
        buf[i] = byte;
        let crc = crc32c::crc32c(&buf[CRC_START..]);
        buf[CRC_OFFSET..CRC_START].copy_from_slice(&crc.to_be_bytes());
        if validate_for_append(&buf).is_ok() {
            let decoded = decode_records(&buf.freeze()).unwrap();
            prop_assert_eq!(decoded.len(), records.len());
            for (k, r) in decoded.iter().enumerate() {
                prop_assert_eq!(r.offset, k as i64);
            }
        }
    }
}

#[test]
fn huge_record_count_is_refused_without_allocating() {
    let r = Record {
        value: Some(Bytes::from_static(b"v")),
        ..Record::default()
    };
    let mut buf = encode(&[&r], ProducerFields::NONE).unwrap();
    buf[23..27].copy_from_slice(&(i32::MAX - 1).to_be_bytes()); // last offset delta
    buf[57..61].copy_from_slice(&i32::MAX.to_be_bytes()); // records count
    let crc = crc32c::crc32c(&buf[CRC_START..]);
    buf[CRC_OFFSET..CRC_START].copy_from_slice(&crc.to_be_bytes());
    assert!(validate_for_append(&buf).is_err());
    assert!(decode_records(&buf.freeze()).is_err());
}

/// Found by `scripts/fuzz` (record_batch): a batch near `i64::MAX` whose record offset delta
/// overflowed the base offset and panicked in `decode_record`. Now a decode error.
#[test]
fn offset_delta_overflow_is_an_error_not_a_panic() {
    const CRASH: &str = "40000002020000000000007fff010102020102000000000000a4ffff0000000000015c5c5c2f5c2b5c5c5c1c5c5c5c5c5c5c5c5c5c5c5c5c5c5c5c5c5c5c5c30e4ffffffffffffffff0000000000000001ffffffffffffffffffffff4508000000000000ffffffffffffffffffffffffffffffffff5cffee343434343434010202b2b2b2b2b2920202b2ff";
    let data: Vec<u8> = (0..CRASH.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&CRASH[i..i + 2], 16).unwrap())
        .collect();
    let bytes = Bytes::from(data);
    let _ = validate_for_append(&bytes);
    for (_, batch) in split_batches(bytes) {
        let _ = decode_records(&batch);
    }
}

#[test]
fn a_varints_length_is_the_bytes_it_is_written_in() {
    let mut values = vec![0i64, -1, 1, i64::MAX, i64::MIN];
    for shift in 0..63 {
        let at = 1i64 << shift;
        values.extend([at - 1, at, at + 1, -at, -at - 1, -at + 1]);
    }
    for v in values {
        let mut written = BytesMut::new();
        put_varint(&mut written, v);
        assert_eq!(varint_len(zigzag(v)), written.len(), "{v}");
        let mut read = &written[..];
        assert_eq!(get_varint(&mut read), Ok(v), "{v}");
    }
}

/// `records` with their headers written by one [`HeadersWriter`], as the gateway prepares them.
pub(crate) fn prepared(records: &[Record]) -> Vec<PreparedRecord> {
    let mut writer = HeadersWriter::default();
    for r in records {
        for h in &r.headers {
            writer.header(&h.key, h.value.as_deref());
        }
        writer.end_record();
    }
    let headers = writer.freeze();
    assert_eq!(headers.records().len(), records.len());
    records
        .iter()
        .zip(headers.records())
        .map(|(r, headers)| PreparedRecord {
            key: r.key.clone(),
            value: r.value.clone(),
            headers,
            timestamp_ms: r.timestamp_ms,
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Records whose headers come encoded make the same batch, byte for byte, as the same
    /// records with header lists, and give those lists back.
    #[test]
    fn prepared_records_encode_as_their_header_lists_do(
        records in proptest::collection::vec(arb_record(), 1..20),
    ) {
        let prepared = prepared(&records);
        let lists: Vec<&Record> = records.iter().collect();
        let encoded: Vec<&PreparedRecord> = prepared.iter().collect();
        prop_assert_eq!(
            encode(&encoded, ProducerFields::NONE).unwrap(),
            encode(&lists, ProducerFields::NONE).unwrap()
        );
        for (p, r) in prepared.into_iter().zip(&records) {
            prop_assert_eq!(p.headers.count() as usize, r.headers.len());
            prop_assert_eq!(&p.into_record().unwrap(), r);
        }
    }
}

#[test]
fn a_record_without_headers_and_the_envelopes_names() {
    let mut writer = HeadersWriter::with_capacity(2, 64);
    writer.end_record();
    let id = writer.header("hw.id", Some(b"e1"));
    let null = writer.header("x", None);
    writer.end_record();
    writer.header("dropped", Some(b"not ended"));
    let frozen = writer.freeze();
    assert_eq!(frozen.slice(id), &b"e1"[..]);
    assert!(null.is_empty());
    let headers: Vec<EncodedHeaders> = frozen.records().collect();
    assert_eq!(headers.len(), 2);
    assert_eq!(headers[0], EncodedHeaders::default());
    assert_eq!(headers[0].decode().unwrap(), Vec::new());
    let decoded = headers[1].decode().unwrap();
    // A name of the envelope comes back borrowed, as a read gives it.
    assert!(matches!(decoded[0].key, Cow::Borrowed("hw.id")));
    assert_eq!(decoded[0].value.as_deref(), Some(&b"e1"[..]));
    assert_eq!(decoded[1].key, "x");
    assert_eq!(decoded[1].value, None);
}
