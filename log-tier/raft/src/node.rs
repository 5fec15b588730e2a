//! A log node of a cluster: the replicated partitions it holds (one openraft group each, every
//! node a voter), the replication server, the peers, and the leader's proposal path.
//!
//! Bootstrap: the node with the lowest id initialises each group whose Raft state is pristine
//! on it, with every configured node as a voter; the others wait to be contacted. (Placement,
//! node replacement and the metadata group come later: docs/design/replication.md, steps 5–7.)
//!
//! Beside the data topics, a node holds the internal offsets partition
//! ([`crate::offsets::OFFSETS_TOPIC`]) in an engine of its own, out of reach of the data path
//! ([`ReplicaNode::partition`], [`ReplicaNode::append`] never see it): its leader coordinates
//! consumer groups, and its committed entries are applied to every node's offsets store.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};

use bytes::Bytes;
use headwater_log::batch::BatchHeader;
use headwater_log::{LogEngine, LogError, ReplicaLog};
use openraft::error::{ClientWriteError, RaftError};
use openraft::type_config::async_runtime::watch::WatchReceiver;
use openraft::{BasicNode, Raft, ServerState};
use sha2::{Digest, Sha256};
use tokio::net::TcpListener;

use crate::error::ReplicationError;
use crate::group::{GroupStorage, raft_config};
use crate::net::{GroupId, Groups, Peers, RaftNode, RaftServer, TransportConfig};
use crate::offsets::{OFFSETS_TOPIC, OffsetStoreHook};
use crate::sm::ApplyHook;
use crate::types::{Applied, Batch, NodeId, Term};

/// Who the cluster is: its id and every node's replication address, this node's included.
#[derive(Debug, Clone)]
pub struct ClusterSpec {
    /// The cluster's id: peers of another cluster are refused.
    pub cluster_id: String,
    /// This node's id.
    pub node_id: NodeId,
    /// Replication address of every node, `host:port` (resolved at every dial).
    pub nodes: BTreeMap<NodeId, String>,
}

/// The wire id of a partition's group: the same on every node.
pub fn group_id(topic: &str, partition: i32) -> GroupId {
    let mut hash = Sha256::new();
    hash.update(topic.as_bytes());
    hash.update([0]);
    hash.update(partition.to_be_bytes());
    let digest = hash.finalize();
    let mut id = [0u8; 8];
    id.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(id)
}

/// One replicated partition on this node.
pub struct ReplicatedPartition {
    /// The group's wire id.
    pub group: GroupId,
    /// The group's Raft node.
    pub raft: RaftNode,
    /// The partition's log.
    pub log: ReplicaLog,
    /// Serialises idempotent producers' proposals: a retried batch must see the first one in
    /// the producer state before it is checked.
    idempotent: tokio::sync::Mutex<()>,
}

/// What a node knows about a partition's replicas.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionView {
    /// The leader, if one is known.
    pub leader: Option<NodeId>,
    /// The current term (the Kafka leader epoch).
    pub term: Term,
    /// Whether the leader is heard from: this node leads, or received an AppendEntries (data or
    /// heartbeat) within [`LEADER_SILENCE`]. A leader that went silent is still `leader` to
    /// Raft until an election ends, but clients should not be sent to it.
    pub leader_heard: bool,
    /// Every voter.
    pub replicas: Vec<NodeId>,
    /// The voters known to be caught up: on the leader, those whose acknowledged log reaches
    /// the commit point; elsewhere every voter (only the leader knows).
    pub in_sync: Vec<NodeId>,
}

/// How long a follower may go without an AppendEntries before it stops naming its leader to
/// Kafka clients ([`PartitionView::leader_heard`]): heartbeats come every 100 ms, so a leader
/// silent this long is most likely gone, and a client told LEADER_NOT_AVAILABLE asks again
/// within its retry backoff instead of retrying a dead broker until its next metadata refresh
/// (about a second in librdkafka).
pub const LEADER_SILENCE: std::time::Duration = std::time::Duration::from_millis(500);

/// Who coordinates consumer groups, as this node knows it: the leader of the offsets
/// partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OffsetsView {
    /// The leader of the offsets partition, if one is known.
    pub leader: Option<NodeId>,
    /// This node leads it and has applied every offset committed before its term: its
    /// offsets store is complete (a new leader catches up first, as Kafka's coordinator loads).
    pub loaded: bool,
}

