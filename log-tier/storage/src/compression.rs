//! Bounded decompression of RecordBatch bodies (gzip, snappy, lz4, zstd as Kafka clients write
//! them). Every codec is read as a stream that fails once it has produced more than a limit, so
//! a compression bomb costs at most the limit in memory and CPU before it is refused, whatever
//! its ratio. The limit is per topic: [`inflate_limit`] of its `max_message_bytes`.

use std::io::{self, Read};

use bytes::{Buf, Bytes};
use kafka_protocol::compression::{Decompressor, Snappy};

/// Ceiling of the inflated body of one batch, unless the topic's `max_message_bytes` is larger.
pub const MAX_DECOMPRESSED_BYTES: usize = 128 << 20;

/// A compressed batch may inflate to this many times its topic's `max_message_bytes`.
pub const INFLATION_RATIO: usize = 8;

/// The inflation limit of a topic with the default `max_message_bytes` (1 MiB): 8 MiB. Used by
/// [`crate::batch::validate_for_append`] and [`crate::batch::decode_records`], which do not
/// know the topic.
pub const DEFAULT_INFLATE_LIMIT: usize = (1 << 20) * INFLATION_RATIO;

/// Most bytes a compressed batch of a topic whose `max_message_bytes` is `max_message_bytes`
/// may decompress to: [`INFLATION_RATIO`] × `max_message_bytes`, at most
/// [`MAX_DECOMPRESSED_BYTES`] (or `max_message_bytes` itself when that is larger).
pub fn inflate_limit(max_message_bytes: u32) -> usize {
    let max = max_message_bytes as usize;
    max.saturating_mul(INFLATION_RATIO)
        .min(MAX_DECOMPRESSED_BYTES.max(max))
}

/// Why a compressed batch body could not be decompressed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InflateError {
    /// The body decompresses to more than the limit (a compression bomb, or a batch far larger
    /// than the topic's `max_message_bytes` suggests).
    #[error(
        "decompresses to more than {limit} bytes (the topic's limit: {INFLATION_RATIO} × max_message_bytes)"
    )]
    TooLarge {
        /// The limit, in bytes.
        limit: usize,
    },
    /// The codec refused the bytes.
    #[error("{codec}: {reason}")]
    Codec {
        /// Codec name.
        codec: &'static str,
        /// What it said.
        reason: String,
    },
    /// Not one of Kafka's codecs.
    #[error("unknown compression {0}")]
    Unknown(i16),
}

impl InflateError {
    /// Recovers the typed error a [`Bounded`] reader put inside an `io::Error`, or describes a
    /// codec's own error.
    pub(crate) fn from_io(codec: i16, error: &io::Error) -> Self {
        match error
            .get_ref()
            .and_then(|e| e.downcast_ref::<InflateError>())
        {
            Some(inner) => inner.clone(),
            None => InflateError::Codec {
                codec: codec_name(codec),
                reason: error.to_string(),
            },
        }
    }
}

fn codec_name(codec: i16) -> &'static str {
    match codec {
        1 => "gzip",
        2 => "snappy",
        3 => "lz4",
        4 => "zstd",
        _ => "none",
    }
}

/// A reader that fails with [`InflateError::TooLarge`] (inside an `io::Error`) as soon as its
/// inner reader produces more than `left` bytes. Unlike `Read::take`, going over is an error,
/// not a silent end.
pub(crate) struct Bounded<R> {
    inner: R,
    left: usize,
    limit: usize,
}

impl<R: Read> Read for Bounded<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        // Ask for one byte more than allowed, so going over is seen, never buffered.
        let want = buf.len().min(self.left.saturating_add(1));
        let n = self.inner.read(&mut buf[..want])?;
        if n > self.left {
            return Err(io::Error::other(InflateError::TooLarge {
                limit: self.limit,
            }));
        }
        self.left -= n;
        Ok(n)
    }
}

