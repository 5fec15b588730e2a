//! The cluster a broker belongs to when its log is replicated: who the brokers are, who leads
//! each replicated partition, and the leader's write path. `headwater serve` and a single log
//! node have none ([`KafkaOptions::cluster`](crate::KafkaOptions) is `None`): every partition
//! is local and led here, as before.
//!
//! Consumer groups follow Kafka's model: their offsets live in a replicated internal
//! partition, and the group coordinator is that partition's leader
//! ([`Cluster::group_coordinator`], [`Cluster::commit_offsets`]).

use bytes::Bytes;
use futures::future::BoxFuture;
use headwater_log::LogError;
use kafka_protocol::ResponseError;

/// A broker of the cluster as clients reach it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterBroker {
    /// Its node id.
    pub node_id: i32,
    /// Advertised host.
    pub host: String,
    /// Advertised Kafka port.
    pub port: i32,
}

/// What this broker knows about a replicated partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaState {
    /// The leader, when one is known (else clients are told LEADER_NOT_AVAILABLE).
    pub leader: Option<i32>,
    /// The leader epoch (the Raft term).
    pub leader_epoch: i32,
    /// Every replica.
    pub replicas: Vec<i32>,
    /// The replicas caught up with the leader.
    pub in_sync: Vec<i32>,
}

/// Why a replicated append failed.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// This broker does not lead the partition: the client refreshes its metadata and retries
    /// at the leader (NOT_LEADER_OR_FOLLOWER).
    #[error("not the leader of this partition")]
    NotLeader,
    /// The leader changed before the batch was committed; it may or may not be stored
    /// (REQUEST_TIMED_OUT, as Kafka answers an acks=all write whose outcome it cannot tell).
    #[error("leadership changed before the batch was committed")]
    OutcomeUnknown,
    /// The log refused the batch.
    #[error(transparent)]
    Log(#[from] LogError),
    /// Replication of the partition stopped on this broker.
    #[error("replication stopped: {0}")]
    Stopped(String),
}

impl ClusterError {
    /// The Kafka error code a client gets.
    pub fn code(&self) -> i16 {
        match self {
            ClusterError::NotLeader => ResponseError::NotLeaderOrFollower.code(),
            ClusterError::OutcomeUnknown => ResponseError::RequestTimedOut.code(),
            ClusterError::Log(e) => crate::codes::code(e),
            ClusterError::Stopped(_) => ResponseError::NotLeaderOrFollower.code(),
        }
    }
}

/// Why a topic was not created or deleted in the cluster: the Kafka error code and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct TopicRefusal {
    /// The error code the client gets.
    pub code: i16,
    /// Why, for the client's error message.
    pub message: String,
}

/// The kinds of [`TopicRefusal`], for implementations outside this crate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefusalKind {
    /// TOPIC_ALREADY_EXISTS.
    Exists,
    /// UNKNOWN_TOPIC_OR_PARTITION.
    Unknown,
    /// INVALID_TOPIC_EXCEPTION.
    InvalidName,
    /// INVALID_PARTITIONS.
    InvalidPartitions,
    /// INVALID_REPLICATION_FACTOR.
    InvalidReplicationFactor,
    /// POLICY_VIOLATION.
    Policy,
    /// REQUEST_TIMED_OUT: nothing answered in time; a retry tells the outcome.
    TimedOut,
}

impl TopicRefusal {
    /// A refusal of `kind`, explained by `message`.
    pub fn new(kind: RefusalKind, message: impl Into<String>) -> Self {
        let code = match kind {
            RefusalKind::Exists => ResponseError::TopicAlreadyExists,
            RefusalKind::Unknown => ResponseError::UnknownTopicOrPartition,
            RefusalKind::InvalidName => ResponseError::InvalidTopicException,
            RefusalKind::InvalidPartitions => ResponseError::InvalidPartitions,
            RefusalKind::InvalidReplicationFactor => ResponseError::InvalidReplicationFactor,
            RefusalKind::Policy => ResponseError::PolicyViolation,
            RefusalKind::TimedOut => ResponseError::RequestTimedOut,
        };
        Self {
            code: code.code(),
            message: message.into(),
        }
    }
}

