//! Headwater's wire protos, event envelope and schema registry. Does no I/O: schemas come in as
//! `(name, text)` [`SourceFile`]s and `.proto` ones are compiled in memory with protox.
//!
//! - [`proto::v1`]: the `headwater.v1` wire messages, [`proto::FILE_DESCRIPTOR_SET`].
//! - [`Envelope`]: the event on the hot path, its JSON form and its `hw.*` record [`headers`].
//! - [`Registry`]: schemas by type and version, [`Registry::from_sources`], [`Registry::validate`].

mod compat;
pub mod config;
pub mod document;
mod envelope;
mod error;
pub mod headers;
mod json_file;
mod loader;
pub mod proto;
mod proto_check;
mod proto_compile;
mod proto_file;
mod proto_json;
mod registry;
mod tape;
mod tape_de;
#[cfg(test)]
mod tape_tests;

pub use config::SchemasConfig;
pub use envelope::{Envelope, PayloadFormat};
pub use error::SchemaError;
pub use json_file::{DRAFT_2020_12, OPTIONS_KEY};
pub use loader::{LoadOptions, Problem, SourceFile};
pub use proto_file::DIRECTIVE;
pub use registry::{
    Compatibility, Payload, Registry, Rejection, RejectionKind, SchemaFormat, SchemaInfo,
};
/// simd-json's tape nodes and scalars, for a tape built beside the JSON text it stands for
/// ([`Payload::Built`]).
pub use simd_json::{Node as TapeNode, StaticNode as TapeScalar};
