//! Three `ReplicaNode`s of a cluster in one process, over the TCP transport on loopback (with
//! the transport settings a test gives: TLS or not): starting and stopping them, a leader they
//! agree on, appends through it, and what each has committed.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)] // each test uses a part

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use headwater_log::LogEngine;
use headwater_raft::net::TransportConfig;
use headwater_raft::{Applied, ClusterSpec, NodeId, ReplicaNode};
use tokio::net::TcpListener;

use super::{batch_of, data};

/// The cluster id of the test clusters.
pub(crate) const CLUSTER_ID: &str = "test-cluster";

pub(crate) const WAIT: Duration = Duration::from_secs(30);

pub(crate) struct Node {
    pub(crate) id: NodeId,
    pub(crate) engine: Arc<LogEngine>,
    pub(crate) node: Arc<ReplicaNode>,
}

pub(crate) fn dir_of(root: &Path, id: NodeId) -> PathBuf {
    root.join(format!("node-{id}"))
}

/// A loopback port per node id, below the ephemeral range (the node binds it at start and
/// after each restart; an ephemeral one could meanwhile become another connection's source
/// port): `host:port` with `host` as given (a name or an IP address).
pub(crate) fn addresses(host: &str) -> BTreeMap<NodeId, String> {
    (1..=3u64)
        .map(|id| {
            (
                id,
                format!("{host}:{}", headwater_testing::ports::free_port()),
            )
        })
        .collect()
}

/// Starts node `id` of the cluster `addrs` with plain TCP between nodes.
pub(crate) async fn start(root: &Path, id: NodeId, addrs: &BTreeMap<NodeId, String>) -> Node {
    start_with(root, id, addrs, TransportConfig::default()).await
}

/// Starts nodes 1, 2 and 3 of the cluster `addrs` at once, with plain TCP between them.
pub(crate) async fn start_three(root: &Path, addrs: &BTreeMap<NodeId, String>) -> [Node; 3] {
    let (n1, n2, n3) = tokio::join!(
        start(root, 1, addrs),
        start(root, 2, addrs),
        start(root, 3, addrs)
    );
    [n1, n2, n3]
}

/// Starts node `id` of the cluster `addrs` (its data under `root/node-{id}`), binding its own
/// address on loopback, with `transport`; opens topic `t` (one partition).
pub(crate) async fn start_with(
    root: &Path,
    id: NodeId,
    addrs: &BTreeMap<NodeId, String>,
    transport: TransportConfig,
) -> Node {
    start_configured(root, id, addrs, transport, super::log_config()).await
}

/// [`start_with`] with the log settings `config`.
pub(crate) async fn start_configured(
    root: &Path,
    id: NodeId,
    addrs: &BTreeMap<NodeId, String>,
    transport: TransportConfig,
    config: headwater_log::LogConfig,
) -> Node {
    trace_if_asked();
    let dir = dir_of(root, id);
    let engine = LogEngine::open(&dir.join("log"), config).unwrap();
    let port = addrs[&id].rsplit_once(':').unwrap().1;
    let listener = TcpListener::bind(format!("127.0.0.1:{port}"))
        .await
        .unwrap();
    let spec = ClusterSpec {
        cluster_id: CLUSTER_ID.to_owned(),
        node_id: id,
        nodes: addrs.clone(),
        election_timeout_ms: election_timeout_ms(),
    };
    let node =
        ReplicaNode::start(engine.clone(), spec, listener, transport, &dir.join("raft")).unwrap();
    node.open_topic("t", 1).await.unwrap();
    Node { id, engine, node }
}

/// Logs to the test's output when `RUST_LOG` is set (for diagnosing a failure).
pub(crate) fn trace_if_asked() {
    if std::env::var("RUST_LOG").is_ok() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
    }
}

/// The election timers of the test clusters: `HEADWATER_TEST_ELECTION_MS=min,max` for
/// experiments (tests/election_liveness.rs), the default otherwise.
pub(crate) fn election_timeout_ms() -> [u64; 2] {
    std::env::var("HEADWATER_TEST_ELECTION_MS")
        .ok()
        .and_then(|v| {
            let (min, max) = v.split_once(',')?;
            Some([min.trim().parse().ok()?, max.trim().parse().ok()?])
        })
        .unwrap_or(headwater_raft::DEFAULT_ELECTION_TIMEOUT_MS)
}

pub(crate) async fn stop(node: Node) {
    node.node.shutdown().await;
    node.engine.close().await.unwrap();
}

/// The leader all of `nodes` agree on, waited for (bounded).
pub(crate) async fn leader(nodes: &[&Node]) -> NodeId {
    tokio::time::timeout(WAIT, async {
        loop {
            let views: Vec<Option<NodeId>> = nodes
                .iter()
                .map(|n| n.node.view("t", 0).and_then(|v| v.leader))
                .collect();
            if let Some(Some(l)) = views.first()
                && views.iter().all(|v| *v == Some(*l))
                && nodes.iter().any(|n| n.id == *l)
            {
                return *l;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("no leader agreed on")
}

/// Appends `n` one-record batches `{tag}-{i}` through whichever of `nodes` leads, retrying
/// while leadership settles; returns the values in order.
pub(crate) async fn append(nodes: &[&Node], tag: &str, n: usize) -> Vec<String> {
    let mut values = Vec::new();
    for i in 0..n {
        let value = format!("{tag}-{i}");
        let batch = batch_of(std::slice::from_ref(&value)).0;
        tokio::time::timeout(WAIT, async {
            loop {
                let id = leader(nodes).await;
                let node = nodes.iter().find(|n| n.id == id).unwrap();
                match node.node.append("t", 0, batch.clone()).await {
                    Ok(Applied::Data { .. }) => return,
                    Ok(Applied::Internal) => panic!("a data batch applied as internal"),
                    Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                }
            }
        })
        .await
        .expect("the append never committed");
        values.push(value);
    }
    values
}

/// The values of the committed records in `node`'s log, in offset order.
pub(crate) fn committed_values(node: &Node) -> Vec<String> {
    let log = node.engine.replica("t", 0).unwrap();
    let committed = log.state().committed_offset;
    data(&log)
        .into_iter()
        .filter(|(_, _, _, next, _)| *next <= committed)
        .flat_map(|(_, _, _, _, bytes)| {
            headwater_log::batch::decode_records(&bytes)
                .unwrap()
                .into_iter()
                .map(|r| String::from_utf8(r.value.unwrap().to_vec()).unwrap())
        })
        .collect()
}

/// Waits (bounded) until every node's committed records are `expected` and `also` holds.
pub(crate) async fn holds(nodes: &[&Node], expected: &[String], also: impl Fn() -> bool) {
    let done = || nodes.iter().all(|n| committed_values(n) == expected) && also();
    let waited = tokio::time::timeout(WAIT, async {
        while !done() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    if waited.is_err() {
        let held: Vec<(NodeId, Vec<String>)> =
            nodes.iter().map(|n| (n.id, committed_values(n))).collect();
        panic!("expected every node to hold {expected:?}, they hold {held:?}");
    }
}
