//! Bounded decompression of RecordBatch bodies (gzip, snappy, lz4, zstd as Kafka clients write
//! them): a batch may not expand past [`MAX_DECOMPRESSED_BYTES`], so a compression bomb from a
//! producer (or a corrupt stored batch) is refused instead of allocated.

use std::io::Read;

use bytes::{Buf, Bytes};
use kafka_protocol::compression::{Decompressor, Lz4, Snappy};

/// Largest decompressed body of one batch.
pub const MAX_DECOMPRESSED_BYTES: usize = 128 << 20;

/// The xerial framing header kafka-protocol (and Kafka's Java client) use for snappy.
const XERIAL_MAGIC: &[u8; 16] = b"\x82SNAPPY\x00\x00\x00\x00\x01\x00\x00\x00\x01";

/// Decompresses a batch body with Kafka codec `codec` (0 none, 1 gzip, 2 snappy, 3 lz4, 4 zstd).
pub(crate) fn decompress(codec: i16, body: &Bytes) -> Result<Bytes, String> {
    let take = |b: &mut Bytes| Ok(b.copy_to_bytes(b.remaining()));
    let out = match codec {
        0 => return Ok(body.clone()),
        1 => read_bounded(flate2::read::MultiGzDecoder::new(&body[..]))?,
        2 => {
            check_snappy_lengths(body)?;
            Snappy::decompress(&mut body.clone(), take).map_err(|e| format!("snappy: {e}"))?
        }
        // LZ4 expands at most ~255×, so the allocation is bounded by the batch size.
        3 => Lz4::decompress(&mut body.clone(), take).map_err(|e| format!("lz4: {e}"))?,
        4 => {
            let decoder = zstd::stream::read::Decoder::with_buffer(&body[..])
                .map_err(|e| format!("zstd: {e}"))?;
            read_bounded(decoder)?
        }
        other => return Err(format!("unknown compression {other}")),
    };
    if out.len() > MAX_DECOMPRESSED_BYTES {
        return Err(too_big());
    }
    Ok(out)
}

fn too_big() -> String {
    format!("decompresses to more than {MAX_DECOMPRESSED_BYTES} bytes")
}

fn read_bounded(reader: impl Read) -> Result<Bytes, String> {
    let mut out = Vec::new();
    reader
        .take(MAX_DECOMPRESSED_BYTES as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| format!("decompression failed: {e}"))?;
    if out.len() > MAX_DECOMPRESSED_BYTES {
        return Err(too_big());
    }
    Ok(Bytes::from(out))
}

/// Snappy blocks declare their decompressed length up front and the decoder allocates it:
/// check the declared total first (raw snappy, or xerial-framed blocks).
fn check_snappy_lengths(body: &[u8]) -> Result<(), String> {
    let mut total = 0u64;
    if body.len() >= XERIAL_MAGIC.len() && body[..XERIAL_MAGIC.len()] == XERIAL_MAGIC[..] {
        let mut rest = &body[XERIAL_MAGIC.len()..];
        while rest.len() >= 4 {
            let n = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
            rest = &rest[4..];
            if n > rest.len() {
                return Err("snappy: truncated block".to_owned());
            }
            total += declared_len(&rest[..n])?;
            rest = &rest[n..];
        }
    } else {
        total = declared_len(body)?;
    }
    if total > MAX_DECOMPRESSED_BYTES as u64 {
        return Err(too_big());
    }
    Ok(())
}

/// The little-endian base-128 length that starts a raw snappy block.
fn declared_len(block: &[u8]) -> Result<u64, String> {
    let mut len = 0u64;
    for (i, &b) in block.iter().take(5).enumerate() {
        len |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Ok(len);
        }
    }
    Err("snappy: bad length header".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bombs_are_refused() {
        // Raw snappy declaring 4 GiB.
        let snappy = Bytes::from_static(&[0xff, 0xff, 0xff, 0xff, 0x0f, 0x00]);
        assert!(decompress(2, &snappy).unwrap_err().contains("more than"));
        // 130 members/frames of 1 MiB of zeros each: a few hundred KiB expanding past the cap.
        let mib = vec![0u8; 1 << 20];
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        std::io::Write::write_all(&mut gz, &mib).unwrap();
        let gz = gz.finish().unwrap().repeat(130);
        assert!(
            decompress(1, &Bytes::from(gz))
                .unwrap_err()
                .contains("more than")
        );
        let zst = zstd::encode_all(&mib[..], 1).unwrap().repeat(130);
        assert!(
            decompress(4, &Bytes::from(zst))
                .unwrap_err()
                .contains("more than")
        );
        // Small inputs still decompress.
        let zst = Bytes::from(zstd::encode_all(&b"hello"[..], 3).unwrap());
        assert_eq!(&decompress(4, &zst).unwrap()[..], b"hello");
    }
}
