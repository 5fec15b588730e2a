//! Headwater's durable, partitioned log: storage engine, topics, partitions, offsets, the `Log`
//! trait. The Kafka-protocol server (`headwater-kafka`) and the Kafka client (`headwater-kafka-client`)
//! build on it; this crate knows nothing of either.
//!
//! Entry points: [`LogEngine::open`] (the embedded engine, recovery included), the [`Log`]
//! trait the gateway and router use, and [`MemoryLog`] for tests. On disk, under the data
//! directory:
//!
//! ```text
//! .lock                               flock: one process per data directory
//! .clean_shutdown                     present only between a clean close and the next open
//! consumer-offsets.json               committed group offsets (temp + fsync + rename)
//! topics/<topic>/topic.json           partition count
//! topics/<topic>/<p>/<base>.log       Kafka RecordBatch v2, segments named by base offset
//! topics/<topic>/<p>/<base>.index     sparse offset index of a sealed segment (+ CRC)
//! topics/<topic>/<p>/<base>.timeindex sparse time index of a sealed segment (+ CRC)
//! topics/<topic>/<p>/producer.snapshot idempotent-producer state at the last roll
//! ```

pub mod batch;
pub mod client_config;
pub mod compression;
pub mod config;
mod engine;
pub mod error;
mod fault;
mod flush;
pub mod index;
pub mod log;
mod log_impl;
mod memory;
pub mod metrics;
mod offsets;
mod partition;
mod producer;
mod recovery;
mod segment;
mod topic;

#[cfg(any(test, feature = "testsuite"))]
pub mod testsuite;

pub use client_config::KafkaClientConfig;
pub use config::{
    FlushMode, FlushPolicy, KafkaSaslConfig, KafkaTlsConfig, LogConfig, TopicConfig, TopicSettings,
};
pub use engine::{FetchOptions, Fetched, ListedOffset, LogEngine, OffsetSpec, now_ms};
pub use error::{LogError, error_chain};
pub use log::{
    Appended, Assignment, GroupMembership, Header, Log, PartitionOffsets, Record, StoredRecord,
    murmur2, partition_for_key,
};
pub use memory::MemoryLog;
pub use topic::check_name as check_topic_name;