/// Why a proposal was not committed.
#[derive(Debug, thiserror::Error)]
pub enum ProposeError {
    /// This node does not lead the partition (now); the client should go to `leader`.
    #[error("not the leader of the partition (leader: {leader:?})")]
    NotLeader {
        /// The leader this node knows, if any.
        leader: Option<NodeId>,
    },
    /// No such replicated partition on this node.
    #[error("unknown replicated partition {topic}/{partition}")]
    UnknownPartition {
        /// The topic.
        topic: String,
        /// The partition.
        partition: i32,
    },
    /// The batch was appended but leadership changed before it was committed: it may or may
    /// not be committed; only an idempotent producer's retry is safe.
    #[error("leadership changed before the batch was committed; its outcome is unknown")]
    Unknown,
    /// The log refused the batch.
    #[error(transparent)]
    Log(#[from] LogError),
    /// The partition's Raft group stopped (a storage failure on this node).
    #[error("the partition's replication stopped: {0}")]
    Stopped(String),
}

/// How long a retried batch waits for its first copy to be committed before the producer is
/// told to retry again.
const RETRY_COMMIT_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// How long an idempotent producer's batch waits for a new leader's first entry to be applied
/// before the producer is told to retry ([`propose`]).
const LEADER_SETTLE_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// Entries a node may be behind the leader's commit point and still be ready (`/readyz`): a
/// follower under load is always a little behind.
pub const READY_LAG: u64 = 1000;

/// A log node of a cluster.
pub struct ReplicaNode {
    engine: Arc<LogEngine>,
    spec: ClusterSpec,
    peers: Peers,
    groups: Groups,
    server: tokio::sync::Mutex<Option<RaftServer>>,
    partitions: RwLock<HashMap<(String, i32), Arc<ReplicatedPartition>>>,
    /// The offsets partition and the engine that holds its log, once opened.
    offsets: RwLock<Option<(Arc<ReplicatedPartition>, Arc<LogEngine>)>>,
    state_dir: PathBuf,
    config: Arc<openraft::Config>,
}

impl ReplicaNode {
    /// Starts serving replication on `listener` for the partitions of `engine` this node will
    /// open, keeping each group's Raft state under `state_dir`.
    pub fn start(
        engine: Arc<LogEngine>,
        spec: ClusterSpec,
        listener: TcpListener,
        transport: TransportConfig,
        state_dir: &Path,
    ) -> Result<Arc<Self>, ReplicationError> {
        let peers = Peers::new(spec.cluster_id.clone(), spec.node_id, transport);
        for (&id, addr) in &spec.nodes {
            if id != spec.node_id {
                peers.set_addr(id, addr);
            }
        }
        let groups = Groups::default();
        let server = RaftServer::spawn(listener, peers.clone(), groups.clone())
            .map_err(|e| ReplicationError::Transport(e.to_string()))?;
        let config = raft_config(&spec.cluster_id)
            .map_err(|e| ReplicationError::Transport(format!("raft settings: {e}")))?;
        Ok(Arc::new(Self {
            engine,
            spec,
            peers,
            groups,
            server: tokio::sync::Mutex::new(Some(server)),
            partitions: RwLock::new(HashMap::new()),
            offsets: RwLock::new(None),
            state_dir: state_dir.to_path_buf(),
            config,
        }))
    }

    /// This node's id.
    pub fn node_id(&self) -> NodeId {
        self.spec.node_id
    }

    /// The cluster.
    pub fn spec(&self) -> &ClusterSpec {
        &self.spec
    }

    /// Opens (creating if needed) a replicated topic of `partitions` partitions on this node and
    /// starts their groups; the lowest node id initialises the pristine ones.
    pub async fn open_topic(&self, topic: &str, partitions: i32) -> Result<(), ReplicationError> {
        if topic == OFFSETS_TOPIC {
            return Err(ReplicationError::Log(LogError::InvalidTopic(format!(
                "{topic} is the cluster's internal offsets topic"
            ))));
        }
        self.engine
            .create_replicated_topic(topic, partitions, None)
            .await?;
        for partition in 0..partitions {
            if self.partition(topic, partition).is_some() {
                continue;
            }
            let part = self
                .open_group(&self.engine, topic, partition, None)
                .await?;
            self.partitions
                .write()
                .unwrap_or_else(PoisonError::into_inner)
                .insert((topic.to_owned(), partition), part);
        }
        Ok(())
    }