/// Who coordinates consumer groups, as this broker knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupCoordinator {
    /// Offsets are not replicated: this broker coordinates every group and keeps their
    /// offsets in its own engine (as without a cluster).
    Local,
    /// This broker leads the offsets partition: it coordinates every group, committing
    /// offsets through [`Cluster::commit_offsets`].
    Here,
    /// This broker leads the offsets partition but has not applied every offset committed
    /// before (COORDINATOR_LOAD_IN_PROGRESS until it has).
    Loading,
    /// Another broker coordinates (NOT_COORDINATOR here).
    Elsewhere(i32),
    /// No broker coordinates now: the offsets partition has no leader
    /// (COORDINATOR_NOT_AVAILABLE).
    Unknown,
}

/// The replicated log a broker serves (implemented by the log node over its Raft groups).
pub trait Cluster: Send + Sync {
    /// Every broker of the cluster, this one included.
    fn brokers(&self) -> Vec<ClusterBroker>;
    /// The broker answered as controller in Metadata.
    fn controller(&self) -> i32;
    /// A replicated partition's replicas, `None` when the partition is not replicated.
    fn partition(&self, topic: &str, partition: i32) -> Option<ReplicaState>;
    /// Appends one producer batch to a partition this broker leads; resolves once a majority
    /// holds it, with the offset of its first record.
    fn append<'a>(
        &'a self,
        topic: &'a str,
        partition: i32,
        records: Bytes,
    ) -> BoxFuture<'a, Result<i64, ClusterError>>;
    /// A replicated partition's leader epochs as `(epoch, first offset)` in increasing order,
    /// and its log end offset: what OffsetsForLeaderEpoch answers from (KIP-101/279).
    /// `None` when the partition is not replicated here.
    fn leader_epochs(&self, topic: &str, partition: i32) -> Option<(Vec<(i32, i64)>, i64)> {
        let _ = (topic, partition);
        None
    }
    /// Topics created at run time through the cluster's metadata, with their partition
    /// counts, whether this broker holds them or not (configured topics are its engine's).
    fn topics(&self) -> Vec<(String, i32)> {
        Vec::new()
    }
    /// The partition count of `topic` if it was created at run time through the cluster's
    /// metadata: one lookup, where [`Cluster::topics`] lists them all.
    fn topic_partitions(&self, topic: &str) -> Option<i32> {
        self.topics()
            .into_iter()
            .find_map(|(name, count)| (name == topic).then_some(count))
    }
    /// Whether `topic` was created at run time and since deleted through the cluster: this
    /// broker's copy, if it still has one, is on its way out and is not offered to clients.
    fn is_deleted(&self, topic: &str) -> bool {
        let _ = topic;
        false
    }
    /// Whether a Metadata request may create a missing topic through the cluster
    /// ([`Cluster::create_topic`]). By default not.
    fn auto_create_topics(&self) -> bool {
        false
    }
    /// Creates a replicated topic (CreateTopics, auto-creation) with `replication` replicas
    /// per partition (`None`: the cluster's default); resolves once the cluster's metadata
    /// holds it. By default refused: the topics are the configured ones.
    fn create_topic<'a>(
        &'a self,
        name: &'a str,
        partitions: u32,
        replication: Option<u16>,
    ) -> BoxFuture<'a, Result<(), TopicRefusal>> {
        let _ = (name, partitions, replication);
        Box::pin(async { Err(configured_only()) })
    }
    /// Deletes a topic created at run time. By default refused.
    fn delete_topic<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<(), TopicRefusal>> {
        let _ = name;
        Box::pin(async { Err(configured_only()) })
    }
    /// Who coordinates consumer groups. By default [`GroupCoordinator::Local`].
    fn group_coordinator(&self) -> GroupCoordinator {
        GroupCoordinator::Local
    }
    /// Commits offsets of `group` (`(topic, partition, offset)` each) through the replicated
    /// offsets partition, which this broker must lead ([`GroupCoordinator::Here`]); resolves
    /// once a majority holds them and this broker's offsets store has them.
    fn commit_offsets<'a>(
        &'a self,
        group: &'a str,
        offsets: &'a [(&'a str, i32, i64)],
    ) -> BoxFuture<'a, Result<(), ClusterError>> {
        let _ = (group, offsets);
        Box::pin(async {
            Err(ClusterError::Stopped(
                "offsets are not replicated".to_owned(),
            ))
        })
    }
}

/// The refusal of a cluster whose topics are only the configured ones.
fn configured_only() -> TopicRefusal {
    TopicRefusal::new(
        RefusalKind::Policy,
        "in this cluster the topics are those of log.topics on every node",
    )
}
