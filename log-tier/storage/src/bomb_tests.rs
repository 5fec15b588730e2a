//! Compression bombs: validation and decoding stop inflating at the topic's limit, the engine
//! checks `max_message_bytes` before decompressing, and `Log::read` inflates about `max_bytes`
//! per read instead of every batch it fetched.

use std::io::Write;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};

use super::*;
use crate::compression::DEFAULT_INFLATE_LIMIT;
use crate::config::{FlushMode, FlushPolicy, LogConfig};
use crate::engine::LogEngine;
use crate::log::Log;

/// A RecordBatch v2 of `count` records, each with a value of `value_len` zero bytes, compressed
/// with `codec` (1 gzip, 3 lz4, 4 zstd) as it is written: the inflated body is never held.
pub(crate) fn zero_batch(codec: i16, count: i32, value_len: usize) -> Bytes {
    let body = match codec {
        1 => {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            write_zero_records(&mut e, count, value_len);
            e.finish().unwrap()
        }
        3 => {
            let mut e = lz4::EncoderBuilder::new().build(Vec::new()).unwrap();
            write_zero_records(&mut e, count, value_len);
            let (body, done) = e.finish();
            done.unwrap();
            body
        }
        4 => {
            let mut e = zstd::stream::write::Encoder::new(Vec::new(), 1).unwrap();
            write_zero_records(&mut e, count, value_len);
            e.finish().unwrap()
        }
        _ => unreachable!("codec {codec}"),
    };
    frame(codec, count, &body)
}

/// Writes `count` records with no key, a value of `value_len` zeros and no headers.
fn write_zero_records(w: &mut dyn Write, count: i32, value_len: usize) {
    let zeros = vec![0u8; 1 << 20];
    for i in 0..i64::from(count) {
        let mut head = BytesMut::new();
        head.put_i8(0); // attributes
        put_varint(&mut head, 0); // timestamp delta
        put_varint(&mut head, i); // offset delta
        put_varint(&mut head, -1); // key
        put_varint(&mut head, value_len as i64);
        let mut len = BytesMut::new();
        put_varint(&mut len, (head.len() + value_len + 1) as i64);
        w.write_all(&len).unwrap();
        w.write_all(&head).unwrap();
        let mut left = value_len;
        while left > 0 {
            let n = left.min(zeros.len());
            w.write_all(&zeros[..n]).unwrap();
            left -= n;
        }
        w.write_all(&[0]).unwrap(); // no headers
    }
}

/// Wraps a compressed records body in a batch header with a good CRC.
fn frame(codec: i16, count: i32, body: &[u8]) -> Bytes {
    let mut buf = BytesMut::with_capacity(HEADER_LEN + body.len());
    buf.put_i64(0);
    buf.put_i32((HEADER_LEN - LOG_OVERHEAD + body.len()) as i32);
    buf.put_i32(-1);
    buf.put_i8(2);
    buf.put_u32(0);
    buf.put_i16(codec);
    buf.put_i32(count - 1);
    buf.put_i64(1000);
    buf.put_i64(1000);
    buf.put_i64(-1);
    buf.put_i16(-1);
    buf.put_i32(-1);
    buf.put_i32(count);
    buf.put_slice(body);
    let crc = crc32c::crc32c(&buf[CRC_START..]);
    buf[CRC_OFFSET..CRC_START].copy_from_slice(&crc.to_be_bytes());
    buf.freeze()
}

#[test]
fn validation_stops_inflating_at_the_limit() {
    for codec in [1, 3, 4] {
        // A few hundred KB declaring one record of 64 MiB: refused past 8 MiB.
        let bomb = zero_batch(codec, 1, 64 << 20);
        assert!(bomb.len() < 1 << 20, "codec {codec}: {} bytes", bomb.len());
        let err = validate_for_append(&bomb).unwrap_err();
        assert!(
            matches!(&err, LogError::InvalidBatch(m) if m.contains("more than 8388608 bytes")),
            "codec {codec}: {err}"
        );
        let err = decode_records(&bomb).unwrap_err();
        assert!(matches!(err, LogError::Corrupt { .. }), "{err}");
        // Within the limit: valid, and every record decodes.
        let fine = zero_batch(codec, 4, 1 << 20);
        assert_eq!(validate_for_append(&fine).unwrap().records_count, 4);
        let records = decode_records(&fine).unwrap();
        assert_eq!(records.len(), 4);
        assert_eq!(records[3].value.as_ref().unwrap().len(), 1 << 20);
        // A tighter limit refuses it.
        assert!(validate_for_append_within(&fine, 4 << 20).is_err());
        assert!(decode_records_within(&fine, 4 << 20).is_err());
        assert!(validate_for_append_within(&fine, DEFAULT_INFLATE_LIMIT).is_ok());
    }
}