    /// Opens the internal offsets partition: its log in an engine of its own under `dir`
    /// (created if missing; same flush policy as this node's engine), its committed entries
    /// applied to this node's offsets store. Idempotent.
    pub async fn open_offsets(&self, dir: &Path) -> Result<(), ReplicationError> {
        if self.offsets_partition().is_some() {
            return Ok(());
        }
        let config = headwater_log::LogConfig {
            flush: self.engine.config().flush.clone(),
            auto_create_topics: false,
            ..Default::default()
        };
        let internal = LogEngine::open_async(dir.to_path_buf(), config).await?;
        internal
            .create_replicated_topic(OFFSETS_TOPIC, 1, None)
            .await?;
        let hook: Arc<dyn ApplyHook> = Arc::new(OffsetStoreHook::new(self.engine.clone()));
        let part = self
            .open_group(&internal, OFFSETS_TOPIC, 0, Some(hook))
            .await?;
        *self.offsets.write().unwrap_or_else(PoisonError::into_inner) = Some((part, internal));
        Ok(())
    }

    /// Starts the group of one partition of `engine` (a replicated topic there).
    async fn open_group(
        &self,
        engine: &LogEngine,
        topic: &str,
        partition: i32,
        hook: Option<Arc<dyn ApplyHook>>,
    ) -> Result<Arc<ReplicatedPartition>, ReplicationError> {
        let log = engine.replica(topic, partition)?;
        let state_dir = self.state_dir.join(format!("{topic}-{partition}"));
        // Pristine state (no entry, no vote): a new group, or this node lost its disk (see
        // `Groups`); the marker keeps a restart in the middle of catching up rejoining.
        let marker = crate::state::DurableValue::new(&state_dir, "rejoining")?;
        let pristine = log.state().last.is_none()
            && crate::state::DurableValue::new(&state_dir, "vote")?
                .load::<serde_json::Value>()?
                .is_none();
        if pristine {
            marker.store(&true)?;
        }
        let rejoining = pristine || marker.load::<bool>()? == Some(true);
        let mut storage = GroupStorage::open(log.clone(), &state_dir)?;
        if let Some(hook) = hook {
            storage.state_machine.set_apply_hook(hook);
        }
        let group = group_id(topic, partition);
        let raft = Raft::new(
            self.spec.node_id,
            self.config.clone(),
            self.peers.factory(group).guarded_by(self.groups.clone()),
            storage.log,
            storage.state_machine,
        )
        .await
        .map_err(|e| ReplicationError::Transport(format!("starting the group: {e}")))?;
        if rejoining {
            self.groups.set_rejoining(group, Some(marker));
        }
        self.groups.insert(group, raft.clone());
        crate::metrics::spawn_partition_metrics(topic.to_owned(), partition, raft.clone());
        let lowest = self.spec.nodes.keys().next().copied();
        if lowest == Some(self.spec.node_id) {
            self.bootstrap(&raft).await?;
        }
        if self.groups.is_rejoining(group) {
            // A leader that has applied an entry of its term holds every committed entry (the
            // bootstrapping node of a new group gets there without being sent any).
            let (groups, raft) = (self.groups.clone(), raft.clone());
            tokio::spawn(async move {
                let settled = raft
                    .wait(None)
                    .metrics(
                        |m| {
                            !groups.is_rejoining(group)
                                || (m.state == ServerState::Leader && applied_in_term(m))
                        },
                        "a rejoining group leads in its term",
                    )
                    .await;
                if settled.is_ok() {
                    groups.rejoined(group);
                }
            });
        }
        Ok(Arc::new(ReplicatedPartition {
            group,
            raft,
            log,
            idempotent: tokio::sync::Mutex::new(()),
        }))
    }

    async fn bootstrap(&self, raft: &RaftNode) -> Result<(), ReplicationError> {
        let initialized = raft
            .is_initialized()
            .await
            .map_err(|e| ReplicationError::Transport(e.to_string()))?;
        if initialized {
            return Ok(());
        }
        let members: BTreeMap<NodeId, BasicNode> = self
            .spec
            .nodes
            .iter()
            .map(|(&id, addr)| (id, BasicNode::new(addr.to_string())))
            .collect();
        match raft.initialize(members).await {
            Ok(()) | Err(RaftError::APIError(openraft::error::InitializeError::NotAllowed(_))) => {
                Ok(())
            }
            Err(e) => Err(ReplicationError::Transport(format!("initialising: {e}"))),
        }
    }

    /// A replicated partition of this node.
    pub fn partition(&self, topic: &str, partition: i32) -> Option<Arc<ReplicatedPartition>> {
        self.partitions
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&(topic.to_owned(), partition))
            .cloned()
    }