/// A reader of the decompressed `body` (Kafka codec `codec`: 1 gzip, 2 snappy, 3 lz4, 4 zstd)
/// that fails past `limit` bytes. gzip, lz4 and zstd are streamed (their working memory is
/// their window: 32 KiB, at most 2 × 4 MiB blocks, and what zstd has produced); snappy's
/// declared lengths are checked against `limit` before its blocks are decoded.
pub(crate) fn inflater<'a>(
    codec: i16,
    body: &'a [u8],
    limit: usize,
) -> Result<Bounded<Box<dyn Read + Send + 'a>>, InflateError> {
    let codec_error = |e: io::Error| InflateError::Codec {
        codec: codec_name(codec),
        reason: e.to_string(),
    };
    let inner: Box<dyn Read + Send + 'a> = match codec {
        1 => Box::new(flate2::read::MultiGzDecoder::new(body)),
        2 => Box::new(io::Cursor::new(snappy(body, limit)?)),
        3 => Box::new(lz4::Decoder::new(body).map_err(codec_error)?),
        4 => Box::new(zstd::stream::read::Decoder::with_buffer(body).map_err(codec_error)?),
        other => return Err(InflateError::Unknown(other)),
    };
    Ok(Bounded {
        inner,
        left: limit,
        limit,
    })
}

/// Decompresses a whole batch body with Kafka codec `codec` (0 none, 1 gzip, 2 snappy, 3 lz4,
/// 4 zstd) into memory, refusing it past `limit` bytes; the buffer grows as bytes come, so a
/// refused bomb has cost at most `limit`.
pub(crate) fn decompress(codec: i16, body: &Bytes, limit: usize) -> Result<Bytes, InflateError> {
    if codec == 0 {
        return Ok(body.clone());
    }
    let mut out = Vec::new();
    inflater(codec, body, limit)?
        .read_to_end(&mut out)
        .map_err(|e| InflateError::from_io(codec, &e))?;
    Ok(Bytes::from(out))
}

/// The xerial framing header kafka-protocol (and Kafka's Java client) use for snappy.
const XERIAL_MAGIC: &[u8; 16] = b"\x82SNAPPY\x00\x00\x00\x00\x01\x00\x00\x00\x01";

/// Snappy blocks declare their decompressed length up front and the decoder allocates it:
/// the declared total is checked against `limit` first, then the blocks are decoded.
fn snappy(body: &[u8], limit: usize) -> Result<Bytes, InflateError> {
    check_snappy_lengths(body, limit)?;
    let take = |b: &mut Bytes| Ok(b.copy_to_bytes(b.remaining()));
    Snappy::decompress(&mut Bytes::copy_from_slice(body), take).map_err(|e| InflateError::Codec {
        codec: "snappy",
        reason: e.to_string(),
    })
}

/// Sums the lengths snappy blocks declare (raw snappy, or xerial-framed blocks).
fn check_snappy_lengths(body: &[u8], limit: usize) -> Result<(), InflateError> {
    let bad = |reason: &str| InflateError::Codec {
        codec: "snappy",
        reason: reason.to_owned(),
    };
    let mut total = 0u64;
    if body.len() >= XERIAL_MAGIC.len() && body[..XERIAL_MAGIC.len()] == XERIAL_MAGIC[..] {
        let mut rest = &body[XERIAL_MAGIC.len()..];
        while rest.len() >= 4 {
            let n = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
            rest = &rest[4..];
            if n > rest.len() {
                return Err(bad("truncated block"));
            }
            total += declared_len(&rest[..n]).ok_or_else(|| bad("bad length header"))?;
            rest = &rest[n..];
        }
    } else {
        total = declared_len(body).ok_or_else(|| bad("bad length header"))?;
    }
    if total > limit as u64 {
        return Err(InflateError::TooLarge { limit });
    }
    Ok(())
}

