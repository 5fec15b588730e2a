//! Three log nodes over the TCP transport, each with its own `headwater-log` engine and two Raft
//! groups (the two partitions of one replicated topic) sharing the node's connections; every
//! directed link goes through a `FaultProxy`. Elections, writes with dense Kafka offsets and the
//! same bytes everywhere, hostile bytes on a server port, then the leader cut off (and later
//! another blackholed): the other two elect a leader and go on, and after healing the cut-off
//! node catches up.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::assert_dense;
use headwater_log::LogEngine;
use headwater_raft::net::frame::FrameReader;
use headwater_raft::net::{DEFAULT_MAX_FRAME_BYTES, GroupId, Kind, RaftNode};
use headwater_raft::{
    GroupStorage, Groups, NodeId, Peers, RaftServer, TransportConfig, raft_config,
};
use headwater_testing::{Fault, FaultProxy};
use openraft::{BasicNode, Raft};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};

const WAIT: Duration = Duration::from_secs(30);
const GROUPS: [GroupId; 2] = [0, 1];

/// One log node: its engine, its two groups, its server and its view of the peers.
struct Node {
    id: NodeId,
    engine: Arc<LogEngine>,
    peers: Peers,
    server: RaftServer,
    rafts: BTreeMap<GroupId, RaftNode>,
}

async fn start(id: NodeId, dir: &Path) -> Node {
    let engine = LogEngine::open(&dir.join("log"), common::log_config()).unwrap();
    engine.create_replicated_topic("t", 2, None).await.unwrap();
    let peers = Peers::new("transport-test", id, TransportConfig::default());
    let groups = Groups::default();
    let mut rafts = BTreeMap::new();
    for group in GROUPS {
        let partition = i32::try_from(group).unwrap();
        let storage = GroupStorage::open(
            engine.replica("t", partition).unwrap(),
            &dir.join(format!("raft/t-{partition}")),
        )
        .unwrap();
        let raft = Raft::new(
            id,
            raft_config("transport-test").unwrap(),
            peers.factory(group),
            storage.log,
            storage.state_machine,
        )
        .await
        .unwrap();
        groups.insert(group, raft.clone());
        rafts.insert(group, raft);
    }
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let server = RaftServer::spawn(listener, peers.clone(), groups).unwrap();
    Node {
        id,
        engine,
        peers,
        server,
        rafts,
    }
}

async fn stop(node: Node) {
    for raft in node.rafts.values() {
        raft.shutdown().await.unwrap();
    }
    node.server.shutdown().await;
    node.engine.close().await.unwrap();
}

/// A proxy on every directed link `(from, to)`: `from` dials `to` through it.
async fn link(nodes: &[Node]) -> BTreeMap<(NodeId, NodeId), FaultProxy> {
    let mut proxies = BTreeMap::new();
    for from in nodes {
        for to in nodes {
            if from.id != to.id {
                let proxy = FaultProxy::start(to.server.local_addr()).await.unwrap();
                from.peers.set_addr(to.id, proxy.addr());
                proxies.insert((from.id, to.id), proxy);
            }
        }
    }
    proxies
}

fn set_links_of(proxies: &BTreeMap<(NodeId, NodeId), FaultProxy>, node: NodeId, fault: Fault) {
    for ((from, to), proxy) in proxies {
        if *from == node || *to == node {
            proxy.set(fault);
        }
    }
}

/// The leader of `group` among `nodes`, once it holds its lease (a quorum acknowledged it).
async fn leader_of(nodes: &[&Node], group: GroupId) -> NodeId {
    let m = nodes[0].rafts[&group]
        .wait(Some(WAIT))
        .metrics(
            |m| {
                m.current_leader
                    .is_some_and(|l| nodes.iter().any(|n| n.id == l))
            },
            "a leader",
        )
        .await
        .unwrap();
    let leader = m.current_leader.unwrap();
    let node = nodes.iter().find(|n| n.id == leader).unwrap();
    node.rafts[&group]
        .wait(Some(WAIT))
        .leader_with_quorum_acked(None, "leader lease")
        .await
        .unwrap();
    leader
}

/// Writes `n` batches of 3 records to `group` through `leader`; returns the offsets each got.
async fn write(leader: &Node, group: GroupId, tag: &str, n: usize) -> Vec<(i64, i64)> {
    common::write(&leader.rafts[&group], &format!("{tag}-{group}"), n).await
}

/// The data batches of a node's partition `group`: identical everywhere.
fn data(node: &Node, group: GroupId) -> Vec<(u64, u64, i64, i64, Bytes)> {
    let log = node
        .engine
        .replica("t", i32::try_from(group).unwrap())
        .unwrap();
    common::data(&log)
}

/// Waits until every node applied the leader's whole log of `group`. The last index is read
/// from the leader's log itself: its metrics are published after the apply, so right after a
/// write they may still name the entry before it.
async fn caught_up(nodes: &[&Node], leader: &Node, group: GroupId) {
    let log = leader
        .engine
        .replica("t", i32::try_from(group).unwrap())
        .unwrap();
    let last = log.state().last.map(|l| l.index);
    for n in nodes {
        n.rafts[&group]
            .wait(Some(WAIT))
            .applied_index_at_least(last, "caught up")
            .await
            .unwrap();
    }
}

