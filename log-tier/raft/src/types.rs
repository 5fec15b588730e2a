//! The openraft type configuration of a replicated partition: a Raft entry's application data is
//! one Kafka RecordBatch, and a log id's leader is the term alone (`leader_id_std`: one leader per
//! term, so the term can serve as the Kafka leader epoch).

use std::fmt;

use bytes::Bytes;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A Raft node id: a log node's id in `log.cluster`.
pub type NodeId = u64;

/// A Raft term (the Kafka leader epoch of the partition).
pub type Term = u64;

openraft::declare_raft_types!(
    /// The type configuration of every Headwater Raft group.
    pub TypeConfig:
        D = Batch,
        R = Applied,
        NodeId = NodeId,
        Node = openraft::BasicNode,
        Term = Term,
        LeaderId = openraft::impls::leader_id_std::LeaderId<Term, NodeId>,
        Vote = openraft::impls::Vote<Self::LeaderId>,
);

/// One Kafka RecordBatch v2, whole: the application data of a Raft entry. On the leader it is
/// the batch a producer sent (base offset and leader epoch not yet set); read back from the log
/// it is the stored batch, byte for byte what followers store.
#[derive(Clone, PartialEq, Eq)]
pub struct Batch(pub Bytes);

impl fmt::Debug for Batch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Batch({} bytes)", self.0.len())
    }
}

impl fmt::Display for Batch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

// openraft's `serde` feature asks every application type for serde. Batches never go through
// serde on the data path (the transport frames them as raw bytes); this exists for the trait
// bound and debugging dumps only.
impl Serialize for Batch {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(&self.0)
    }
}

impl<'de> Deserialize<'de> for Batch {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Vec::<u8>::deserialize(deserializer).map(|v| Batch(Bytes::from(v)))
    }
}

/// What applying a committed entry produced: the Kafka offsets a data batch got.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Applied {
    /// A data entry: its records hold `base_offset..next_offset`.
    Data {
        /// Offset of the batch's first record.
        base_offset: i64,
        /// Offset after its last record.
        next_offset: i64,
    },
    /// A Raft-internal entry (blank, membership): no Kafka offset.
    Internal,
}

impl fmt::Display for Applied {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Applied::Data {
                base_offset,
                next_offset,
            } => write!(f, "offsets {base_offset}..{next_offset}"),
            Applied::Internal => f.write_str("internal"),
        }
    }
}

/// The data of a snapshot: nothing but where the purged log ends. Retention deletes data (as
/// Kafka's does); a snapshot only lets openraft purge and lets a follower that fell behind the
/// leader's log start begin again from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BoundarySnapshot {
    /// The Kafka offset after the snapshot's last entry.
    pub next_offset: i64,
}

/// openraft's types specialised to [`TypeConfig`].
pub mod typ {
    use openraft::type_config::alias as a;

    use super::{BoundarySnapshot, TypeConfig};

    /// A log entry.
    pub type Entry = a::EntryOf<TypeConfig>;
    /// An entry's payload.
    pub type EntryPayload = a::EntryPayloadOf<TypeConfig>;
    /// A log id `(term, index)`.
    pub type LogId = a::LogIdOf<TypeConfig>;
    /// The leader id a log id carries: the term.
    pub type CommittedLeaderId = a::CommittedLeaderIdOf<TypeConfig>;
    /// A vote.
    pub type Vote = a::VoteOf<TypeConfig>;
    /// A membership.
    pub type Membership = openraft::Membership<super::NodeId, openraft::BasicNode>;
    /// A membership and the id of the entry that holds it.
    pub type StoredMembership = a::StoredMembershipOf<TypeConfig>;
    /// Snapshot metadata.
    pub type SnapshotMeta = a::SnapshotMetaOf<TypeConfig>;
    /// A snapshot with our (data-free) snapshot data.
    pub type Snapshot = a::SnapshotOf<TypeConfig, BoundarySnapshot>;
}

/// The log id of entry `index` written in `term`.
pub fn log_id(term: Term, index: u64) -> typ::LogId {
    openraft::LogId::new(typ::CommittedLeaderId::new(term), index)
}
