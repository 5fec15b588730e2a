//! The crate's one error type.

use thiserror::Error;

/// Everything that can go wrong in `headwater-schemas` outside of per-event validation (which
/// answers with a [`crate::Rejection`]) and schema loading (which collects [`crate::Problem`]s).
#[derive(Debug, Error)]
pub enum SchemaError {
    /// A record header that the envelope needs is absent.
    #[error("missing header {0}")]
    MissingHeader(&'static str),
    /// A record header has a value that does not parse.
    #[error("header {name} has an invalid value: {reason}")]
    BadHeader {
        /// Header name.
        name: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// An unknown payload format name (only `json` and `protobuf` exist).
    #[error("unknown payload format {0:?} (expected \"json\" or \"protobuf\")")]
    UnknownFormat(String),
}

impl SchemaError {
    /// True when trying again later may succeed. Never: every variant is bad input (the crate
    /// does no I/O).
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::MissingHeader(_) | Self::BadHeader { .. } | Self::UnknownFormat(_) => false,
        }
    }
}
