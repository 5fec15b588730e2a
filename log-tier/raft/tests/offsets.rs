//! The offsets partition of a one-node cluster, through `ReplicaNode`: committed offsets reach
//! the node's offsets store before the commit resolves; the partition is out of reach of the
//! data path; and a node restarted over an empty offsets store gets every offset back by
//! applying the partition's log again.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use headwater_log::{FlushMode, FlushPolicy, LogConfig, LogEngine};
use headwater_raft::{
    ClusterSpec, OFFSETS_TOPIC, OffsetsView, ProposeError, ReplicaNode, ReplicationError,
    TransportConfig,
};
use tokio::net::TcpListener;

const WAIT: Duration = Duration::from_secs(30);

/// A one-node cluster whose engine lives in `engine_dir` and whose Raft state and offsets
/// partition live in `dir`.
async fn start(dir: &Path, engine_dir: &Path) -> (Arc<ReplicaNode>, Arc<LogEngine>) {
    let config = LogConfig {
        flush: FlushPolicy {
            mode: FlushMode::EveryAppend,
            ..FlushPolicy::default()
        },
        ..LogConfig::default()
    };
    let engine = LogEngine::open(engine_dir, config).unwrap();
    engine.create_topic_now("t", 2).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let spec = ClusterSpec {
        cluster_id: "offsets-test".to_owned(),
        node_id: 1,
        nodes: BTreeMap::from([(1, listener.local_addr().unwrap().to_string())]),
        election_timeout_ms: headwater_raft::DEFAULT_ELECTION_TIMEOUT_MS,
    };
    let node = ReplicaNode::start(
        engine.clone(),
        spec,
        listener,
        TransportConfig::default(),
        &dir.join("raft"),
    )
    .unwrap();
    node.open_offsets(&dir.join("internal")).await.unwrap();
    (node, engine)
}

/// Waits (bounded) until the node leads the offsets partition with every offset applied.
async fn loaded(node: &ReplicaNode) {
    tokio::time::timeout(WAIT, async {
        while node.offsets_view()
            != (OffsetsView {
                leader: Some(1),
                loaded: true,
            })
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the node never led the offsets partition");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offsets_are_applied_before_the_commit_resolves_and_again_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (node, engine) = start(dir.path(), &dir.path().join("log")).await;
    loaded(&node).await;
    node.commit_offsets("g", &[("t", 0, 5), ("t", 1, 9)])
        .await
        .unwrap();
    assert_eq!(engine.committed_offset("g", "t", 0), Some(5));
    node.commit_offsets("g", &[("t", 0, 7)]).await.unwrap();
    node.commit_offsets("h", &[("t", 1, 1)]).await.unwrap();
    assert_eq!(engine.committed_offset("g", "t", 0), Some(7));

    // Out of reach of the data path.
    assert!(node.partition(OFFSETS_TOPIC, 0).is_none());
    assert!(node.view(OFFSETS_TOPIC, 0).is_none());
    let refused = node.append(OFFSETS_TOPIC, 0, Bytes::new()).await;
    assert!(
        matches!(refused, Err(ProposeError::UnknownPartition { .. })),
        "{refused:?}"
    );
    let refused = node.open_topic(OFFSETS_TOPIC, 1).await;
    assert!(
        matches!(refused, Err(ReplicationError::Log(_))),
        "{refused:?}"
    );

    node.shutdown().await;
    engine.close().await.unwrap();

    // The same Raft state and offsets log over an empty offsets store.
    let (node, engine) = start(dir.path(), &dir.path().join("fresh-log")).await;
    loaded(&node).await;
    assert_eq!(engine.committed_offset("g", "t", 0), Some(7));
    assert_eq!(engine.committed_offset("g", "t", 1), Some(9));
    assert_eq!(engine.committed_offset("h", "t", 1), Some(1));
    node.shutdown().await;
    engine.close().await.unwrap();
}
