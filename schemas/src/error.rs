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
    /// Reading a schema file or directory failed.
    #[error("cannot read {path}")]
    Io {
        /// The path that could not be read.
        path: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The vendored protoc could not be found or run.
    #[error("cannot run protoc: {0}")]
    Protoc(String),
    /// A descriptor set produced by protoc does not decode.
    #[error("invalid descriptor set")]
    Descriptor(#[source] prost_reflect::DescriptorError),
}

impl SchemaError {
    /// True when trying again later may succeed (I/O and protoc start-up); false for bad input.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Io { .. } | Self::Protoc(_))
    }
}
