//! [`EsError`]: what went wrong in the Elasticsearch sink, and its classification (429, 5xx and
//! connection errors are retryable, with the server's `Retry-After`; other answers need an
//! operator). The sink does not retry: the router re-sends.

use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::InvalidHeaderValue;

use super::KIND;
use super::bulk::BulkResponseError;
use super::index::IndexPatternError;
use crate::Classify;

/// What went wrong in the Elasticsearch sink.
#[derive(Debug, thiserror::Error)]
pub enum EsError {
    /// The `index` pattern does not parse.
    #[error("invalid index pattern")]
    Index(#[source] IndexPatternError),
    /// `tls.ca_file` cannot be read.
    #[error("cannot read CA file {path}")]
    CaFile {
        /// The file.
        path: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// `tls.ca_file` holds no usable certificates.
    #[error("bad CA file {path}")]
    CaPem {
        /// The file.
        path: String,
        /// The parser's error.
        #[source]
        source: reqwest::Error,
    },
    /// The HTTP client cannot be built.
    #[error("cannot build the HTTP client")]
    Client(#[source] reqwest::Error),
    /// `api_key` cannot be sent as a header.
    #[error("api_key is not a valid header value")]
    ApiKey(#[source] InvalidHeaderValue),
    /// The documents cannot be serialized.
    #[error("encoding documents")]
    Encode(#[source] serde_json::Error),
    /// The body cannot be compressed.
    #[error("gzip failed")]
    Gzip(#[source] std::io::Error),
    /// The request could not be sent, or no answer came (connection refused, timeout…).
    #[error("{request} request failed")]
    Request {
        /// `_bulk` or `health probe`.
        request: &'static str,
        /// The client's error.
        #[source]
        source: reqwest::Error,
    },
    /// The cluster answered with an error status.
    #[error("{request} answered {status}: {body}")]
    Status {
        /// `_bulk` or `health probe`.
        request: &'static str,
        /// The status.
        status: StatusCode,
        /// The start of the body.
        body: String,
        /// The `Retry-After` header, in seconds, capped at 300.
        retry_after: Option<Duration>,
    },
    /// The body of a 2xx answer could not be read.
    #[error("reading the _bulk response")]
    ReadBody(#[source] reqwest::Error),
    /// The body of a 2xx answer is not a `_bulk` response.
    #[error("unreadable _bulk response")]
    Response(#[source] BulkResponseError),
}

impl Classify for EsError {
    const SINK: &'static str = KIND;

    fn is_retryable(&self) -> bool {
        match self {
            Self::Request { source, .. } => !source.is_builder(),
            Self::Status { status, .. } => {
                *status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error()
            }
            Self::Encode(_) | Self::Gzip(_) | Self::ReadBody(_) | Self::Response(_) => true,
            Self::Index(_) | Self::CaFile { .. } | Self::CaPem { .. } => false,
            Self::Client(_) | Self::ApiKey(_) => false,
        }
    }

    fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Status { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}
