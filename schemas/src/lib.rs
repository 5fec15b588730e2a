//! Headwater's wire protos, event envelope and schema registry. Does no I/O of its own beyond
//! reading a schema directory and running the vendored protoc when schemas are loaded.
//!
//! - [`proto::v1`]: the `headwater.v1` wire messages, [`proto::FILE_DESCRIPTOR_SET`].
//! - [`Envelope`]: the event on the hot path, its JSON form and its `hw.*` record [`headers`].
//! - [`Registry`]: schemas by type and version, [`Registry::validate`], [`check_dir`].

mod compat;
pub mod config;
mod envelope;
mod error;
pub mod headers;
mod json_file;
mod loader;
pub mod proto;
mod proto_file;
mod protoc;
mod registry;

pub use config::SchemasConfig;
pub use envelope::{Envelope, PayloadFormat};
pub use error::SchemaError;
pub use json_file::{DRAFT_2020_12, OPTIONS_KEY};
pub use loader::{LoadOptions, Problem, SourceFile, check_dir};
pub use proto_file::DIRECTIVE;
pub use registry::{
    Compatibility, Payload, Registry, Rejection, RejectionKind, SchemaFormat, SchemaInfo,
};
