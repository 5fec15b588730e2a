//! The gateway's one error enum, and the only place errors become HTTP statuses.

use std::time::Duration;

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use headwater_log::LogError;
use serde_json::json;

/// Why a request was refused as a whole.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// No API key in `Authorization: Bearer` or `X-Api-Key`.
    #[error("missing API key: send `Authorization: Bearer KEY` or `X-Api-Key: KEY`")]
    MissingKey,
    /// The key matches none configured.
    #[error("unknown API key")]
    UnknownKey,
    /// The key is known but disabled.
    #[error("API key disabled for tenant `{tenant}`")]
    KeyDisabled {
        /// The key's tenant.
        tenant: String,
    },
    /// Over a rate limit of the key.
    #[error("rate limit exceeded: {what}")]
    RateLimited {
        /// Which limit.
        what: &'static str,
        /// When to come back.
        retry_after: Duration,
    },
    /// The body on the wire is over the limit.
    #[error("request body larger than {limit} bytes")]
    BodyTooLarge {
        /// The limit.
        limit: u64,
    },
    /// The body after decompression is over the limit.
    #[error("decompressed body larger than {limit} bytes")]
    DecompressedTooLarge {
        /// The limit.
        limit: u64,
    },
    /// More events than a batch may hold.
    #[error("batch of {count} events is over the limit of {limit}")]
    TooManyEvents {
        /// Events in the batch.
        count: usize,
        /// The limit.
        limit: usize,
    },
    /// A content type the endpoint does not take.
    #[error(
        "unsupported content type `{0}`: use application/json, application/x-ndjson or application/x-protobuf"
    )]
    UnsupportedType(String),
    /// A content encoding other than gzip or zstd.
    #[error("unsupported content encoding `{0}`: use gzip or zstd")]
    UnsupportedEncoding(String),
    /// The body cannot be decoded at all.
    #[error("malformed body: {0}")]
    Malformed(String),
    /// The client stopped sending or sent a broken body.
    #[error("reading the request body failed: {0}")]
    BodyRead(String),
    /// The log tier refused or failed the append; nothing was acknowledged.
    #[error("log tier unavailable: {0}")]
    Unavailable(#[source] LogError),
}

impl IngestError {
    /// The HTTP status this error answers with.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::MissingKey | Self::UnknownKey => StatusCode::UNAUTHORIZED,
            Self::KeyDisabled { .. } => StatusCode::FORBIDDEN,
            Self::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::BodyTooLarge { .. }
            | Self::DecompressedTooLarge { .. }
            | Self::TooManyEvents { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedType(_) | Self::UnsupportedEncoding(_) => {
                StatusCode::UNSUPPORTED_MEDIA_TYPE
            }
            Self::Malformed(_) | Self::BodyRead(_) => StatusCode::BAD_REQUEST,
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// Seconds after which a retry may succeed, for `Retry-After`.
    pub fn retry_after_secs(&self) -> Option<u64> {
        match self {
            Self::RateLimited { retry_after, .. } => {
                Some(retry_after.as_secs_f64().ceil().max(1.0) as u64)
            }
            Self::Unavailable(_) => Some(1),
            _ => None,
        }
    }

    /// A short, bounded label for metrics.
    pub fn label(&self) -> &'static str {
        match self {
            Self::MissingKey | Self::UnknownKey => "unauthorized",
            Self::KeyDisabled { .. } => "forbidden",
            Self::RateLimited { .. } => "rate_limited",
            Self::BodyTooLarge { .. }
            | Self::DecompressedTooLarge { .. }
            | Self::TooManyEvents { .. } => "too_large",
            Self::UnsupportedType(_) | Self::UnsupportedEncoding(_) => "unsupported_type",
            Self::Malformed(_) | Self::BodyRead(_) => "malformed",
            Self::Unavailable(_) => "unavailable",
        }
    }
}

impl IngestError {
    /// The gRPC status this error answers with; `retry-after` rides in the metadata.
    pub fn into_status(self) -> tonic::Status {
        use tonic::Code;
        let code = match self.status() {
            StatusCode::UNAUTHORIZED => Code::Unauthenticated,
            StatusCode::FORBIDDEN => Code::PermissionDenied,
            StatusCode::TOO_MANY_REQUESTS | StatusCode::PAYLOAD_TOO_LARGE => {
                Code::ResourceExhausted
            }
            StatusCode::SERVICE_UNAVAILABLE => Code::Unavailable,
            _ => Code::InvalidArgument,
        };
        let retry_after = self.retry_after_secs();
        let mut status = tonic::Status::new(code, self.to_string());
        if let Some(value) = retry_after.and_then(|s| s.to_string().parse().ok()) {
            status.metadata_mut().insert("retry-after", value);
        }
        status
    }
}

impl IntoResponse for IngestError {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            tracing::warn!(error = %self, "ingest refused");
        } else {
            tracing::debug!(error = %self, "ingest refused");
        }
        let retry_after = self.retry_after_secs();
        let mut response = (status, Json(json!({"error": self.to_string()}))).into_response();
        if let Some(value) =
            retry_after.and_then(|secs| HeaderValue::from_str(&secs.to_string()).ok())
        {
            response.headers_mut().insert(header::RETRY_AFTER, value);
        }
        response
    }
}