    /// `Ok` when this node has joined every group it holds and caught up: each has a known
    /// leader, and this node has applied what the leader reported committed, within
    /// [`READY_LAG`] entries. Otherwise the first partitions that are not, and why.
    pub fn readiness(&self) -> Result<(), String> {
        let parts: Vec<(String, i32, Arc<ReplicatedPartition>)> = self
            .partitions
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|((t, p), part)| (t.clone(), *p, part.clone()))
            .collect();
        let mut waiting = Vec::new();
        for (topic, partition, part) in &parts {
            let m = part.raft.metrics().borrow_watched().clone();
            let applied = m.last_applied.map_or(0, |l| l.index);
            let committed = m.cluster_committed.map_or(0, |c| c.index);
            if m.current_leader.is_none() {
                waiting.push(format!("{topic}/{partition}: no leader"));
            } else if committed > applied + READY_LAG {
                waiting.push(format!(
                    "{topic}/{partition}: {} entries behind the leader",
                    committed - applied
                ));
            }
        }
        if waiting.is_empty() {
            return Ok(());
        }
        let total = waiting.len();
        waiting.truncate(3);
        Err(format!(
            "{total} partition(s) not caught up: {}",
            waiting.join("; ")
        ))
    }

    /// Votes and pre-votes a partition's group refused while this node was rejoining it (it
    /// lost its log, see [`crate::net::Groups`]); `None` when it is not rejoining.
    pub fn rejoining(&self, topic: &str, partition: i32) -> Option<u64> {
        self.groups.votes_refused(group_id(topic, partition))
    }

    /// What this node knows about a partition's replicas.
    pub fn view(&self, topic: &str, partition: i32) -> Option<PartitionView> {
        let part = self.partition(topic, partition)?;
        let metrics = part.raft.metrics().borrow_watched().clone();
        let replicas: Vec<NodeId> = metrics.membership_config.voter_ids().collect();
        let in_sync = match (&metrics.replication, metrics.state) {
            (Some(replication), ServerState::Leader) => {
                let committed = metrics.local_committed.map_or(0, |c| c.index);
                replicas
                    .iter()
                    .copied()
                    .filter(|id| {
                        *id == self.spec.node_id
                            || replication
                                .get(id)
                                .and_then(|m| m.as_ref())
                                .is_some_and(|m| m.index >= committed)
                    })
                    .collect()
            }
            _ => replicas.clone(),
        };
        let leader_heard = match metrics.current_leader {
            Some(leader) if leader != self.spec.node_id => self
                .groups
                .leader_heard(part.group)
                .is_some_and(|at| at.elapsed() <= LEADER_SILENCE),
            _ => true,
        };
        Some(PartitionView {
            leader: metrics.current_leader,
            term: metrics.current_term,
            leader_heard,
            replicas,
            in_sync,
        })
    }

    /// Proposes one Kafka RecordBatch (as a producer sent it) to a partition this node leads;
    /// resolves once it is committed on a majority, with the offsets its records got.
    pub async fn append(
        &self,
        topic: &str,
        partition: i32,
        records: Bytes,
    ) -> Result<Applied, ProposeError> {
        let part =
            self.partition(topic, partition)
                .ok_or_else(|| ProposeError::UnknownPartition {
                    topic: topic.to_owned(),
                    partition,
                })?;
        propose(&part, records).await
    }

    fn offsets_partition(&self) -> Option<Arc<ReplicatedPartition>> {
        self.offsets
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .map(|(part, _)| part.clone())
    }

    /// Who coordinates consumer groups, as this node knows it (no leader before
    /// [`ReplicaNode::open_offsets`]).
    pub fn offsets_view(&self) -> OffsetsView {
        let Some(part) = self.offsets_partition() else {
            return OffsetsView {
                leader: None,
                loaded: false,
            };
        };
        let metrics = part.raft.metrics().borrow_watched().clone();
        let leads = metrics.state == ServerState::Leader
            && metrics.current_leader == Some(self.spec.node_id);
        let loaded = leads
            && metrics
                .last_applied
                .is_some_and(|applied| applied.leader_id.term == metrics.current_term);
        OffsetsView {
            leader: metrics.current_leader,
            loaded,
        }
    }

    /// Commits offsets of `group` (`(topic, partition, offset)` each) through the offsets
    /// partition, which this node must lead; resolves once they are committed on a majority
    /// and applied to this node's offsets store.
    pub async fn commit_offsets(
        &self,
        group: &str,
        offsets: &[(&str, i32, i64)],
    ) -> Result<(), ProposeError> {
        let part = self
            .offsets_partition()
            .ok_or_else(|| ProposeError::UnknownPartition {
                topic: OFFSETS_TOPIC.to_owned(),
                partition: 0,
            })?;
        let batch = crate::offsets::encode(group, offsets)?;
        propose(&part, batch).await.map(|_| ())
    }

    /// Stops every group and the replication server (the engine is the caller's to close).
    pub async fn shutdown(&self) {
        if let Some(server) = self.server.lock().await.take() {
            server.shutdown().await;
        }
        let parts: Vec<Arc<ReplicatedPartition>> = self
            .partitions
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .drain()
            .map(|(_, p)| p)
            .collect();
        let offsets = self
            .offsets
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        let internal = offsets.as_ref().map(|(_, engine)| engine.clone());
        for part in parts.into_iter().chain(offsets.map(|(part, _)| part)) {
            self.groups.remove(part.group);
            if let Err(e) = part.raft.shutdown().await {
                tracing::warn!(group = part.group, error = %e, "raft group did not stop cleanly");
            }
        }
        if let Some(internal) = internal
            && let Err(e) = internal.close().await
        {
            tracing::warn!(error = %e, "the offsets partition's log did not close cleanly");
        }
    }
}

