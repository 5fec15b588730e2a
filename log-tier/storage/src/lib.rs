//! Headwater's durable, partitioned log: storage engine, topics, partitions, offsets, the `Log`
//! trait. The Kafka-protocol server (`headwater-kafka`) and the Kafka client (`headwater-kafka-client`)
//! build on it; this crate knows nothing of either.
//!
//! Entry points: [`LogEngine::open`] (the embedded engine, recovery included), the [`Log`]
//! trait the gateway and router use, [`ReplicaLog`] (a partition as Raft log storage) and
//! [`MemoryLog`] for tests. On disk, under the data
//! directory:
//!
//! ```text
//! .lock                               flock: one process per data directory
//! .clean_shutdown                     present only between a clean close and the next open
//! consumer-offsets.log                append-only committed group offsets (compacted in the background)
//! topics/<topic>/topic.json           partition count (+ "replicated", "config" for Raft topics)
//! topics/<topic>/<p>/<base>.log       Kafka RecordBatch v2, segments named by base offset; in a
//!                                     Raft replica one batch per entry (internal entries are
//!                                     zero-width control batches)
//! topics/<topic>/<p>/<base>.index     sparse offset + Raft index of a sealed segment, trailer
//!                                     with base/next index (layout v2, + CRC)
//! topics/<topic>/<p>/<base>.timeindex sparse time index of a sealed segment (+ CRC)
//! topics/<topic>/<p>/producer.snapshot idempotent-producer state at the last roll
//! topics/<topic>/<p>/leader-epoch-checkpoint Raft replicas: (term, first index, first offset) per term
//! topics/<topic>/<p>/boundary         Raft replicas: the last purged entry (+ CRC)
//! topics/<topic>/<p>/<base>.log.quarantined a damaged sealed segment set aside by recovery
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
mod open_files;
mod partition;
mod producer;
mod recovery;
mod replica;
pub mod security;
mod segment;
mod topic;

#[cfg(any(test, feature = "testsuite"))]
pub mod testsuite;

pub use client_config::KafkaClientConfig;
pub use config::{
    ClusterConfig, ClusterNodeConfig, ClusterTlsConfig, FlushMode, FlushPolicy, KafkaSaslConfig,
    KafkaTlsConfig, LogConfig, PrincipalConfig, PrincipalRole, SASL_MECHANISMS, TopicConfig,
    TopicSettings,
};
pub use engine::{FetchOptions, Fetched, ListedOffset, LogEngine, OffsetSpec, now_ms};
pub use error::{LogError, error_chain};
pub use log::{
    Appended, Assignment, EncodedHeaders, GroupMembership, Header, Log, PartitionOffsets,
    PreparedRecord, Record, StoredRecord, murmur2, partition_for_key,
};
pub use memory::MemoryLog;
pub use open_files::{DescriptorLimit, raise_open_files_limit};
pub use partition::PendingAppend;
pub use replica::{
    Boundary, Entry, EntryId, EntryKind, EntryPayload, EpochEntry, OnDurable, ReplicaLog,
    ReplicaLogState, StoredEntry,
};
pub use security::{
    AclEntry, CLUSTER_NAME, Operation, PatternType, Permission, ResourceType, validate_acls,
};
pub use topic::check_name as check_topic_name;
