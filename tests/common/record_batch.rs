//! Kafka RecordBatch v2 built by hand, compressed with gzip, lz4 or zstd as a stream (the
//! inflated body is never held): compression bombs of zeros, small batches, and batches of
//! records with headers, each with a good CRC-32C.

use std::io::Write;

/// Kafka codec ids.
pub(crate) const GZIP: i16 = 1;
pub(crate) const LZ4: i16 = 3;
pub(crate) const ZSTD: i16 = 4;

/// One record of a batch: the bytes before its value, the value's length, the bytes after.
pub(crate) struct RecordParts {
    head: Vec<u8>,
    value_len: usize,
    tail: Vec<u8>,
}

fn put_varint(out: &mut Vec<u8>, v: i64) {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    while z >= 0x80 {
        out.push((z as u8) | 0x80);
        z >>= 7;
    }
    out.push(z as u8);
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    put_varint(out, b.len() as i64);
    out.extend_from_slice(b);
}

/// Record `delta` of a batch: `key`, a value of `value_len` bytes, `headers`.
pub(crate) fn record_parts(
    delta: i64,
    key: &[u8],
    value_len: usize,
    headers: &[(&str, &[u8])],
) -> RecordParts {
    let mut head = vec![0u8]; // attributes
    put_varint(&mut head, 0); // timestamp delta
    put_varint(&mut head, delta);
    put_bytes(&mut head, key);
    put_varint(&mut head, value_len as i64);
    let mut tail = Vec::new();
    put_varint(&mut tail, headers.len() as i64);
    for (k, v) in headers {
        put_bytes(&mut tail, k.as_bytes());
        put_bytes(&mut tail, v);
    }
    RecordParts {
        head,
        value_len,
        tail,
    }
}

/// Writes one record, its value from `value` (called with the writer and the value length).
pub(crate) fn write_record(
    w: &mut dyn Write,
    parts: &RecordParts,
    value: &mut dyn FnMut(&mut dyn Write),
) {
    let mut len = Vec::new();
    put_varint(
        &mut len,
        (parts.head.len() + parts.value_len + parts.tail.len()) as i64,
    );
    w.write_all(&len).unwrap();
    w.write_all(&parts.head).unwrap();
    value(w);
    w.write_all(&parts.tail).unwrap();
}

/// A RecordBatch v2 of `count` records compressed with `codec` as `records` writes them (the
/// inflated body is never held), with a good CRC-32C.
pub(crate) fn batch(codec: i16, count: i32, records: impl FnOnce(&mut dyn Write)) -> Vec<u8> {
    let body = match codec {
        GZIP => {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
            records(&mut e);
            e.finish().unwrap()
        }
        LZ4 => {
            let mut e = lz4::EncoderBuilder::new().build(Vec::new()).unwrap();
            records(&mut e);
            let (body, done) = e.finish();
            done.unwrap();
            body
        }
        ZSTD => {
            let mut e = zstd::stream::write::Encoder::new(Vec::new(), 1).unwrap();
            records(&mut e);
            e.finish().unwrap()
        }
        _ => unreachable!("codec {codec}"),
    };
    let mut b = Vec::with_capacity(61 + body.len());
    b.extend(0i64.to_be_bytes()); // base offset
    b.extend(((49 + body.len()) as i32).to_be_bytes()); // batch length
    b.extend((-1i32).to_be_bytes()); // partition leader epoch
    b.push(2); // magic
    b.extend(0u32.to_be_bytes()); // crc, below
    b.extend(codec.to_be_bytes()); // attributes
    b.extend((count - 1).to_be_bytes()); // last offset delta
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    b.extend(now.to_be_bytes()); // base timestamp
    b.extend(now.to_be_bytes()); // max timestamp
    b.extend((-1i64).to_be_bytes()); // producer id
    b.extend((-1i16).to_be_bytes()); // producer epoch
    b.extend((-1i32).to_be_bytes()); // base sequence
    b.extend(count.to_be_bytes());
    b.extend_from_slice(&body);
    let crc = crc32c::crc32c(&b[21..]);
    b[17..21].copy_from_slice(&crc.to_be_bytes());
    b
}

/// One record whose value is `value_len` zero bytes: the bomb.
pub(crate) fn zeros_batch(codec: i16, value_len: usize) -> Vec<u8> {
    batch(codec, 1, |w| {
        let parts = record_parts(0, b"bomb", value_len, &[]);
        write_record(w, &parts, &mut |w| {
            let zeros = vec![0u8; 1 << 20];
            let mut left = value_len;
            while left > 0 {
                let n = left.min(zeros.len());
                w.write_all(&zeros[..n]).unwrap();
                left -= n;
            }
        });
    })
}

/// `count` small records (`value-0`, `value-1`…).
pub(crate) fn small_batch(codec: i16, count: i32) -> Vec<u8> {
    batch(codec, count, |w| {
        for i in 0..count {
            let value = format!("value-{i}");
            let parts = record_parts(i64::from(i), b"k", value.len(), &[]);
            write_record(w, &parts, &mut |w| w.write_all(value.as_bytes()).unwrap());
        }
    })
}
