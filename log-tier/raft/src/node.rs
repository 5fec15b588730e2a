//! A log node of a cluster: the replicated partitions it holds (one openraft group each, every
//! node a voter), the replication server, the peers, and the leader's proposal path.
//!
//! Configured topics (`log.topics`) are on every node: the node with the lowest id initialises
//! each group whose Raft state is pristine on it, with every node as a voter; the others wait
//! to be contacted.
//!
//! Topics created at run time go through the internal metadata partition
//! ([`crate::metadata`], [`ReplicaNode::open_metadata`]): a creation or deletion asked of any
//! node is forwarded to the metadata leader over the replication transport, which checks it,
//! places the partitions ([`crate::metadata::place`]) and commits it; every node applies it and
//! opens (every voter of a new group initialises it with the same membership) or drops the
//! partitions it holds. Leaders of such partitions publish themselves through the metadata, so
//! that a node without a replica names the leader to clients.
//!
//! Beside the data topics, a node holds the internal offsets partition
//! ([`crate::offsets::OFFSETS_TOPIC`]) in an engine of its own, out of reach of the data path
//! ([`ReplicaNode::partition`], [`ReplicaNode::append`] never see it): its leader coordinates
//! consumer groups, and its committed entries are applied to every node's offsets store.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock, Weak};
use std::time::Duration;

use bytes::Bytes;
use headwater_log::batch::BatchHeader;
use headwater_log::{LogEngine, LogError, ReplicaLog};
use openraft::error::{ClientWriteError, RaftError};
use openraft::type_config::async_runtime::watch::WatchReceiver;
use openraft::{BasicNode, Raft, ServerState};
use sha2::{Digest, Sha256};
use tokio::net::TcpListener;

use crate::error::ReplicationError;
use crate::group::GroupStorage;
use crate::identity::{Identity, Verdict};
use crate::metadata::{
    AdminError, Answer, Command, Leadership, METADATA_TOPIC, MetadataHook, Request, Table,
    TopicPlacement,
};
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
    /// Elections after `[min, max]` ms of a silent leader (after its lease, `max`).
    pub election_timeout_ms: [u64; 2],
}

/// The wire id of a partition's group of a configured topic: the same on every node.
pub fn group_id(topic: &str, partition: i32) -> GroupId {
    group_id_of(topic, partition, 0)
}

/// The wire id of a partition's group of incarnation `incarnation` of a topic (0 for
/// configured topics, the creating metadata index for topics created at run time,
/// [`crate::metadata`]): the same on every node, another for each incarnation.
pub fn group_id_of(topic: &str, partition: i32, incarnation: u64) -> GroupId {
    let mut hash = Sha256::new();
    hash.update(topic.as_bytes());
    hash.update([0]);
    hash.update(partition.to_be_bytes());
    if incarnation != 0 {
        hash.update(incarnation.to_be_bytes());
    }
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
pub const LEADER_SILENCE: std::time::Duration = std::time::Duration::from_millis(300);

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

/// How long a metadata request waits for a leader to take and commit it.
const METADATA_WAIT: Duration = Duration::from_secs(10);

/// How long a creation or deletion waits for another node to apply it before answering: a
/// node that is down, or this far behind, is passed over.
const SETTLE_WAIT: Duration = Duration::from_secs(2);

/// A node that acknowledged the metadata leader within this long counts as live when a new
/// topic is placed.
const LIVE_WITHIN: Duration = Duration::from_secs(3);

/// The replicas a topic created at run time gets when the request names none (at most the
/// node count).
pub const DEFAULT_REPLICATION: usize = 3;

/// A topic created at run time as this node holds it, kept in `runtime-topics` under the
/// state directory so that a restart reopens its groups before the metadata is replayed.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct LocalTopic {
    incarnation: u64,
    partitions: i32,
    /// The partitions this node is a replica of.
    held: Vec<i32>,
}

/// The topics created at run time this node holds.
struct RuntimeTopics {
    file: crate::state::DurableValue,
    topics: BTreeMap<String, LocalTopic>,
}

