//! Headwater's wire protos, event envelope and schema registry. Does no I/O of its own.

pub mod config;

pub use config::SchemasConfig;