/// The little-endian base-128 length that starts a raw snappy block.
fn declared_len(block: &[u8]) -> Option<u64> {
    let mut len = 0u64;
    for (i, &b) in block.iter().take(5).enumerate() {
        len |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Some(len);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    /// `n` zero bytes compressed with `codec`, written in 1 MiB pieces (never held whole).
    pub(crate) fn zeros(codec: i16, n: usize) -> Vec<u8> {
        let piece = vec![0u8; 1 << 20];
        let mut sink = Vec::new();
        {
            let write_all = |w: &mut dyn Write| {
                let mut left = n;
                while left > 0 {
                    let k = left.min(piece.len());
                    w.write_all(&piece[..k]).unwrap();
                    left -= k;
                }
            };
            match codec {
                1 => {
                    let mut e =
                        flate2::write::GzEncoder::new(&mut sink, flate2::Compression::best());
                    write_all(&mut e);
                    e.finish().unwrap();
                }
                3 => {
                    let mut e = lz4::EncoderBuilder::new().build(&mut sink).unwrap();
                    write_all(&mut e);
                    e.finish().1.unwrap();
                }
                4 => {
                    let mut e = zstd::stream::write::Encoder::new(&mut sink, 3).unwrap();
                    write_all(&mut e);
                    e.finish().unwrap();
                }
                _ => unreachable!("no streaming encoder for codec {codec}"),
            }
        }
        sink
    }

    #[test]
    fn limit_follows_max_message_bytes() {
        assert_eq!(inflate_limit(1 << 20), 8 << 20);
        assert_eq!(inflate_limit(1024), 8192);
        assert_eq!(inflate_limit(64 << 20), MAX_DECOMPRESSED_BYTES);
        assert_eq!(inflate_limit(200 << 20), 200 << 20);
        assert_eq!(DEFAULT_INFLATE_LIMIT, inflate_limit(1 << 20));
    }

    #[test]
    fn bombs_are_refused() {
        // Raw snappy declaring 4 GiB.
        let snappy = Bytes::from_static(&[0xff, 0xff, 0xff, 0xff, 0x0f, 0x00]);
        assert!(matches!(
            decompress(2, &snappy, MAX_DECOMPRESSED_BYTES),
            Err(InflateError::TooLarge { .. })
        ));
        // 130 members/frames of 1 MiB of zeros each: a few hundred KiB expanding past the cap.
        let mib = vec![0u8; 1 << 20];
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        gz.write_all(&mib).unwrap();
        let gz = gz.finish().unwrap().repeat(130);
        let err = decompress(1, &Bytes::from(gz), MAX_DECOMPRESSED_BYTES).unwrap_err();
        assert!(err.to_string().contains("more than"), "{err}");
        let zst = zstd::encode_all(&mib[..], 1).unwrap().repeat(130);
        assert!(matches!(
            decompress(4, &Bytes::from(zst), MAX_DECOMPRESSED_BYTES),
            Err(InflateError::TooLarge { .. })
        ));
        // Small inputs still decompress.
        let zst = Bytes::from(zstd::encode_all(&b"hello"[..], 3).unwrap());
        assert_eq!(&decompress(4, &zst, 5).unwrap()[..], b"hello");
        assert!(matches!(
            decompress(4, &zst, 4),
            Err(InflateError::TooLarge { limit: 4 })
        ));
    }

    /// Every codec stops at the limit while decompressing: a 256 MiB lz4 bomb (1 MB) is
    /// refused after 8 MiB, without ever holding more than the limit.
    #[test]
    fn every_codec_stops_at_the_limit() {
        for (codec, n) in [(1, 64 << 20), (3, 256 << 20), (4, 256 << 20)] {
            let bomb = Bytes::from(zeros(codec, n));
            assert!(bomb.len() < n / 100, "codec {codec}: {} bytes", bomb.len());
            let err = decompress(codec, &bomb, DEFAULT_INFLATE_LIMIT).unwrap_err();
            assert_eq!(
                err,
                InflateError::TooLarge {
                    limit: DEFAULT_INFLATE_LIMIT
                },
                "codec {codec}"
            );
            let small = Bytes::from(zeros(codec, 1000));
            assert_eq!(decompress(codec, &small, 1000).unwrap().len(), 1000);
            assert!(decompress(codec, &small, 999).is_err());
        }
        // Snappy (xerial-framed, as Kafka clients write it) against the same limit.
        use bytes::BufMut;
        use kafka_protocol::compression::Compressor;
        let mut framed = bytes::BytesMut::new();
        Snappy::compress(&mut framed, |b: &mut bytes::BytesMut| {
            b.put_bytes(0, 100_000);
            Ok(())
        })
        .unwrap();
        let framed = framed.freeze();
        assert_eq!(decompress(2, &framed, 100_000).unwrap().len(), 100_000);
        assert!(matches!(
            decompress(2, &framed, 99_999),
            Err(InflateError::TooLarge { .. })
        ));
    }
}