#[test]
fn streamed_validation_still_checks_record_framing() {
    // The count in the header disagrees with the records in the compressed body.
    let batch = zero_batch(3, 3, 10);
    let mut bad = BytesMut::from(&batch[..]);
    bad[57..61].copy_from_slice(&2i32.to_be_bytes()); // records_count
    bad[23..27].copy_from_slice(&1i32.to_be_bytes()); // last offset delta
    let crc = crc32c::crc32c(&bad[CRC_START..]);
    bad[CRC_OFFSET..CRC_START].copy_from_slice(&crc.to_be_bytes());
    let err = validate_for_append(&bad).unwrap_err();
    assert!(
        err.to_string().contains("bytes after the last record"),
        "{err}"
    );
    bad[57..61].copy_from_slice(&4i32.to_be_bytes());
    bad[23..27].copy_from_slice(&3i32.to_be_bytes());
    let crc = crc32c::crc32c(&bad[CRC_START..]);
    bad[CRC_OFFSET..CRC_START].copy_from_slice(&crc.to_be_bytes());
    let err = validate_for_append(&bad).unwrap_err();
    assert!(
        err.to_string().contains("record 3 has a bad length"),
        "{err}"
    );
}

fn config() -> LogConfig {
    LogConfig {
        flush: FlushPolicy {
            mode: FlushMode::EveryAppend,
            interval_ms: 0,
            linger_us: 0,
        },
        ..LogConfig::default()
    }
}

#[tokio::test]
async fn engine_refuses_bombs_by_the_topics_limit() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config();
    cfg.topics.insert(
        "big".to_owned(),
        crate::config::TopicConfig {
            max_message_bytes: Some(4 << 20),
            ..Default::default()
        },
    );
    let engine = LogEngine::open(dir.path(), cfg).unwrap();
    // 12 MiB inflated: over the default topic's 8 MiB, within `big`'s 32 MiB.
    let batch = zero_batch(4, 3, 4 << 20);
    let err = engine
        .append_batch("small", 0, batch.clone())
        .await
        .unwrap_err();
    assert!(matches!(err, LogError::InvalidBatch(_)), "{err}");
    assert_eq!(engine.max_inflated_bytes("big"), 32 << 20);
    assert_eq!(engine.append_batch("big", 0, batch).await.unwrap(), 0);
    let records = engine
        .read("big", 0, 0, 1 << 20, Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(records.len(), 3);
    // A compressed batch over max_message_bytes as received is refused before it is
    // inflated (this body is not even lz4).
    let wide = frame(3, 1, &vec![7u8; 2 << 20]);
    let err = engine.append_batch("small", 0, wide).await.unwrap_err();
    assert!(matches!(err, LogError::MessageTooLarge { .. }), "{err}");
    engine.close().await.unwrap();
}

/// Ten gzip batches of 1 MiB of record bytes each fit in one 1 MiB read of stored bytes; the
/// read decodes about `max_bytes` of records (one batch), not all ten.
#[tokio::test]
async fn a_read_inflates_about_max_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let engine = LogEngine::open(dir.path(), config()).unwrap();
    for i in 0..10 {
        let batch = zero_batch(1, 256, 4096);
        assert!(batch.len() < 64 * 1024);
        assert_eq!(engine.append_batch("t", 0, batch).await.unwrap(), i * 256);
    }
    let stored = engine.read_raw("t", 0, 0, 1 << 20).unwrap();
    assert_eq!(split_batches(stored.records).count(), 10);
    let records = engine
        .read("t", 0, 0, 1 << 20, Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(records.len(), 256, "one batch of about max_bytes");
    let all = crate::testsuite::read_all(&*engine, "t", 0, 0).await;
    assert_eq!(all.len(), 2560);
    assert!(
        all.iter()
            .enumerate()
            .all(|(i, r)| r.offset == i as i64 && r.value.as_ref().unwrap().len() == 4096)
    );
    engine.close().await.unwrap();
}

/// A batch stored under a larger `max_message_bytes` inflates past the limit once it is
/// lowered: a read ends before it, and a read at it is `Corrupt` with `resume_at` its end, so
/// a reader (the router) goes on after it instead of failing there forever.
#[tokio::test]
async fn a_stored_batch_past_a_lowered_limit_ends_reads_and_says_where_to_resume() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config();
    cfg.topics.insert(
        "t".to_owned(),
        crate::config::TopicConfig {
            max_message_bytes: Some(4 << 20),
            ..Default::default()
        },
    );
    let engine = LogEngine::open(dir.path(), cfg).unwrap();
    for (i, value_len) in [10, 4 << 20, 10].into_iter().enumerate() {
        let batch = zero_batch(4, 3, value_len);
        assert_eq!(
            engine.append_batch("t", 0, batch).await.unwrap(),
            3 * i as i64
        );
    }
    engine.close().await.unwrap();
    drop(engine);
    // The default limit: 8 MiB, and the middle batch inflates to 12 MiB.
    let engine = LogEngine::open(dir.path(), config()).unwrap();
    let read = async |offset| {
        engine
            .read("t", 0, offset, 1 << 30, Duration::ZERO)
            .await
            .map(|records| records.iter().map(|r| r.offset).collect::<Vec<_>>())
    };
    assert_eq!(read(0).await.unwrap(), [0, 1, 2]);
    let err = read(3).await.unwrap_err();
    assert!(matches!(err, LogError::Corrupt { .. }), "{err}");
    assert_eq!(err.resume_at(), Some(6), "{err}");
    assert_eq!(read(6).await.unwrap(), [6, 7, 8]);
    engine.close().await.unwrap();
}