/// Proposes one RecordBatch to `part`, which this node must lead.
///
/// An idempotent producer's batch is checked against the producer state only once this leader
/// has applied an entry of its own term. Before that, an entry an earlier leader wrote and this
/// log lacks may still be committed by a later leader that holds it (Raft keeps any entry the
/// winner of an election has); a sequence gap reported then would be false, and a producer told
/// OUT_OF_ORDER_SEQUENCE_NUMBER bumps its epoch and sends that batch again: a duplicate (seen
/// under kills during elections). Once an entry of this term is committed, an entry this log
/// lacks can never be committed, so the producer state is the truth. Every answer drawn from it
/// is given only while this node still leads in that term.
async fn propose(part: &ReplicatedPartition, records: Bytes) -> Result<Applied, ProposeError> {
    let producer = BatchHeader::parse(&records).map_or(-1, |h| h.producer_id);
    let _turn = if producer >= 0 {
        Some(part.idempotent.lock().await)
    } else {
        None
    };
    if producer >= 0 {
        let term = settled_term(part).await?;
        let checked = part.log.duplicate_of(&records);
        if let Some(not_leader) = lost_leadership(part, term) {
            return Err(not_leader);
        }
        if let Some((base_offset, next_offset)) = checked? {
            // The first copy may be in this log but not committed yet (written under an
            // earlier leader): its offsets are an acknowledgement only once it is, and only
            // if this node led throughout (a leader never truncates its own log; a follower's
            // commit point may pass offsets whose entries were replaced).
            let committed = part
                .log
                .wait_committed(next_offset, RETRY_COMMIT_WAIT)
                .await?;
            if !committed || lost_leadership(part, term).is_some() {
                return Err(ProposeError::Unknown);
            }
            return Ok(Applied::Data {
                base_offset,
                next_offset,
            });
        }
    }
    match part.raft.client_write(Batch(records)).await {
        Ok(response) => Ok(response.data),
        Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => {
            Err(ProposeError::NotLeader {
                leader: f.leader_id,
            })
        }
        Err(RaftError::APIError(ClientWriteError::LogEntryDiscarded(_))) => {
            Err(ProposeError::Unknown)
        }
        Err(RaftError::APIError(e)) => Err(ProposeError::Stopped(e.to_string())),
        Err(RaftError::Fatal(e)) => Err(ProposeError::Stopped(e.to_string())),
    }
}

/// Waits (up to [`LEADER_SETTLE_WAIT`]) until this node leads `part` and has applied an entry
/// of its current term; returns that term.
async fn settled_term(part: &ReplicatedPartition) -> Result<Term, ProposeError> {
    let settled = part
        .raft
        .wait(Some(LEADER_SETTLE_WAIT))
        .metrics(
            |m| m.state != ServerState::Leader || applied_in_term(m),
            "the leader's first entry applied",
        )
        .await;
    let m = match settled {
        Ok(m) => m,
        Err(_) => part.raft.metrics().borrow_watched().clone(),
    };
    if m.state == ServerState::Leader && applied_in_term(&m) {
        Ok(m.current_term)
    } else {
        Err(ProposeError::NotLeader {
            leader: m.current_leader,
        })
    }
}

fn applied_in_term(m: &openraft::RaftMetrics<crate::types::TypeConfig>) -> bool {
    m.last_applied
        .is_some_and(|applied| applied.leader_id.term == m.current_term)
}

/// `Some(NotLeader)` unless this node still leads `part` in `term`.
fn lost_leadership(part: &ReplicatedPartition, term: Term) -> Option<ProposeError> {
    let m = part.raft.metrics().borrow_watched().clone();
    if m.state == ServerState::Leader && m.current_term == term {
        None
    } else {
        Some(ProposeError::NotLeader {
            leader: m.current_leader,
        })
    }
}
