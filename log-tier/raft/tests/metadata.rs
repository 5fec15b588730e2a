//! Topics created at run time through the metadata partition: three `ReplicaNode`s over TCP on
//! loopback; a creation asked of any node (forwarded to the metadata leader) is placed,
//! replicated and opened on the nodes that hold it; refusals name the reason; nodes that do not
//! hold a partition name its leader; a deletion drops every copy, also one on a node that was
//! down when it happened; a new topic of the same name starts empty.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails by panicking

mod common;

use std::time::Duration;

use common::batch_of;
use common::nodes::{Node, WAIT, addresses, dir_of, start, start_three, stop};
use headwater_raft::{AdminError, Applied, ProposeError};

async fn open_metadata(root: &std::path::Path, node: &Node) {
    node.node
        .open_metadata(&dir_of(root, node.id).join("metadata-log"))
        .await
        .unwrap();
}

/// Nodes 1, 2 and 3, each with its metadata partition open.
async fn start_with_metadata(
    root: &std::path::Path,
    addrs: &std::collections::BTreeMap<u64, String>,
) -> [Node; 3] {
    let nodes = start_three(root, addrs).await;
    for node in &nodes {
        open_metadata(root, node).await;
    }
    nodes
}

/// Polls `check` until it holds (bounded by [`WAIT`]).
async fn eventually(what: &str, check: impl Fn() -> bool) {
    let reached = tokio::time::timeout(WAIT, async {
        while !check() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(reached.is_ok(), "never: {what}");
}

/// Whether `node` has opened every partition of `topic` it is a replica of and knows a leader
/// for each.
fn opened(node: &Node, topic: &str) -> bool {
    let topics = node.node.runtime_topics();
    let Some(placement) = topics.get(topic) else {
        return false;
    };
    (0..placement.partitions()).all(|p| {
        let holds = placement.replicas[p as usize].contains(&node.id);
        (!holds || node.node.partition(topic, p).is_some())
            && node.node.view(topic, p).is_some_and(|v| v.leader.is_some())
    })
}

/// Appends one batch to `topic`/`partition` through whichever node leads it.
async fn append(nodes: &[&Node], topic: &str, partition: i32, value: &str) -> i64 {
    let batch = batch_of(&[value.to_owned()]).0;
    tokio::time::timeout(WAIT, async {
        loop {
            for node in nodes {
                if let Ok(Applied::Data { base_offset, .. }) =
                    node.node.append(topic, partition, batch.clone()).await
                {
                    return base_offset;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the append never committed")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topics_created_at_run_time_are_placed_replicated_refused_and_deleted() {
    let root = tempfile::tempdir().unwrap();
    let addrs = addresses("127.0.0.1");
    let [n1, n2, n3] = start_with_metadata(root.path(), &addrs).await;
    let nodes = [&n1, &n2, &n3];

    n2.node.create_topic("orders", 3, None).await.unwrap();
    for node in nodes {
        // CreateTopics answers once every node has applied the creation.
        assert!(node.node.runtime_topics().contains_key("orders"));
    }
    for node in nodes {
        eventually("every node opens orders", || opened(node, "orders")).await;
    }
    let placement = n1.node.runtime_topics()["orders"].clone();
    assert_eq!(placement.partitions(), 3);
    let preferred: std::collections::BTreeSet<u64> =
        placement.replicas.iter().map(|r| r[0]).collect();
    assert_eq!(
        preferred.len(),
        3,
        "each partition prefers another node: {placement:?}"
    );
    assert!(placement.replicas.iter().all(|r| r.len() == 3));

    // Refusals, from any node.
    let refused = |r: Result<(), AdminError>| r.unwrap_err();
    assert!(matches!(
        refused(n3.node.create_topic("orders", 1, None).await),
        AdminError::TopicExists(_)
    ));
    assert!(matches!(
        refused(n1.node.create_topic("t", 1, None).await),
        AdminError::TopicExists(_)
    ));
    assert!(matches!(
        refused(n2.node.create_topic("wide", 1, Some(4)).await),
        AdminError::InvalidReplicationFactor(_)
    ));
    assert!(matches!(
        refused(n2.node.create_topic("none", 0, None).await),
        AdminError::InvalidPartitions(_)
    ));
    assert!(matches!(
        refused(n3.node.create_topic("__mine", 1, None).await),
        AdminError::InvalidTopic(_)
    ));
    assert!(matches!(
        refused(n3.node.delete_topic("t").await),
        AdminError::Policy(_)
    ));
    assert!(matches!(
        refused(n1.node.delete_topic("nothing").await),
        AdminError::UnknownTopic(_)
    ));

    // A peer's malformed request is refused with the reason; nothing changes.
    let peer = headwater_raft::Peers::new(
        common::nodes::CLUSTER_ID,
        3,
        headwater_raft::TransportConfig::default(),
    );
    for (&id, addr) in &addrs {
        peer.set_addr(id, addr);
    }
    let group = headwater_raft::group_id(headwater_raft::METADATA_TOPIC, 0);
    // Topics and their placement (leaders may move meanwhile).
    let placed = |node: &Node| -> Vec<(String, u64, Vec<Vec<u64>>)> {
        node.node
            .runtime_topics()
            .into_iter()
            .map(|(name, p)| (name, p.incarnation, p.replicas))
            .collect()
    };
    let before = placed(&n1);
    for id in [1, 2] {
        let answer = peer
            .forward(
                id,
                group,
                bytes::Bytes::from_static(b"{\"create_topic\": 7}"),
                WAIT,
            )
            .await
            .unwrap();
        let answer = String::from_utf8_lossy(&answer).into_owned();
        assert!(answer.contains("malformed metadata request"), "{answer}");
    }
    assert_eq!(placed(&n1), before);

    // Replicated: a batch committed through the leader reaches every node's log.
    assert_eq!(append(&nodes, "orders", 1, "first").await, 0);
    for node in nodes {
        eventually("the batch is committed everywhere", || {
            node.engine
                .replica("orders", 1)
                .is_ok_and(|log| log.state().committed_offset == 1)
        })
        .await;
    }

    // Node 3 is down while orders is deleted; it drops its copy when it comes back.
    let dir3 = dir_of(root.path(), 3);
    stop(n3).await;
    n1.node.delete_topic("orders").await.unwrap();
    for node in [&n1, &n2] {
        // DeleteTopics answers once every node that is up has applied the deletion.
        assert!(!node.node.runtime_topics().contains_key("orders"));
    }
    for node in [&n1, &n2] {
        eventually("orders is dropped", || {
            node.engine.partition_count("orders").is_none()
                && node.node.partition("orders", 0).is_none()
        })
        .await;
    }
    assert!(matches!(
        refused(n2.node.delete_topic("orders").await),
        AdminError::UnknownTopic(_)
    ));
    let n3 = start(root.path(), 3, &addrs).await;
    assert!(
        n3.engine.partition_count("orders").is_some(),
        "node 3 kept its copy while down"
    );
    open_metadata(root.path(), &n3).await;
    eventually("node 3 drops its stale copy", || {
        n3.engine.partition_count("orders").is_none() && n3.node.partition("orders", 1).is_none()
    })
    .await;
    assert!(
        !dir3.join("raft").join("orders-1").exists(),
        "the Raft state goes before the log"
    );

    // The same name again is another topic: other groups, an empty log.
    n3.node.create_topic("orders", 1, Some(3)).await.unwrap();
    let nodes = [&n1, &n2, &n3];
    for node in nodes {
        eventually("every node opens the new orders", || opened(node, "orders")).await;
    }
    assert_eq!(append(&nodes, "orders", 0, "again").await, 0);
    for node in [n1, n2, n3] {
        stop(node).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_without_a_replica_name_the_leader_the_metadata_publishes() {
    let root = tempfile::tempdir().unwrap();
    let addrs = addresses("127.0.0.1");
    let [n1, n2, n3] = start_with_metadata(root.path(), &addrs).await;
    let nodes = [&n1, &n2, &n3];
    n1.node.create_topic("solo", 3, Some(1)).await.unwrap();
    for node in nodes {
        eventually("every node knows each partition's leader", || {
            opened(node, "solo")
        })
        .await;
    }
    let placement = n2.node.runtime_topics()["solo"].clone();
    for (p, replicas) in placement.replicas.iter().enumerate() {
        let p = p as i32;
        assert_eq!(replicas.len(), 1);
        let holder = replicas[0];
        for node in nodes {
            assert_eq!(
                node.engine.partition_count("solo").is_some(),
                placement.holds(node.id)
            );
            let view = node.node.view("solo", p).unwrap();
            assert_eq!(view.leader, Some(holder), "node {} on solo/{p}", node.id);
            assert_eq!(view.replicas, vec![holder]);
            if node.id != holder {
                let refused = node
                    .node
                    .append("solo", p, batch_of(&["x".to_owned()]).0)
                    .await
                    .unwrap_err();
                assert!(
                    matches!(refused, ProposeError::NotLeader { leader: Some(l) } if l == holder),
                    "{refused:?}"
                );
            }
        }
    }
    for node in [n1, n2, n3] {
        stop(node).await;
    }
}
