//! Three Raft replicas of one partition in one process, each over its own `headwater-log` data
//! directory, connected by an in-process network that can cut a node off: elections, writes
//! with dense Kafka offsets, a leader lost and restarted, and an isolated leader's uncommitted
//! entries truncated when it rejoins. (The TCP transport and the fault proxy come with the
//! transport; this exercises the storage under openraft's real protocol.)
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails by panicking

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{assert_dense, batch_of, data, log_config, write};
use headwater_log::LogEngine;
use headwater_raft::types::typ;
use headwater_raft::{
    BoundarySnapshot, GroupStorage, NodeId, StateMachine, TypeConfig, raft_config,
};
use openraft::error::{RPCError, ReplicationClosed, StreamingError, Unreachable};
use openraft::network::{RPCOption, RaftNetworkFactory, v2::RaftNetworkV2};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, VoteRequest, VoteResponse,
};
use openraft::{BasicNode, Raft};

type Node = Raft<TypeConfig, StateMachine>;

const WAIT: Duration = Duration::from_secs(20);

/// The in-process network: which nodes run and which are cut off.
#[derive(Clone, Default)]
struct Router {
    nodes: Arc<Mutex<BTreeMap<NodeId, Node>>>,
    cut: Arc<Mutex<BTreeSet<NodeId>>>,
}

impl Router {
    fn target(&self, from: NodeId, to: NodeId) -> Result<Node, Unreachable<TypeConfig>> {
        let cut = self.cut.lock().unwrap();
        if cut.contains(&from) || cut.contains(&to) {
            return Err(Unreachable::new(&std::io::Error::other("link cut")));
        }
        self.nodes
            .lock()
            .unwrap()
            .get(&to)
            .cloned()
            .ok_or_else(|| Unreachable::new(&std::io::Error::other("node down")))
    }
}

struct Factory {
    router: Router,
    from: NodeId,
}

struct Link {
    router: Router,
    from: NodeId,
    to: NodeId,
}

impl RaftNetworkFactory<TypeConfig> for Factory {
    type Network = Link;

    async fn new_client(&mut self, target: NodeId, _node: &BasicNode) -> Link {
        Link {
            router: self.router.clone(),
            from: self.from,
            to: target,
        }
    }
}

fn unreachable<E: std::error::Error + 'static>(e: E) -> RPCError<TypeConfig> {
    RPCError::Unreachable(Unreachable::new(&e))
}

impl RaftNetworkV2<TypeConfig> for Link {
    type SnapshotData = BoundarySnapshot;

    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<AppendEntriesResponse<TypeConfig>, RPCError<TypeConfig>> {
        let node = self.router.target(self.from, self.to)?;
        node.append_entries(rpc).await.map_err(unreachable)
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        let node = self.router.target(self.from, self.to)?;
        node.vote(rpc).await.map_err(unreachable)
    }

    async fn pre_vote(
        &mut self,
        rpc: VoteRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        let node = self.router.target(self.from, self.to)?;
        node.pre_vote(rpc).await.map_err(unreachable)
    }

    async fn full_snapshot(
        &mut self,
        vote: typ::Vote,
        snapshot: typ::Snapshot,
        _cancel: impl std::future::Future<Output = ReplicationClosed> + Send + 'static,
        _option: RPCOption,
    ) -> Result<SnapshotResponse<TypeConfig>, StreamingError<TypeConfig>> {
        let node = self
            .router
            .target(self.from, self.to)
            .map_err(StreamingError::Unreachable)?;
        node.install_full_snapshot(vote, snapshot)
            .await
            .map_err(|e| StreamingError::Unreachable(Unreachable::new(&e)))
    }
}

/// One replica: its data directory, engine and Raft node.
struct Replica {
    id: NodeId,
    dir: PathBuf,
    engine: Arc<LogEngine>,
    raft: Node,
}

impl Replica {
    fn log(&self) -> headwater_log::ReplicaLog {
        self.engine.replica("t", 0).unwrap()
    }
}

async fn start(router: &Router, id: NodeId, dir: &Path) -> Replica {
    let engine = LogEngine::open(&dir.join("log"), log_config()).unwrap();
    engine.create_replicated_topic("t", 1, None).await.unwrap();
    let storage =
        GroupStorage::open(engine.replica("t", 0).unwrap(), &dir.join("raft/t-0")).unwrap();
    let raft = Raft::new(
        id,
        raft_config("test").unwrap(),
        Factory {
            router: router.clone(),
            from: id,
        },
        storage.log,
        storage.state_machine,
    )
    .await
    .unwrap();
    router.nodes.lock().unwrap().insert(id, raft.clone());
    Replica {
        id,
        dir: dir.to_path_buf(),
        engine,
        raft,
    }
}

async fn stop(router: &Router, replica: Replica) -> PathBuf {
    router.nodes.lock().unwrap().remove(&replica.id);
    replica.raft.shutdown().await.unwrap();
    replica.engine.close().await.unwrap();
    replica.dir
}

async fn leader_of(replicas: &[&Replica]) -> NodeId {
    let m = replicas[0]
        .raft
        .wait(Some(WAIT))
        .metrics(
            |m| {
                m.current_leader
                    .is_some_and(|l| replicas.iter().any(|r| r.id == l))
            },
            "a leader",
        )
        .await
        .unwrap();
    let leader = m.current_leader.unwrap();
    // Writes need the leader's lease: a quorum acknowledged it recently.
    let node = replicas.iter().find(|r| r.id == leader).unwrap();
    node.raft
        .wait(Some(WAIT))
        .leader_with_quorum_acked(None, "leader lease")
        .await
        .unwrap();
    leader
}

