//! The gateway's one error enum, and the only place errors become HTTP and gRPC statuses.
//!
//! Policy: a client error is a 4xx and never says to retry; back-pressure and retryable log
//! failures are 503 + `Retry-After`; a permanent server-side failure is a 500 with its reason
//! and no `Retry-After`, so no client loops on it. Per-event problems are not errors at all:
//! they are rejections in the 200's `errors` list (see `ingest::Pipeline::publish`).

use std::time::Duration;

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use headwater_log::LogError;
use serde_json::json;

/// Why a request was refused as a whole: every refusal of the gateway's HTTP and gRPC surface.
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
    /// A request that would take more than its budget once decoded: an OTLP request whose
    /// decoded form, or the events it becomes (each log record carrying a copy of its resource
    /// and scope), would be over the limit.
    #[error("request expands to more than {limit} bytes {how}")]
    ExpandsTooLarge {
        /// Into what: `once decoded`, or `of events` and why.
        how: &'static str,
        /// The limit.
        limit: u64,
    },
    /// An OTLP request kept whole as one event (`gateway.otlp_request_type`) that is over the
    /// event size limit.
    #[error(
        "OTLP request of {size} bytes is over the event limit of {limit} bytes (each request \
         is kept whole as one event): send fewer records per request"
    )]
    WholeRequestTooLarge {
        /// The request's size as it would be stored.
        size: usize,
        /// `max_event_bytes`.
        limit: u64,
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
    /// `/v1/schemas` on a gateway that runs without a schema registry.
    #[error("this gateway runs without a schema registry")]
    NoRegistry,
    /// No schema of that type and version is registered.
    #[error("no schema {event_type:?} version {version}")]
    UnknownSchema {
        /// The event type asked for.
        event_type: String,
        /// The version asked for, as sent.
        version: String,
    },
    /// Every ingest slot is taken (`max_concurrent_requests`); the request was shed unread.
    #[error("overloaded: too many requests in flight")]
    Overloaded,
    /// The request took longer than `request_timeout_ms`.
    #[error("request timed out")]
    TimedOut,
    /// `/readyz`: the log tier would not take writes now.
    #[error("not ready: {reason}")]
    NotReady {
        /// Why, from the readiness probe.
        reason: String,
    },
    /// The log tier failed the append in a way that may pass unchanged later (disk full, I/O,
    /// brokers unreachable); nothing was acknowledged.
    #[error("log tier unavailable")]
    Unavailable(#[source] LogError),
    /// The log tier refused the append for good (unknown or invalid topic, brokers refusing,
    /// engine closed); nothing was acknowledged, and the same request would fail again.
    #[error("log tier refused the append")]
    LogRefused(#[source] LogError),
}

impl IngestError {
    /// The log tier's error under the edge's policy: [`IngestError::Unavailable`] when
    /// [`LogError::is_retryable`], else [`IngestError::LogRefused`].
    pub fn from_log(error: LogError) -> Self {
        if error.is_retryable() {
            Self::Unavailable(error)
        } else {
            Self::LogRefused(error)
        }
    }

    /// The HTTP status this error answers with.
    pub fn status(&self) -> StatusCode {
        match self {
            // 401: who is asking is unknown; send a (valid) key.
            Self::MissingKey | Self::UnknownKey => StatusCode::UNAUTHORIZED,
            // 403: the key is known and refused.
            Self::KeyDisabled { .. } => StatusCode::FORBIDDEN,
            // 429 + Retry-After: over the key's request or event rate.
            Self::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            // 413: over a size limit, on the wire, after decompression, in events, or in what
            // the request expands to.
            Self::BodyTooLarge { .. }
            | Self::DecompressedTooLarge { .. }
            | Self::TooManyEvents { .. }
            | Self::ExpandsTooLarge { .. }
            | Self::WholeRequestTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            // 415: a content type or encoding the endpoint does not decode.
            Self::UnsupportedType(_) | Self::UnsupportedEncoding(_) => {
                StatusCode::UNSUPPORTED_MEDIA_TYPE
            }
            // 400: the body cannot be read or decoded at all; no part of it was taken.
            Self::Malformed(_) | Self::BodyRead(_) => StatusCode::BAD_REQUEST,
            // 404: the schema API has nothing under that name.
            Self::NoRegistry | Self::UnknownSchema { .. } => StatusCode::NOT_FOUND,
            // 503 + Retry-After: back-pressure, a log tier that cannot take writes now, or a
            // retryable append failure; the same request may succeed shortly.
            Self::Overloaded | Self::NotReady { .. } | Self::Unavailable(_) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            // 503 without Retry-After: the request ran out of `request_timeout_ms` (answered
            // by the timeout layer with an empty body).
            Self::TimedOut => StatusCode::SERVICE_UNAVAILABLE,
            // 500, never Retry-After: a permanent failure on our side; retrying cannot help.
            Self::LogRefused(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// Seconds after which a retry may succeed, for `Retry-After`; `None` for every error a
    /// retry cannot fix.
    pub fn retry_after_secs(&self) -> Option<u64> {
        match self {
            Self::RateLimited { retry_after, .. } => {
                Some(retry_after.as_secs_f64().ceil().max(1.0) as u64)
            }
            Self::Overloaded | Self::NotReady { .. } | Self::Unavailable(_) => Some(1),
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
            | Self::TooManyEvents { .. }
            | Self::ExpandsTooLarge { .. }
            | Self::WholeRequestTooLarge { .. } => "too_large",
            Self::UnsupportedType(_) | Self::UnsupportedEncoding(_) => "unsupported_type",
            Self::Malformed(_) | Self::BodyRead(_) => "malformed",
            Self::NoRegistry | Self::UnknownSchema { .. } => "not_found",
            Self::Overloaded => "overloaded",
            Self::TimedOut => "timed_out",
            Self::NotReady { .. } => "not_ready",
            Self::Unavailable(_) => "unavailable",
            Self::LogRefused(_) => "log_refused",
        }
    }

    /// The message and its causes on one line (`a: b: c`): what the client is told.
    pub fn reason(&self) -> String {
        headwater_log::error_chain(self)
    }

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
            StatusCode::INTERNAL_SERVER_ERROR => Code::Internal,
            StatusCode::NOT_FOUND => Code::NotFound,
            _ => Code::InvalidArgument,
        };
        let mut status = tonic::Status::new(code, self.reason());
        if let Some(value) = self
            .retry_after_secs()
            .and_then(|s| s.to_string().parse().ok())
        {
            status.metadata_mut().insert("retry-after", value);
        }
        status
    }
}

impl IntoResponse for IngestError {
    fn into_response(self) -> Response {
        let status = self.status();
        let reason = self.reason();
        if status == StatusCode::INTERNAL_SERVER_ERROR {
            tracing::error!(error = %reason, "request failed");
        } else if status.is_server_error() {
            tracing::warn!(error = %reason, "request refused");
        } else {
            tracing::debug!(error = %reason, "request refused");
        }
        let body = match &self {
            Self::NotReady { reason } => json!({"status": "not ready", "reason": reason}),
            _ => json!({"error": reason}),
        };
        let mut response = (status, Json(body)).into_response();
        if let Some(value) = self
            .retry_after_secs()
            .and_then(|secs| HeaderValue::from_str(&secs.to_string()).ok())
        {
            response.headers_mut().insert(header::RETRY_AFTER, value);
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn disk_full() -> LogError {
        LogError::io("appending", std::io::Error::from_raw_os_error(28))
    }

    #[test]
    fn retryable_log_errors_are_503_with_retry_after() {
        let error = IngestError::from_log(disk_full());
        assert!(matches!(error, IngestError::Unavailable(_)));
        let response = error.into_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()[header::RETRY_AFTER], "1");
        let status = IngestError::from_log(disk_full()).into_status();
        assert_eq!(status.code(), tonic::Code::Unavailable);
        assert_eq!(status.metadata().get("retry-after").unwrap(), "1");
    }

    #[test]
    fn permanent_log_errors_are_500_without_retry_after() {
        let error = IngestError::from_log(LogError::UnknownTopic("t".into()));
        assert_eq!(
            error.reason(),
            "log tier refused the append: unknown topic `t`"
        );
        let response = error.into_response();
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert!(response.headers().get(header::RETRY_AFTER).is_none());
        let status = IngestError::from_log(LogError::Closed).into_status();
        assert_eq!(status.code(), tonic::Code::Internal);
        assert!(status.metadata().get("retry-after").is_none());
    }

    #[test]
    fn only_retryable_errors_say_when_to_retry() {
        for error in [
            IngestError::Malformed("x".into()),
            IngestError::NoRegistry,
            IngestError::TimedOut,
            IngestError::LogRefused(LogError::Closed),
        ] {
            assert_eq!(error.retry_after_secs(), None, "{error}");
        }
    }
}
