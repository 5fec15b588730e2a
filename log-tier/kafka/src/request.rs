//! Turning one request frame (the bytes after the length prefix) into a header and a request:
//! sans-I/O, so it is what the fuzz target drives.

use bytes::{Buf, Bytes};
use kafka_protocol::messages::{ApiKey, RequestHeader, RequestKind};
use kafka_protocol::protocol::Decodable;

use super::versions;

/// A decoded request.
#[derive(Debug)]
pub struct Decoded {
    /// The API.
    pub api_key: ApiKey,
    /// Its version.
    pub version: i16,
    /// The request header (correlation id, client id).
    pub header: RequestHeader,
    /// The request body.
    pub request: RequestKind,
}

/// Why a frame is not a request this broker serves.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// Fewer bytes than the fixed part of a request header.
    #[error("frame of {0} bytes is too short for a request header")]
    TooShort(usize),
    /// An API key Kafka does not define.
    #[error("unknown api key {0}")]
    UnknownApiKey(i16),
    /// An API this broker does not serve.
    #[error("api {0:?} is not served")]
    NotServed(ApiKey),
    /// ApiVersions in a version not served: answered with UNSUPPORTED_VERSION in v0.
    #[error("ApiVersions v{version} is not served")]
    ApiVersionsUnsupported {
        /// The version asked for.
        version: i16,
        /// The request's correlation id, for the answer.
        correlation_id: i32,
    },
    /// Another API in a version not served.
    #[error("{api_key:?} v{version} is not served (v{min}..=v{max})")]
    UnsupportedVersion {
        /// The API.
        api_key: ApiKey,
        /// The version asked for.
        version: i16,
        /// Lowest version served.
        min: i16,
        /// Highest version served.
        max: i16,
    },
    /// The header or body does not decode.
    #[error("{api_key:?} v{version}: {reason}")]
    Malformed {
        /// The API.
        api_key: ApiKey,
        /// The version.
        version: i16,
        /// The decoder's complaint.
        reason: String,
    },
}

/// A request's API, version and header, decoded before its body so that a connection can
/// refuse the request before the body decoder (and its allocations) runs.
#[derive(Debug)]
pub struct Head {
    /// The API.
    pub api_key: ApiKey,
    /// Its version.
    pub version: i16,
    /// The request header (correlation id, client id).
    pub header: RequestHeader,
}

/// Decodes a request frame. The version must be one this broker can serve (SASL APIs
/// included); whether the API is offered on this listener is the caller's check.
pub fn decode_request(mut frame: Bytes) -> Result<Decoded, DecodeError> {
    let head = decode_head(&mut frame)?;
    let request = decode_body(&head, &mut frame)?;
    Ok(Decoded {
        api_key: head.api_key,
        version: head.version,
        header: head.header,
        request,
    })
}

/// Decodes the API key, version and request header, leaving `frame` at the body.
pub fn decode_head(frame: &mut Bytes) -> Result<Head, DecodeError> {
    if frame.len() < 8 {
        return Err(DecodeError::TooShort(frame.len()));
    }
    let raw_key = (&frame[0..2]).get_i16();
    let version = (&frame[2..4]).get_i16();
    let api_key = ApiKey::try_from(raw_key).map_err(|_| DecodeError::UnknownApiKey(raw_key))?;
    let (min, max) = versions::range(api_key).ok_or(DecodeError::NotServed(api_key))?;
    if !(min..=max).contains(&version) {
        if api_key == ApiKey::ApiVersions {
            let correlation_id = (&frame[4..8]).get_i32();
            return Err(DecodeError::ApiVersionsUnsupported {
                version,
                correlation_id,
            });
        }
        return Err(DecodeError::UnsupportedVersion {
            api_key,
            version,
            min,
            max,
        });
    }
    let header = RequestHeader::decode(frame, api_key.request_header_version(version))
        .map_err(|e| malformed(api_key, version, "request header", &e))?;
    Ok(Head {
        api_key,
        version,
        header,
    })
}

/// Decodes the body of the request `head` describes.
pub fn decode_body(head: &Head, frame: &mut Bytes) -> Result<RequestKind, DecodeError> {
    RequestKind::decode(head.api_key, frame, head.version)
        .map_err(|e| malformed(head.api_key, head.version, "body", &e))
}

fn malformed(
    api_key: ApiKey,
    version: i16,
    what: &str,
    error: &dyn std::fmt::Display,
) -> DecodeError {
    DecodeError::Malformed {
        api_key,
        version,
        reason: format!("{what}: {error}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A frame of `api_key` v`version` with correlation id 1, a null client id (plus the
    /// empty tagged fields of a flexible header) and `body`.
    fn frame(api_key: ApiKey, version: i16, body: &[u8]) -> Bytes {
        let mut frame = (api_key as i16).to_be_bytes().to_vec();
        frame.extend_from_slice(&version.to_be_bytes());
        frame.extend_from_slice(&[0, 0, 0, 1, 0xff, 0xff]);
        if api_key.request_header_version(version) >= 2 {
            frame.push(0);
        }
        frame.extend_from_slice(body);
        Bytes::from(frame)
    }

    /// Lengths off the wire far beyond the frame are refused without reserving them; before
    /// the vendored kafka-protocol patch each of these aborted the process.
    #[test]
    fn huge_declared_lengths_are_refused_without_allocating() {
        let huge_i32 = [0x7f, 0xff, 0xff, 0xff];
        let huge_varint = [0xff, 0xff, 0xff, 0xff, 0x0f];
        let cases = [
            frame(ApiKey::Metadata, 0, &huge_i32),
            frame(ApiKey::Metadata, 12, &huge_varint),
            frame(
                ApiKey::Produce,
                3,
                &[0xff, 0xff, 0, 0, 0, 1, 0, 0, 0, 0, 0x7f, 0xff, 0xff, 0xff],
            ),
            frame(ApiKey::SaslAuthenticate, 0, &huge_i32),
            frame(ApiKey::SaslAuthenticate, 2, &huge_varint),
            frame(ApiKey::ApiVersions, 3, &huge_varint),
        ];
        for case in cases {
            let error = decode_request(case.clone()).expect_err("a truncated frame");
            assert!(
                matches!(error, DecodeError::Malformed { .. }),
                "{case:?}: {error}"
            );
        }
    }

    #[test]
    fn frames_decode_into_their_api_and_version_or_a_reason() {
        let decoded = decode_request(frame(ApiKey::Metadata, 0, &[0, 0, 0, 0])).unwrap();
        assert_eq!((decoded.api_key, decoded.version), (ApiKey::Metadata, 0));
        assert_eq!(decoded.header.correlation_id, 1);
        let short = decode_request(Bytes::from_static(&[0, 3, 0]));
        assert!(matches!(short, Err(DecodeError::TooShort(3))));
        let unknown = decode_request(Bytes::from_static(&[0x7f, 0, 0, 0, 0, 0, 0, 1]));
        assert!(matches!(unknown, Err(DecodeError::UnknownApiKey(0x7f00))));
        let old = decode_request(frame(ApiKey::ApiVersions, 9, &[]));
        assert!(matches!(
            old,
            Err(DecodeError::ApiVersionsUnsupported {
                correlation_id: 1,
                ..
            })
        ));
        let old = decode_request(frame(ApiKey::Produce, 1, &[]));
        assert!(matches!(old, Err(DecodeError::UnsupportedVersion { .. })));
    }
}
