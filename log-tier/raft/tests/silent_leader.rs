//! A follower tells whether it still hears its leader (`PartitionView::leader_heard`, which
//! decides whether Kafka Metadata names the leader): three `ReplicaNode`s over TCP on loopback;
//! while the leader runs, every follower hears it; once it stops, the followers still hold it
//! as Raft's leader until an election ends, but no longer as heard; then a new leader is heard.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails by panicking

mod common;

use std::time::Duration;

use common::nodes::{Node, WAIT, addresses, leader, start_three, stop};

/// Polls `check` on `node`'s view of t/0 until it holds (bounded by [`WAIT`]).
async fn until(node: &Node, what: &str, check: impl Fn(&headwater_raft::PartitionView) -> bool) {
    let reached = tokio::time::timeout(WAIT, async {
        loop {
            if node.node.view("t", 0).is_some_and(|v| check(&v)) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert!(
        reached.is_ok(),
        "node {}: {what}: {:?}",
        node.id,
        node.node.view("t", 0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_stops_naming_a_silent_leader_until_the_next_is_elected() {
    let root = tempfile::tempdir().unwrap();
    let addrs = addresses("127.0.0.1");
    let [n1, n2, n3] = start_three(root.path(), &addrs).await;
    let first = leader(&[&n1, &n2, &n3]).await;
    let mut nodes = vec![n1, n2, n3];
    for node in &nodes {
        until(node, "the leader is heard", |v| {
            v.leader == Some(first) && v.leader_heard
        })
        .await;
    }
    let at = nodes.iter().position(|n| n.id == first).unwrap();
    stop(nodes.remove(at)).await;
    // Silent now: still Raft's leader (no follower stands before the leader lease and an
    // election timeout, 0.8 s at least by default, have passed; LEADER_SILENCE is 0.3 s) but
    // not heard.
    for node in &nodes {
        until(node, "the stopped leader is held but not heard", |v| {
            v.leader == Some(first) && !v.leader_heard
        })
        .await;
    }
    let next = leader(&[&nodes[0], &nodes[1]]).await;
    assert_ne!(next, first);
    for node in &nodes {
        until(node, "the new leader is heard", |v| {
            v.leader == Some(next) && v.leader_heard
        })
        .await;
    }
    for node in nodes {
        stop(node).await;
    }
}