/// Waits until every replica applied the leader's whole log. The last index is read from the
/// leader's log itself: its metrics are published after the apply, so right after a write
/// they may still name the entry before it.
async fn caught_up(replicas: &[&Replica], leader: &Replica) {
    let last = leader.log().state().last.map(|l| l.index);
    for r in replicas {
        r.raft
            .wait(Some(WAIT))
            .applied_index_at_least(last, "caught up")
            .await
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_elect_replicate_fail_over_and_rejoin() {
    let root = tempfile::tempdir().unwrap();
    let router = Router::default();
    let mut replicas = Vec::new();
    for id in 1..=3u64 {
        replicas.push(start(&router, id, &root.path().join(format!("n{id}"))).await);
    }
    let members: BTreeMap<NodeId, BasicNode> =
        (1..=3).map(|id| (id, BasicNode::default())).collect();
    replicas[0].raft.initialize(members).await.unwrap();

    // Writes through the first leader get dense offsets from 0, the same bytes on every node.
    let all: Vec<&Replica> = replicas.iter().collect();
    let leader_id = leader_of(&all).await;
    let leader = replicas.iter().find(|r| r.id == leader_id).unwrap();
    let first = write(&leader.raft, "a", 20).await;
    assert_dense(&first, 0);
    caught_up(&all, leader).await;
    let expected = data(&leader.log());
    assert_eq!(expected.len(), 20);
    for r in &replicas {
        assert_eq!(
            data(&r.log()),
            expected,
            "node {} holds the leader's batches",
            r.id
        );
    }
    let term = expected[0].1;
    assert!(
        expected.iter().all(|d| {
            let epoch = i32::from_be_bytes(d.4[12..16].try_into().unwrap());
            epoch as u64 == term
        }),
        "every batch carries its term as partitionLeaderEpoch"
    );

    // The leader stops: the other two elect one of them and go on at the next offset.
    let pos = replicas.iter().position(|r| r.id == leader_id).unwrap();
    let old = replicas.remove(pos);
    let old_id = old.id;
    let old_dir = stop(&router, old).await;
    let rest: Vec<&Replica> = replicas.iter().collect();
    let new_leader_id = leader_of(&rest).await;
    assert_ne!(new_leader_id, leader_id);
    let new_leader = replicas.iter().find(|r| r.id == new_leader_id).unwrap();
    let second = write(&new_leader.raft, "b", 10).await;
    assert_dense(&second, 60);

    // The old leader restarts from its disk and catches up.
    let back = start(&router, old_id, &old_dir).await;
    replicas.push(back);
    let all: Vec<&Replica> = replicas.iter().collect();
    let new_leader = replicas.iter().find(|r| r.id == new_leader_id).unwrap();
    caught_up(&all, new_leader).await;
    let expected = data(&new_leader.log());
    assert_eq!(expected.len(), 30);
    for r in &replicas {
        assert_eq!(data(&r.log()), expected, "node {} after the restart", r.id);
    }
    for r in replicas {
        stop(&router, r).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_isolated_leader_s_uncommitted_entries_are_replaced_when_it_rejoins() {
    let root = tempfile::tempdir().unwrap();
    let router = Router::default();
    let mut replicas = Vec::new();
    for id in 1..=3u64 {
        replicas.push(start(&router, id, &root.path().join(format!("n{id}"))).await);
    }
    let members: BTreeMap<NodeId, BasicNode> =
        (1..=3).map(|id| (id, BasicNode::default())).collect();
    replicas[0].raft.initialize(members).await.unwrap();
    let all: Vec<&Replica> = replicas.iter().collect();
    let leader_id = leader_of(&all).await;
    let leader = replicas.iter().find(|r| r.id == leader_id).unwrap();
    assert_dense(&write(&leader.raft, "a", 5).await, 0);
    caught_up(&all, leader).await;

    // Cut the leader off; it accepts writes it can never commit.
    router.cut.lock().unwrap().insert(leader_id);
    for i in 0..4 {
        leader
            .raft
            .client_write_ff(batch_of(&[format!("lost-{i}")]), None)
            .await
            .unwrap();
    }
    leader
        .raft
        .wait(Some(WAIT))
        .metrics(
            |m| m.last_log_index >= Some(m.local_committed.map_or(0, |c| c.index) + 4),
            "uncommitted entries written",
        )
        .await
        .unwrap();

    // The majority elects a new leader and commits other batches at the same offsets.
    let rest: Vec<&Replica> = replicas.iter().filter(|r| r.id != leader_id).collect();
    let new_leader_id = leader_of(&rest).await;
    let new_leader = replicas.iter().find(|r| r.id == new_leader_id).unwrap();
    assert_dense(&write(&new_leader.raft, "b", 5).await, 15);

    // Healed: the old leader's four batches are truncated and replaced by the majority's.
    router.cut.lock().unwrap().clear();
    caught_up(&all, new_leader).await;
    let expected = data(&new_leader.log());
    assert_eq!(expected.len(), 10);
    for r in &replicas {
        let got = data(&r.log());
        assert_eq!(
            got, expected,
            "node {} holds exactly the committed batches",
            r.id
        );
        assert!(!got.iter().any(|d| d.4.windows(4).any(|w| w == b"lost")));
    }
    for r in replicas {
        stop(&router, r).await;
    }
}
