//! The steps both HTTP ingest routes share: admit the caller, tell the body's kind, read and
//! decompress it within the limits, and count how the request ended.

use std::net::SocketAddr;
use std::time::Instant;

use axum::extract::{ConnectInfo, Request};
use axum::http::{HeaderMap, header};
use bytes::Bytes;

use crate::body;
use crate::collector::{Collector, Reserved};
use crate::error::IngestError;
use crate::ingest::RequestMeta;
use crate::metrics::Transport;
use crate::tls::ClientCert;

/// The body encodings the ingest routes take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum BodyKind {
    /// `application/json` (also the default without a content type).
    Json,
    /// Newline-delimited JSON.
    Ndjson,
    /// Protobuf.
    Protobuf,
}

/// The body kind from `Content-Type`; 415 for any other type.
pub(super) fn body_kind(headers: &HeaderMap) -> Result<BodyKind, IngestError> {
    let Some(value) = headers.get(header::CONTENT_TYPE) else {
        return Ok(BodyKind::Json);
    };
    let text = value.to_str().unwrap_or("?");
    let essence = text.split(';').next().unwrap_or("").trim();
    // Media types are case-insensitive; compared in place, not lower-cased into a new string.
    let one_of = |names: &[&str]| names.iter().any(|name| essence.eq_ignore_ascii_case(name));
    if one_of(&["application/json", "text/json"]) {
        Ok(BodyKind::Json)
    } else if one_of(&[
        "application/x-ndjson",
        "application/ndjson",
        "application/jsonl",
        "application/x-jsonlines",
    ]) {
        Ok(BodyKind::Ndjson)
    } else if one_of(&[
        "application/x-protobuf",
        "application/protobuf",
        "application/vnd.google.protobuf",
    ]) {
        Ok(BodyKind::Protobuf)
    } else {
        Err(IngestError::UnsupportedType(text.to_owned()))
    }
}

/// Admits the caller (auth, request rate, client IP), checks the content type, reads the body
/// within its limit and undoes its encoding (its bytes counted under the caller's tenant).
pub(super) async fn admit_and_read(
    collector: &Collector,
    request: Request,
) -> Result<(RequestMeta, BodyKind, Bytes, Reserved), IngestError> {
    let (parts, body) = request.into_parts();
    let peer = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0);
    let meta = collector.admit(&parts.headers, peer, parts.extensions.get::<ClientCert>())?;
    tracing::Span::current().record("tenant", &*meta.principal.tenant);
    let kind = body_kind(&parts.headers)?;
    let limits = &collector.limits;
    let raw = body::read_limited(&parts.headers, body, limits.max_body_bytes).await?;
    let bytes = body::decompress(&parts.headers, raw, limits.max_decompressed_bytes)?;
    collector
        .requests
        .received(&meta.principal.tenant, bytes.len());
    // Held once the body is here: a client that is slow to send it holds no room.
    let reserved = collector.reserve(bytes.len()).await;
    Ok((meta, kind, bytes, reserved))
}

/// Records the request's duration under `transport`, and its refusal reason if refused.
pub(super) fn observe<T>(
    collector: &Collector,
    transport: Transport,
    started: Instant,
    result: &Result<T, IngestError>,
) {
    let refused = result.as_ref().err().map(IngestError::label);
    collector.requests.observe(transport, started, refused);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(content_type: &str) -> Option<BodyKind> {
        let mut headers = HeaderMap::new();
        headers.insert(header::CONTENT_TYPE, content_type.parse().unwrap());
        body_kind(&headers).ok()
    }

    #[test]
    fn content_types_are_told_by_their_essence_in_any_case() {
        assert_eq!(body_kind(&HeaderMap::new()).ok(), Some(BodyKind::Json));
        assert_eq!(kind("application/json"), Some(BodyKind::Json));
        assert_eq!(
            kind("Application/JSON; charset=utf-8"),
            Some(BodyKind::Json)
        );
        assert_eq!(kind(" text/json "), Some(BodyKind::Json));
        assert_eq!(kind("application/X-NDJSON"), Some(BodyKind::Ndjson));
        assert_eq!(kind("application/jsonl"), Some(BodyKind::Ndjson));
        assert_eq!(kind("APPLICATION/X-PROTOBUF"), Some(BodyKind::Protobuf));
        assert_eq!(
            kind("application/vnd.google.protobuf"),
            Some(BodyKind::Protobuf)
        );
        for other in ["text/plain", "application/jsonx", "application", ""] {
            assert_eq!(kind(other), None, "{other:?}");
        }
    }
}
