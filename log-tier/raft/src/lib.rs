//! Raft replication of Headwater's log: each partition of a replicated topic is one openraft
//! group whose log *is* the partition's Kafka log (one RecordBatch per entry, the term as the
//! batch's leader epoch, Raft-internal entries as zero-width control batches that take no Kafka
//! offset). See docs/design/replication.md.
//!
//! - [`types`]: the openraft type configuration ([`TypeConfig`]);
//! - [`store`]: [`LogStore`], openraft's `RaftLogStorage` over a `headwater_log::ReplicaLog`;
//! - [`sm`]: [`StateMachine`], where a committed data entry moves the high watermark;
//! - [`group`]: opening the storage of one group and the Raft settings we run with;
//! - [`offsets`]: consumer-group offsets replicated through the internal offsets partition;
//! - [`metadata`]: topics created at run time, their placement and leaders, replicated
//!   through the internal metadata partition.

pub mod error;
pub mod group;
pub mod identity;
pub mod metadata;
pub mod metrics;
pub mod net;
pub mod node;
pub mod offsets;
pub mod sm;
mod state;
pub mod store;
pub mod types;

pub use error::ReplicationError;
pub use group::{DEFAULT_ELECTION_TIMEOUT_MS, GroupStorage, raft_config, raft_config_with};
pub use metadata::{AdminError, METADATA_TOPIC, TopicPlacement};
pub use net::{Groups, NetworkFactory, PeerTls, Peers, RaftServer, TransportConfig};
pub use node::{
    ClusterSpec, DEFAULT_REPLICATION, OffsetsView, PartitionView, ProposeError, ReplicaNode,
    ReplicatedPartition, group_id, group_id_of, purge_expired,
};
pub use offsets::{OFFSETS_TOPIC, OffsetStoreHook};
pub use sm::{ApplyHook, StateMachine};
pub use store::LogStore;
pub use types::{Applied, Batch, BoundarySnapshot, NodeId, Term, TypeConfig};