/// A log node of a cluster.
pub struct ReplicaNode {
    engine: Arc<LogEngine>,
    spec: ClusterSpec,
    /// Whether this node is new, known, or replaces one that lost its disk.
    identity: Arc<Identity>,
    peers: Peers,
    groups: Groups,
    server: tokio::sync::Mutex<Option<RaftServer>>,
    partitions: RwLock<HashMap<(String, i32), Arc<ReplicatedPartition>>>,
    /// The offsets partition and the engine that holds its log, once opened.
    offsets: RwLock<Option<(Arc<ReplicatedPartition>, Arc<LogEngine>)>>,
    /// The metadata partition and the engine that holds its log, once opened.
    metadata: RwLock<Option<(Arc<ReplicatedPartition>, Arc<LogEngine>)>>,
    /// The metadata as applied here.
    table: tokio::sync::watch::Sender<Table>,
    /// Topics created at run time held here; locked while they are opened or dropped.
    runtime: tokio::sync::Mutex<RuntimeTopics>,
    /// Serialises topic creations and deletions on the metadata leader (check, then propose).
    admin: tokio::sync::Mutex<()>,
    /// The configured topics (`log.topics`) opened here.
    configured: RwLock<BTreeSet<String>>,
    /// The metadata term in which this node first placed a topic as leader, and when.
    leading_since: std::sync::Mutex<Option<(Term, std::time::Instant)>>,
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
        let others = spec.nodes.keys().filter(|&&id| id != spec.node_id).count();
        let identity = Arc::new(Identity::open(state_dir, others)?);
        let peers = Peers::with_identity(
            spec.cluster_id.clone(),
            spec.node_id,
            transport,
            identity.clone(),
        );
        for (&id, addr) in &spec.nodes {
            if id != spec.node_id {
                peers.set_addr(id, addr);
            }
        }
        let groups = Groups::default();
        if identity.verdict() == Verdict::Deciding {
            // A new data directory: once every peer has answered without knowing this node,
            // its groups are new ones and vote at once (crate::identity).
            let (groups, mut verdict) = (groups.clone(), identity.subscribe());
            let (greeter, others) = (peers.clone(), spec.nodes.keys().copied());
            let others: Vec<NodeId> = others.filter(|&id| id != spec.node_id).collect();
            tokio::spawn(async move {
                // Followers send peers nothing, so meet each of them: until decided, dial every
                // 200 ms the peers not connected (a dial failing backs off).
                let mut tick = tokio::time::interval(Duration::from_millis(200));
                let decided = loop {
                    let now = *verdict.borrow_and_update();
                    if now != Verdict::Deciding {
                        break now;
                    }
                    tokio::select! {
                        changed = verdict.changed() => if changed.is_err() { return },
                        _ = tick.tick() => {
                            for &peer in &others {
                                let _ = greeter.greet(peer).await;
                            }
                        }
                    }
                };
                if decided == Verdict::New {
                    for group in groups.rejoining_groups() {
                        groups.rejoined(group);
                    }
                }
            });
        }
        let server = RaftServer::spawn(listener, peers.clone(), groups.clone())
            .map_err(|e| ReplicationError::Transport(e.to_string()))?;
        let config = crate::group::raft_config_with(&spec.cluster_id, spec.election_timeout_ms)
            .map_err(|e| ReplicationError::Transport(format!("raft settings: {e}")))?;
        let file = crate::state::DurableValue::new(state_dir, "runtime-topics")?;
        let topics = file.load()?.unwrap_or_default();
        let node = Arc::new(Self {
            engine,
            spec,
            identity,
            peers,
            groups,
            server: tokio::sync::Mutex::new(Some(server)),
            partitions: RwLock::new(HashMap::new()),
            offsets: RwLock::new(None),
            metadata: RwLock::new(None),
            table: tokio::sync::watch::Sender::new(Table::default()),
            runtime: tokio::sync::Mutex::new(RuntimeTopics { file, topics }),
            admin: tokio::sync::Mutex::new(()),
            configured: RwLock::new(BTreeSet::new()),
            leading_since: std::sync::Mutex::new(None),
            state_dir: state_dir.to_path_buf(),
            config,
        });
        tokio::spawn(retention_loop(Arc::downgrade(&node)));
        Ok(node)
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
        if topic == OFFSETS_TOPIC || topic == METADATA_TOPIC {
            return Err(ReplicationError::Log(LogError::InvalidTopic(format!(
                "{topic} is an internal topic of the cluster"
            ))));
        }
        self.engine
            .create_replicated_topic(topic, partitions, None)
            .await?;
        self.configured
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(topic.to_owned());
        for partition in 0..partitions {
            if self.partition(topic, partition).is_some() {
                continue;
            }
            let part = self
                .open_group(&self.engine, topic, partition, Placement::Configured, None)
                .await?;
            self.partitions
                .write()
                .unwrap_or_else(PoisonError::into_inner)
                .insert((topic.to_owned(), partition), part);
        }
        Ok(())
    }

    /// The engine of an internal topic of one partition under `dir` (created if missing; same
    /// flush policy as this node's engine).
    async fn open_internal(
        &self,
        dir: &Path,
        topic: &str,
    ) -> Result<Arc<LogEngine>, ReplicationError> {
        let config = headwater_log::LogConfig {
            flush: self.engine.config().flush.clone(),
            auto_create_topics: false,
            ..Default::default()
        };
        let internal = LogEngine::open_async(dir.to_path_buf(), config).await?;
        internal.create_replicated_topic(topic, 1, None).await?;
        Ok(internal)
    }

    /// Opens the internal offsets partition: its log in an engine of its own under `dir`
    /// (created if missing; same flush policy as this node's engine), its committed entries
    /// applied to this node's offsets store. Idempotent.
    pub async fn open_offsets(&self, dir: &Path) -> Result<(), ReplicationError> {
        if self.offsets_partition().is_some() {
            return Ok(());
        }
        let internal = self.open_internal(dir, OFFSETS_TOPIC).await?;
        let hook: Arc<dyn ApplyHook> = Arc::new(OffsetStoreHook::new(self.engine.clone()));
        let part = self
            .open_group(
                &internal,
                OFFSETS_TOPIC,
                0,
                Placement::Configured,
                Some(hook),
            )
            .await?;
        *self.offsets.write().unwrap_or_else(PoisonError::into_inner) = Some((part, internal));
        Ok(())
    }

    /// Opens the internal metadata partition ([`crate::metadata`]): its log in an engine of its
    /// own under `dir`, its committed entries applied to this node's metadata table; reopens the
    /// topics created at run time this node holds, and from then on opens and drops them as the
    /// metadata says. Idempotent.
    pub async fn open_metadata(self: &Arc<Self>, dir: &Path) -> Result<(), ReplicationError> {
        if self.metadata_partition().is_some() {
            return Ok(());
        }
        let internal = self.open_internal(dir, METADATA_TOPIC).await?;
        // Reopen what this node held before the metadata is replayed: clients are served as
        // soon as the groups elect, and a deletion applied later drops them again.
        let held: Vec<(String, LocalTopic)> = {
            let runtime = self.runtime.lock().await;
            runtime.topics.clone().into_iter().collect()
        };
        for (name, local) in held {
            for &partition in &local.held {
                self.open_runtime_partition(&name, partition, local.incarnation, None)
                    .await?;
            }
        }
        let hook: Arc<dyn ApplyHook> = Arc::new(MetadataHook::new(self.table.clone()));
        let part = self
            .open_group(
                &internal,
                METADATA_TOPIC,
                0,
                Placement::Configured,
                Some(hook),
            )
            .await?;
        let weak = Arc::downgrade(self);
        self.groups.accept_forwarded(
            part.group,
            Arc::new(move |body: Bytes| {
                let weak = weak.clone();
                Box::pin(async move {
                    let answer = match (weak.upgrade(), serde_json::from_slice::<Request>(&body)) {
                        (Some(node), Ok(request)) => node.execute(request).await,
                        (None, _) => Answer::Refused(AdminError::Unavailable(
                            "the node is stopping".to_owned(),
                        )),
                        (_, Err(e)) => Answer::Refused(AdminError::Unavailable(format!(
                            "malformed metadata request: {e}"
                        ))),
                    };
                    Bytes::from(serde_json::to_vec(&answer).unwrap_or_default())
                })
            }),
        );
        *self
            .metadata
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Some((part, internal));
        let weak = Arc::downgrade(self);
        let mut changes = self.table.subscribe();
        tokio::spawn(async move {
            loop {
                let Some(node) = weak.upgrade() else { return };
                let table = changes.borrow_and_update().clone();
                let failed = node.reconcile(&table).await.err();
                drop(node);
                if let Some(e) = failed {
                    // Tried again at the next change of the metadata, or in a second.
                    tracing::error!(error = %e, "applying the cluster's metadata failed");
                    match tokio::time::timeout(Duration::from_secs(1), changes.changed()).await {
                        Ok(Err(_)) => return,
                        Ok(Ok(())) | Err(_) => continue,
                    }
                }
                if changes.changed().await.is_err() {
                    return;
                }
            }
        });
        Ok(())
    }

    fn metadata_partition(&self) -> Option<Arc<ReplicatedPartition>> {
        self.metadata
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .map(|(part, _)| part.clone())
    }

    /// Brings the topics created at run time this node holds in line with `table`: drops
    /// copies the metadata made stale (deleted, or replaced by a new incarnation), creates and
    /// opens the partitions placed here.
    async fn reconcile(self: &Arc<Self>, table: &Table) -> Result<(), ReplicationError> {
        let me = self.spec.node_id;
        let stale: Vec<(String, LocalTopic)> = {
            let runtime = self.runtime.lock().await;
            runtime
                .topics
                .iter()
                .filter(|(name, local)| table.is_stale(name, local.incarnation))
                .map(|(name, local)| (name.clone(), local.clone()))
                .collect()
        };
        for (name, local) in stale {
            self.drop_runtime_topic(&name, &local).await?;
        }
        for (name, placement) in &table.topics {
            if !placement.holds(me) {
                continue;
            }
            let held: Vec<i32> = (0..placement.partitions())
                .filter(|&p| placement.replicas[p as usize].contains(&me))
                .collect();
            let known = {
                let runtime = self.runtime.lock().await;
                runtime.topics.get(name).cloned()
            };
            if known.is_none() {
                // Recorded before anything is created, so that a deletion finds it.
                let local = LocalTopic {
                    incarnation: placement.incarnation,
                    partitions: placement.partitions(),
                    held: held.clone(),
                };
                let mut runtime = self.runtime.lock().await;
                runtime.topics.insert(name.clone(), local);
                runtime.file.store(&runtime.topics)?;
            }
            self.engine
                .create_replicated_topic(name, placement.partitions(), None)
                .await?;
            for &partition in &held {
                if self.partition(name, partition).is_none() {
                    let voters = placement.replicas[partition as usize].clone();
                    self.open_runtime_partition(
                        name,
                        partition,
                        placement.incarnation,
                        Some(voters),
                    )
                    .await?;
                }
            }
        }
        Ok(())
    }

    /// Opens one partition of a topic created at run time and publishes its leadership when
    /// this node leads it. `voters` (the placement) when it is new: every voter may start
    /// the group.
    async fn open_runtime_partition(
        self: &Arc<Self>,
        topic: &str,
        partition: i32,
        incarnation: u64,
        voters: Option<Vec<NodeId>>,
    ) -> Result<(), ReplicationError> {
        let placement = Placement::Runtime {
            incarnation,
            voters,
        };
        let part = self
            .open_group(&self.engine, topic, partition, placement, None)
            .await?;
        let raft = part.raft.clone();
        self.partitions
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert((topic.to_owned(), partition), part);
        let (weak, topic) = (Arc::downgrade(self), topic.to_owned());
        tokio::spawn(publish_leadership(
            weak,
            raft,
            topic,
            partition,
            incarnation,
        ));
        Ok(())
    }

    /// Stops the groups of a topic created at run time and deletes this node's copy.
    async fn drop_runtime_topic(
        &self,
        name: &str,
        local: &LocalTopic,
    ) -> Result<(), ReplicationError> {
        for partition in 0..local.partitions {
            let part = self
                .partitions
                .write()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(&(name.to_owned(), partition));
            if let Some(part) = part {
                self.groups.remove(part.group);
                if let Err(e) = part.raft.shutdown().await {
                    tracing::warn!(topic = name, partition, error = %e, "raft group did not stop cleanly");
                }
            }
        }
        for partition in 0..local.partitions {
            let dir = self.state_dir.join(format!("{name}-{partition}"));
            match std::fs::remove_dir_all(&dir) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(source) => {
                    return Err(ReplicationError::Io {
                        context: "removing",
                        path: dir,
                        source,
                    });
                }
            }
        }
        // The Raft state goes first: a crash before the log is deleted leaves a topic the
        // record still names, dropped again at the next start.
        match self.engine.delete_topic(name).await {
            Ok(()) | Err(LogError::UnknownTopic(_)) => {}
            Err(e) => return Err(e.into()),
        }
        let mut runtime = self.runtime.lock().await;
        runtime.topics.remove(name);
        runtime.file.store(&runtime.topics)?;
        tracing::info!(
            topic = name,
            incarnation = local.incarnation,
            "topic dropped from this node"
        );
        Ok(())
    }

    /// The topics created at run time, as this node has applied the metadata.
    pub fn runtime_topics(&self) -> BTreeMap<String, TopicPlacement> {
        self.table.borrow().topics.clone()
    }

    /// The partition count of `topic` if it was created at run time (as this node has applied
    /// the metadata), without copying the table.
    pub fn runtime_partitions(&self, topic: &str) -> Option<i32> {
        self.table
            .borrow()
            .topics
            .get(topic)
            .map(TopicPlacement::partitions)
    }

    /// Creates a topic replicated on `replication` nodes (`None`: [`DEFAULT_REPLICATION`], at
    /// most the node count), through the metadata leader. Returns once every partition has a
    /// leader this node knows (as Kafka's controller names leaders in the creation itself), or
    /// after [`METADATA_WAIT`] with the creation done and leaders still being elected.
    pub async fn create_topic(
        &self,
        name: &str,
        partitions: u32,
        replication: Option<u16>,
    ) -> Result<(), AdminError> {
        self.submit(Request::CreateTopic {
            name: name.to_owned(),
            partitions,
            replication,
        })
        .await?;
        let mut changes = self.table.subscribe();
        let led = tokio::time::timeout(METADATA_WAIT, async {
            loop {
                let partitions = changes
                    .borrow_and_update()
                    .topics
                    .get(name)
                    .map(TopicPlacement::partitions);
                let all_led = partitions.is_some_and(|n| {
                    (0..n).all(|p| self.view(name, p).is_some_and(|v| v.leader.is_some()))
                });
                if all_led {
                    return;
                }
                // Local groups learn their leader without a metadata change: look again soon.
                let _ = tokio::time::timeout(Duration::from_millis(50), changes.changed()).await;
            }
        })
        .await;
        if led.is_err() {
            tracing::info!(topic = name, "created; some partitions have no leader yet");
        }
        self.settle_on_peers().await;
        Ok(())
    }

    /// Deletes a topic created at run time, through the metadata leader; returns once this
    /// node has applied the deletion (at most [`METADATA_WAIT`] after it was committed) and
    /// every other node has too ([`Self::settle_on_peers`]).
    pub async fn delete_topic(&self, name: &str) -> Result<(), AdminError> {
        self.submit(Request::DeleteTopic {
            name: name.to_owned(),
        })
        .await?;
        let mut changes = self.table.subscribe();
        let _ = tokio::time::timeout(
            METADATA_WAIT,
            changes.wait_for(|table| !table.topics.contains_key(name)),
        )
        .await;
        self.settle_on_peers().await;
        Ok(())
    }

    /// Waits until every other node has applied the metadata this node has, so that a client
    /// that asks any broker next sees the change it was just told is done (Kafka's brokers
    /// learn metadata in their own time; ours answer once they all know). A node that does not
    /// answer within [`SETTLE_WAIT`] (down, cut off, far behind) is passed over: it is not
    /// serving, or will be soon corrected by the metadata it applies next.
    async fn settle_on_peers(&self) {
        let Some(part) = self.metadata_partition() else {
            return;
        };
        let index = self.table.borrow().applied;
        let body = match serde_json::to_vec(&Request::AwaitApplied { index }) {
            Ok(body) => Bytes::from(body),
            Err(_) => return,
        };
        let asks = self
            .spec
            .nodes
            .keys()
            .filter(|&&node| node != self.spec.node_id)
            .map(|&node| {
                let body = body.clone();
                let group = part.group;
                async move {
                    let answer = self.peers.forward(node, group, body, SETTLE_WAIT).await;
                    let applied = match answer {
                        Ok(answer) => match serde_json::from_slice::<Answer>(&answer) {
                            Ok(Answer::Applied { index }) => Some(index),
                            _ => None,
                        },
                        Err(_) => None,
                    };
                    if applied.is_none_or(|applied| applied < index) {
                        tracing::info!(
                            node,
                            index,
                            ?applied,
                            "a node has not applied the metadata change yet; answering anyway"
                        );
                    }
                }
            });
        futures::future::join_all(asks).await;
    }

    /// Answers [`Request::AwaitApplied`]: once this node has applied the metadata up to
    /// `index`, or after [`SETTLE_WAIT`], with what it has applied.
    async fn await_applied(&self, index: u64) -> Answer {
        let mut changes = self.table.subscribe();
        let _ = tokio::time::timeout(
            SETTLE_WAIT,
            changes.wait_for(|table| table.applied >= index),
        )
        .await;
        Answer::Applied {
            index: self.table.borrow().applied,
        }
    }

    /// Whether `topic` was created at run time and deleted since (not created again), as this
    /// node has applied the metadata: a copy still here is being dropped.
    pub fn is_deleted(&self, topic: &str) -> bool {
        let table = self.table.borrow();
        table.deleted.contains_key(topic) && !table.topics.contains_key(topic)
    }

    /// Has the metadata leader carry out `request`: here when this node leads, else forwarded.
    async fn submit(&self, request: Request) -> Result<(), AdminError> {
        let part = self.metadata_partition().ok_or_else(|| {
            AdminError::Unavailable("the metadata partition is not open".to_owned())
        })?;
        let body = Bytes::from(serde_json::to_vec(&request).unwrap_or_default());
        let deadline = tokio::time::Instant::now() + METADATA_WAIT;
        let mut last = "no leader".to_owned();
        while tokio::time::Instant::now() < deadline {
            let leader = part.raft.metrics().borrow_watched().current_leader;
            let answer = match leader {
                None => None,
                Some(leader) if leader == self.spec.node_id => {
                    Some(self.execute(request.clone()).await)
                }
                Some(leader) => {
                    let left = deadline.saturating_duration_since(tokio::time::Instant::now());
                    match self
                        .peers
                        .forward(leader, part.group, body.clone(), left)
                        .await
                    {
                        Ok(answer) => match serde_json::from_slice::<Answer>(&answer) {
                            Ok(answer) => Some(answer),
                            Err(e) => {
                                last = format!("node {leader} answered: {e}");
                                None
                            }
                        },
                        Err(e) => {
                            last = format!("node {leader}: {e}");
                            None
                        }
                    }
                }
            };
            match answer {
                Some(Answer::Done) => return Ok(()),
                Some(Answer::Refused(AdminError::Unavailable(why))) => last = why,
                Some(Answer::Refused(refusal)) => return Err(refusal),
                Some(Answer::NotLeader { .. } | Answer::Applied { .. }) | None => {}
            }
            // Wait for a (new) leader, or a little, before asking again.
            let known = leader;
            let _ = part
                .raft
                .wait(Some(Duration::from_millis(200)))
                .metrics(
                    |m| m.current_leader.is_some() && m.current_leader != known,
                    "a metadata leader",
                )
                .await;
        }
        Err(AdminError::Unavailable(last))
    }

    /// Carries out a metadata request as the metadata leader (or, [`Request::AwaitApplied`],
    /// as any node).
    async fn execute(&self, request: Request) -> Answer {
        let Some(part) = self.metadata_partition() else {
            return Answer::Refused(AdminError::Unavailable(
                "the metadata partition is not open".to_owned(),
            ));
        };
        let command = match request {
            Request::Leader(leadership) => Command::Leader(leadership),
            // Any node answers this one.
            Request::AwaitApplied { index } => return self.await_applied(index).await,
            Request::CreateTopic {
                name,
                partitions,
                replication,
            } => {
                let _turn = self.admin.lock().await;
                match self.placed(&part, &name, partitions, replication).await {
                    Ok(command) => return self.commit_metadata(&part, command).await,
                    Err(answer) => return answer,
                }
            }
            Request::DeleteTopic { name } => {
                let _turn = self.admin.lock().await;
                if let Err(answer) = settled_term(&part).await {
                    return not_leader(answer);
                }
                if !self.table.borrow().topics.contains_key(&name) {
                    let configured = self
                        .configured
                        .read()
                        .unwrap_or_else(PoisonError::into_inner)
                        .contains(&name);
                    return Answer::Refused(if configured {
                        AdminError::Policy(format!(
                            "topic {name} is configured in log.topics on every node; remove it there"
                        ))
                    } else {
                        AdminError::UnknownTopic(format!("no topic {name}"))
                    });
                }
                return self
                    .commit_metadata(&part, Command::DeleteTopic { name })
                    .await;
            }
        };
        self.commit_metadata(&part, command).await
    }

    /// Checks a creation against the metadata as this leader has applied it and places it.
    async fn placed(
        &self,
        part: &ReplicatedPartition,
        name: &str,
        partitions: u32,
        replication: Option<u16>,
    ) -> Result<Command, Answer> {
        settled_term(part).await.map_err(not_leader)?;
        let refuse = |e: AdminError| Answer::Refused(e);
        headwater_log::check_topic_name(name)
            .map_err(|e| refuse(AdminError::InvalidTopic(e.to_string())))?;
        if name.starts_with("__") {
            return Err(refuse(AdminError::InvalidTopic(format!(
                "{name}: names starting with __ are the cluster's own"
            ))));
        }
        let configured = self
            .configured
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(name);
        if configured || self.table.borrow().topics.contains_key(name) {
            return Err(refuse(AdminError::TopicExists(name.to_owned())));
        }
        if partitions == 0 {
            return Err(refuse(AdminError::InvalidPartitions(
                "at least one partition".to_owned(),
            )));
        }
        let nodes = self.spec.nodes.len();
        let replication = match replication {
            None => DEFAULT_REPLICATION.min(nodes),
            Some(0) => {
                return Err(refuse(AdminError::InvalidReplicationFactor(
                    "at least one replica".to_owned(),
                )));
            }
            Some(r) if usize::from(r) > nodes => {
                return Err(refuse(AdminError::InvalidReplicationFactor(format!(
                    "{r} replicas, but the cluster has {nodes} nodes"
                ))));
            }
            Some(r) => usize::from(r),
        };
        let m = part.raft.metrics().borrow_watched().clone();
        // A node this leader never heard from counts as live while the leader is new (its
        // first heartbeats may not have been answered yet).
        let new_leader = {
            let mut since = self
                .leading_since
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if since.is_none_or(|(term, _)| term != m.current_term) {
                *since = Some((m.current_term, std::time::Instant::now()));
            }
            since.is_some_and(|(_, at)| at.elapsed() <= LIVE_WITHIN)
        };
        let (mut live, mut down) = (Vec::new(), Vec::new());
        for &node in self.spec.nodes.keys() {
            let acked = match m.heartbeat.as_ref().and_then(|h| h.get(&node)) {
                Some(Some(at)) => openraft::Instant::elapsed(&**at) <= LIVE_WITHIN,
                Some(None) | None => new_leader,
            };
            if node == self.spec.node_id || acked {
                live.push(node);
            } else {
                down.push(node);
            }
        }
        Ok(Command::CreateTopic {
            name: name.to_owned(),
            replicas: crate::metadata::place(&live, &down, partitions, replication),
        })
    }

    /// Proposes one command to the metadata partition, which this node leads.
    async fn commit_metadata(&self, part: &ReplicatedPartition, command: Command) -> Answer {
        let batch = match crate::metadata::encode(&[command]) {
            Ok(batch) => batch,
            Err(e) => return Answer::Refused(AdminError::Unavailable(e.to_string())),
        };
        match propose(part, batch).await {
            Ok(_) => Answer::Done,
            Err(ProposeError::NotLeader { leader }) => Answer::NotLeader { leader },
            Err(e) => Answer::Refused(AdminError::Unavailable(e.to_string())),
        }
    }

    /// Starts the group of one partition of `engine` (a replicated topic there).
    async fn open_group(
        &self,
        engine: &LogEngine,
        topic: &str,
        partition: i32,
        placement: Placement,
        hook: Option<Arc<dyn ApplyHook>>,
    ) -> Result<Arc<ReplicatedPartition>, ReplicationError> {
        let log = engine.replica(topic, partition)?;
        let state_dir = self.state_dir.join(format!("{topic}-{partition}"));
        // Pristine state (no entry, no vote): a new group, or this node lost its disk (see
        // `Groups`). On a data directory in use before this start it is a new group; on a new
        // one it rejoins until the node knows it is new (crate::identity). The marker keeps a
        // restart in the middle of catching up rejoining.
        let marker = crate::state::DurableValue::new(&state_dir, "rejoining")?;
        let pristine = log.state().last.is_none()
            && crate::state::DurableValue::new(&state_dir, "vote")?
                .load::<serde_json::Value>()?
                .is_none();
        let unproven = matches!(
            self.identity.verdict(),
            Verdict::Deciding | Verdict::Replacement
        );
        if pristine && unproven {
            marker.store(&true)?;
        }
        let rejoining = (pristine && unproven) || marker.load::<bool>()? == Some(true);
        let mut storage = GroupStorage::open(log.clone(), &state_dir)?;
        if let Some(hook) = hook {
            storage.state_machine.set_apply_hook(hook);
        }
        let incarnation = match &placement {
            Placement::Configured => 0,
            Placement::Runtime { incarnation, .. } => *incarnation,
        };
        let group = group_id_of(topic, partition, incarnation);
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
            if unproven && self.identity.verdict() == Verdict::New {
                // Decided new while this group opened (the decision's task ran before).
                self.groups.rejoined(group);
            }
        }
        self.groups.insert(group, raft.clone());
        crate::metrics::spawn_partition_metrics(topic.to_owned(), partition, raft.clone());
        match placement {
            Placement::Configured => {
                let lowest = self.spec.nodes.keys().next().copied();
                if lowest == Some(self.spec.node_id) {
                    let every: Vec<NodeId> = self.spec.nodes.keys().copied().collect();
                    self.bootstrap(&raft, &every).await?;
                }
            }
            // Every voter of a new group starts it with the same membership (safe in Raft:
            // one of them wins the election), so a voter down at creation does not stop it.
            Placement::Runtime {
                voters: Some(voters),
                ..
            } if voters.contains(&self.spec.node_id) => self.bootstrap(&raft, &voters).await?,
            Placement::Runtime { .. } => {}
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

    async fn bootstrap(&self, raft: &RaftNode, voters: &[NodeId]) -> Result<(), ReplicationError> {
        let initialized = raft
            .is_initialized()
            .await
            .map_err(|e| ReplicationError::Transport(e.to_string()))?;
        if initialized {
            return Ok(());
        }
        let members: BTreeMap<NodeId, BasicNode> = voters
            .iter()
            .filter_map(|id| {
                let addr = self.spec.nodes.get(id)?;
                Some((*id, BasicNode::new(addr.to_string())))
            })
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

    /// What the metadata says of a partition of a topic created at run time that this node
    /// does not hold: its replicas and last published leader.
    fn placed_view(&self, topic: &str, partition: i32) -> Option<PartitionView> {
        let table = self.table.borrow();
        let placement = table.topics.get(topic)?;
        let index = usize::try_from(partition).ok()?;
        let replicas = placement.replicas.get(index)?.clone();
        let leader = placement.leaders.get(index).copied().flatten();
        Some(PartitionView {
            leader: leader.map(|(_, node)| node),
            term: leader.map_or(0, |(term, _)| term),
            leader_heard: true,
            in_sync: replicas.clone(),
            replicas,
        })
    }

    /// What this node knows about a partition's replicas.
    pub fn view(&self, topic: &str, partition: i32) -> Option<PartitionView> {
        let Some(part) = self.partition(topic, partition) else {
            return self.placed_view(topic, partition);
        };
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
        let Some(part) = self.partition(topic, partition) else {
            return Err(match self.placed_view(topic, partition) {
                Some(view) => ProposeError::NotLeader {
                    leader: view.leader,
                },
                None => ProposeError::UnknownPartition {
                    topic: topic.to_owned(),
                    partition,
                },
            });
        };
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
        let metadata = self
            .metadata
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        let internal: Vec<Arc<LogEngine>> = offsets
            .iter()
            .chain(&metadata)
            .map(|(_, engine)| engine.clone())
            .collect();
        let internal_parts = offsets.into_iter().chain(metadata).map(|(part, _)| part);
        for part in parts.into_iter().chain(internal_parts) {
            self.groups.remove(part.group);
            if let Err(e) = part.raft.shutdown().await {
                tracing::warn!(group = part.group, error = %e, "raft group did not stop cleanly");
            }
        }
        for engine in internal {
            if let Err(e) = engine.close().await {
                tracing::warn!(error = %e, "an internal partition's log did not close cleanly");
            }
        }
    }
}

/// Where a group's voters come from.
enum Placement {
    /// A configured topic or an internal one: every node; the lowest id starts a new group.
    Configured,
    /// A topic created at run time ([`crate::metadata`]).
    Runtime {
        /// The topic's incarnation.
        incarnation: u64,
        /// The partition's replicas when the group is opened from the metadata (each may start
        /// it); `None` when reopened at start-up (it exists already).
        voters: Option<Vec<NodeId>>,
    },
}

/// The answer to a metadata request this node cannot carry out because it does not lead.
fn not_leader(error: ProposeError) -> Answer {
    match error {
        ProposeError::NotLeader { leader } => Answer::NotLeader { leader },
        other => Answer::Refused(AdminError::Unavailable(other.to_string())),
    }
}

/// Publishes, through the metadata, each term in which this node leads a partition of a topic
/// created at run time (nodes that do not hold the partition name that leader to clients).
/// Ends with the group or the node.
async fn publish_leadership(
    node: Weak<ReplicaNode>,
    raft: RaftNode,
    topic: String,
    partition: i32,
    incarnation: u64,
) {
    let mut metrics = raft.metrics();
    let mut published: Option<Term> = None;
    loop {
        let m = metrics.borrow_watched().clone();
        if m.state == ServerState::Leader
            && applied_in_term(&m)
            && published != Some(m.current_term)
        {
            let Some(node) = node.upgrade() else { return };
            let request = Request::Leader(Leadership {
                topic: topic.clone(),
                partition,
                incarnation,
                term: m.current_term,
                node: node.spec.node_id,
            });
            match node.submit(request).await {
                Ok(()) => published = Some(m.current_term),
                Err(e) => {
                    tracing::debug!(topic, partition, error = %e, "leadership not published yet");
                    // Try again at the next change, or after a while.
                    let _ = tokio::time::timeout(Duration::from_secs(1), metrics.changed()).await;
                    continue;
                }
            }
        }
        if metrics.changed().await.is_err() {
            return;
        }
    }
}

/// How long retention waits for a group to build the snapshot it asked for.
const SNAPSHOT_WAIT: Duration = Duration::from_secs(10);

/// Applies the retention of every replicated data partition this node holds, every
/// `retention_check_interval_ms` of its engine, until the node stops ([`purge_expired`]). The
/// internal partitions (offsets, metadata) are never cut: they hold state, not data.
async fn retention_loop(node: std::sync::Weak<ReplicaNode>) {
    let interval = match node.upgrade() {
        Some(node) => {
            Duration::from_millis(node.engine.config().retention_check_interval_ms.max(1))
        }
        None => return,
    };
    loop {
        tokio::time::sleep(interval).await;
        let Some(live) = node.upgrade() else { return };
        if live.server.lock().await.is_none() {
            return;
        }
        let parts: Vec<Arc<ReplicatedPartition>> = live
            .partitions
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .cloned()
            .collect();
        drop(live);
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
        for part in parts {
            if let Err(e) = purge_expired(&part, now_ms).await {
                tracing::warn!(error = %e, "retention did not cut the log");
            }
        }
    }
}

/// Cuts `part`'s log where its retention lets go ([`ReplicaLog::retention_point`]) through
/// its Raft group: a snapshot (it holds no data, only where the log is cut) covering that
/// point, then a purge up to it, which deletes the segments. Each node cuts its own log on
/// its own segments' times and sizes; a follower that then needs an entry the leader no
/// longer has gets the snapshot and starts after the cut, as a Kafka follower starts at its
/// leader's log start. Returns the index purged up to, if any.
pub async fn purge_expired(
    part: &ReplicatedPartition,
    now_ms: i64,
) -> Result<Option<u64>, ReplicationError> {
    let Some(upto) = part.log.retention_point(now_ms) else {
        return Ok(None);
    };
    let failed = |reason: String| ReplicationError::Retention {
        topic: part.log.topic().to_owned(),
        partition: part.log.partition_id(),
        reason,
    };
    let covered = move |m: &openraft::RaftMetrics<crate::types::TypeConfig>| {
        m.snapshot.is_some_and(|s| s.index >= upto)
    };
    if !covered(&part.raft.metrics().borrow_watched()) {
        part.raft
            .trigger()
            .snapshot()
            .await
            .map_err(|e| failed(e.to_string()))?;
        part.raft
            .wait(Some(SNAPSHOT_WAIT))
            .metrics(covered, "a snapshot covering the retention point")
            .await
            .map_err(|e| failed(e.to_string()))?;
    }
    part.raft
        .trigger()
        .purge_log(upto)
        .await
        .map_err(|e| failed(e.to_string()))?;
    Ok(Some(upto))
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
///
/// A batch ahead of the producer's next sequence is refused as [`ProposeError::NotLeader`] (the
/// client sends it again), never as out of order: the batch before it is on its way again, most
/// often because this node itself just refused it. Raft refuses a leader's writes once its lease
/// lapses (no quorum heard within the election timeout) while the node still leads in its term,
/// so a refused batch and the one pipelined behind it meet the same leader a moment apart.
/// Told OUT_OF_ORDER_SEQUENCE_NUMBER for the second, librdkafka bumps its epoch and sends again,
/// under the new epoch, every batch of every partition whose outcome it could not tell, and a
/// stored one among them is stored twice (seen in the fault suite after a leader was killed).
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
        let checked = match checked {
            Err(LogError::OutOfOrderSequence {
                sequence, expected, ..
            }) if sequence_ahead(sequence, expected) => {
                return Err(ProposeError::NotLeader {
                    leader: part.raft.metrics().borrow_watched().current_leader,
                });
            }
            checked => checked?,
        };
        if let Some((base_offset, next_offset)) = checked {
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

/// Whether an idempotent producer's batch at `sequence` comes after `expected`, the sequence
/// its partition waits for (sequences wrap from `i32::MAX` to 0): a gap, not a batch from
/// before the ones remembered.
fn sequence_ahead(sequence: i32, expected: i32) -> bool {
    const WRAP: i64 = 1 << 31;
    let distance = (i64::from(sequence) - i64::from(expected)).rem_euclid(WRAP);
    distance != 0 && distance < WRAP / 2
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

#[cfg(test)]
mod tests {
    use super::sequence_ahead;

    #[test]
    fn a_sequence_past_the_expected_one_is_ahead_one_before_it_is_not() {
        assert!(sequence_ahead(5, 3));
        assert!(
            sequence_ahead(1, 0),
            "a new epoch's second batch before its first"
        );
        assert!(!sequence_ahead(3, 3));
        assert!(
            !sequence_ahead(2, 9),
            "a retry from before the batches remembered"
        );
        // Across the wrap from i32::MAX to 0.
        assert!(sequence_ahead(1, i32::MAX - 1));
        assert!(!sequence_ahead(i32::MAX - 1, 1));
    }
}
