//! Headwater's durable, partitioned log: storage engine, topics, offsets and the Kafka protocol.

pub mod config;

pub use config::{FlushMode, FlushPolicy, LogConfig, TopicConfig};