/// Every node holds the leader's batches of every group, `batches` of them.
async fn assert_replicated(nodes: &[&Node], leaders: &BTreeMap<GroupId, NodeId>, batches: usize) {
    for (group, leader) in leaders {
        let leader = nodes.iter().find(|n| n.id == *leader).unwrap();
        caught_up(nodes, leader, *group).await;
        let expected = data(leader, *group);
        assert_eq!(expected.len(), batches, "group {group}");
        for n in nodes {
            assert_eq!(data(n, *group), expected, "node {} group {group}", n.id);
        }
    }
}

/// Elects (or finds) the leader of each group among `nodes`, writes `n` batches to each, checks
/// they got the offsets after `from`.
async fn write_all(nodes: &[&Node], tag: &str, n: usize, from: i64) -> BTreeMap<GroupId, NodeId> {
    let mut leaders = BTreeMap::new();
    for group in GROUPS {
        let leader_id = leader_of(nodes, group).await;
        let leader = nodes.iter().find(|n| n.id == leader_id).unwrap();
        assert_dense(&write(leader, group, tag, n).await, from);
        leaders.insert(group, leader_id);
    }
    leaders
}

/// Hostile bytes on a node's server port get an Error frame or a closed connection.
async fn hostile(addr: SocketAddr, bytes: &[u8]) {
    let (read, mut write) = TcpStream::connect(addr).await.unwrap().into_split();
    write.write_all(bytes).await.unwrap();
    let mut reader = FrameReader::new(read, DEFAULT_MAX_FRAME_BYTES);
    let answer = tokio::time::timeout(WAIT, reader.next())
        .await
        .expect("an answer or a close");
    if let Ok(Some(frame)) = answer {
        assert_eq!(frame.kind, Kind::Error, "{frame:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_groups_over_tcp_elect_replicate_survive_a_cut_and_a_blackhole_and_catch_up() {
    let root = tempfile::tempdir().unwrap();
    let mut nodes = Vec::new();
    for id in 1..=3u64 {
        nodes.push(start(id, &root.path().join(format!("n{id}"))).await);
    }
    let proxies = link(&nodes).await;
    let members: BTreeMap<NodeId, BasicNode> =
        (1..=3).map(|id| (id, BasicNode::default())).collect();
    for group in GROUPS {
        nodes[0].rafts[&group]
            .initialize(members.clone())
            .await
            .unwrap();
    }
    let all: Vec<&Node> = nodes.iter().collect();

    // Both groups elect and replicate; every directed link carried both on one connection.
    let leaders = write_all(&all, "a", 10, 0).await;
    assert_replicated(&all, &leaders, 10).await;
    for ((from, to), proxy) in &proxies {
        // Leaders dial their followers; a node that only ran for election may have dialled too.
        let accepted = proxy.accepted();
        assert!(
            accepted <= 1,
            "one connection {from} -> {to} for both groups: {accepted}"
        );
        if leaders.values().any(|l| l == from) {
            assert_eq!(accepted, 1, "the leader {from} dialled {to}");
        }
    }

    // Hostile bytes on every server port; the cluster keeps working below.
    for node in &nodes {
        let addr = node.server.local_addr();
        hostile(addr, &[0xff; 64]).await;
        hostile(addr, &[0, 0, 0, 1, 7]).await;
        let mut unknown_kind = Vec::new();
        unknown_kind.extend_from_slice(&(17u32 + 2).to_be_bytes());
        unknown_kind.push(200);
        unknown_kind.extend_from_slice(&[0u8; 18]);
        hostile(addr, &unknown_kind).await;
    }

    // The leader of group 0 is cut off: the other two elect among themselves and go on.
    let cut = leaders[&0];
    set_links_of(&proxies, cut, Fault::Cut);
    let rest: Vec<&Node> = nodes.iter().filter(|n| n.id != cut).collect();
    let leaders = write_all(&rest, "b", 5, 30).await;
    assert_ne!(leaders[&0], cut);

    // Healed: the cut-off node catches up with both groups.
    set_links_of(&proxies, cut, Fault::Pass);
    assert_replicated(&all, &leaders, 15).await;

    // The leader of group 0 is blackholed (connections stay, bytes vanish): same again.
    let dark = leaders[&0];
    set_links_of(&proxies, dark, Fault::Blackhole);
    let rest: Vec<&Node> = nodes.iter().filter(|n| n.id != dark).collect();
    let leaders = write_all(&rest, "c", 5, 45).await;
    assert_ne!(leaders[&0], dark);
    set_links_of(&proxies, dark, Fault::Pass);
    assert_replicated(&all, &leaders, 20).await;

    drop(proxies);
    for node in nodes {
        stop(node).await;
    }
}
