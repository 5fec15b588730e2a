//! Reading request bodies within limits, and streaming decompression that stops at the limit
//! instead of inflating a bomb in memory.

use std::io::Read;

use axum::body::Body;
use axum::http::HeaderMap;
use axum::http::header::{CONTENT_ENCODING, CONTENT_LENGTH};
use bytes::Bytes;
use http_body_util::{BodyExt, Limited};

use crate::error::IngestError;

/// Reads the whole body, refusing more than `limit` bytes (also by `Content-Length` up front).
pub async fn read_limited(
    headers: &HeaderMap,
    body: Body,
    limit: u64,
) -> Result<Bytes, IngestError> {
    let declared = headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > limit) {
        return Err(IngestError::BodyTooLarge { limit });
    }
    let limit_usize = usize::try_from(limit).unwrap_or(usize::MAX);
    match Limited::new(body, limit_usize).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(error) => {
            if error.is::<http_body_util::LengthLimitError>() {
                Err(IngestError::BodyTooLarge { limit })
            } else {
                Err(IngestError::BodyRead(error.to_string()))
            }
        }
    }
}

/// Undoes `Content-Encoding` (`gzip`, `zstd`, `identity` or none), producing at most `limit`
/// bytes; a body that would inflate past it is refused after reading `limit + 1` bytes.
pub fn decompress(headers: &HeaderMap, body: Bytes, limit: u64) -> Result<Bytes, IngestError> {
    let encoding = headers
        .get(CONTENT_ENCODING)
        .map(|v| v.to_str().unwrap_or("?").trim().to_ascii_lowercase());
    match encoding.as_deref() {
        None | Some("") | Some("identity") => {
            if body.len() as u64 > limit {
                return Err(IngestError::DecompressedTooLarge { limit });
            }
            Ok(body)
        }
        Some("gzip") | Some("x-gzip") => {
            inflate(flate2::read::MultiGzDecoder::new(&body[..]), limit, "gzip")
        }
        Some("zstd") => {
            let decoder = zstd::stream::read::Decoder::new(&body[..])
                .map_err(|e| IngestError::Malformed(format!("zstd: {e}")))?;
            inflate(decoder, limit, "zstd")
        }
        Some(other) => Err(IngestError::UnsupportedEncoding(other.to_owned())),
    }
}

fn inflate(reader: impl Read, limit: u64, name: &str) -> Result<Bytes, IngestError> {
    let mut out = Vec::new();
    reader
        .take(limit.saturating_add(1))
        .read_to_end(&mut out)
        .map_err(|e| IngestError::Malformed(format!("{name}: {e}")))?;
    if out.len() as u64 > limit {
        return Err(IngestError::DecompressedTooLarge { limit });
    }
    Ok(Bytes::from(out))
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use axum::http::HeaderValue;

    use super::*;

    fn with_encoding(encoding: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_ENCODING, HeaderValue::from_str(encoding).unwrap());
        headers
    }

    fn gzip(data: &[u8]) -> Bytes {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        encoder.write_all(data).unwrap();
        Bytes::from(encoder.finish().unwrap())
    }

    #[test]
    fn gzip_and_zstd_round_trip() {
        let data = b"[{\"type\":\"a\"}]".repeat(10);
        let out = decompress(&with_encoding("gzip"), gzip(&data), 1 << 20).unwrap();
        assert_eq!(&out[..], &data[..]);
        let z = Bytes::from(zstd::encode_all(&data[..], 3).unwrap());
        let out = decompress(&with_encoding("zstd"), z, 1 << 20).unwrap();
        assert_eq!(&out[..], &data[..]);
    }

    #[test]
    fn a_gzip_bomb_stops_at_the_limit() {
        // 1 GiB of zeros compresses to about 1 MiB; build 64 MiB to keep the test quick.
        let bomb = gzip(&vec![0u8; 64 << 20]);
        assert!(bomb.len() < 1 << 20);
        let error = decompress(&with_encoding("gzip"), bomb, 1 << 20).unwrap_err();
        assert!(matches!(error, IngestError::DecompressedTooLarge { limit } if limit == 1 << 20));
    }

    #[test]
    fn corrupt_and_unknown_encodings_are_refused() {
        let error =
            decompress(&with_encoding("gzip"), Bytes::from_static(b"not gzip"), 100).unwrap_err();
        assert!(matches!(error, IngestError::Malformed(_)), "{error}");
        let error = decompress(&with_encoding("br"), Bytes::from_static(b"x"), 100).unwrap_err();
        assert!(
            matches!(error, IngestError::UnsupportedEncoding(_)),
            "{error}"
        );
    }
}
