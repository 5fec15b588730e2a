//! A node that lost its disk rejoins without helping a lagging node to power: three
//! `ReplicaNode`s over TCP on loopback. Entries committed by two nodes while the third was down
//! must survive when one of those two comes back wiped beside the lagging one: the wiped node
//! refuses its vote (it forgot what it acknowledged) until a leader has given it the committed
//! entries, so the lagging node cannot be elected and truncate them.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails by panicking

mod common;

use std::time::Duration;

use common::nodes::{WAIT, addresses, append, dir_of, holds, start, start_three, stop};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wiped_node_does_not_vote_a_lagging_node_into_losing_committed_entries() {
    let root = tempfile::tempdir().unwrap();
    let addrs = addresses("127.0.0.1");
    let [n1, n2, n3] = start_three(root.path(), &addrs).await;
    let all = [&n1, &n2, &n3];
    let mut expected = append(&all, "all", 5).await;
    // Node 3 must hold them before it goes down, or it is not the lagging voter this test is
    // about: nodes 1 and 2 commit them without it, and a node stopped before the leader reached
    // it restarts with an empty log and no membership, a learner that never stands for election
    // (seen under load: the wiped node then had nothing to refuse). Nor may it still be
    // rejoining (a new data directory is until it has met its peers or caught up): a rejoining
    // node stands for no election either.
    holds(&all, &expected, || {
        all.iter().all(|n| n.node.rejoining("t", 0).is_none())
    })
    .await;

    // Node 3 goes down and lags; nodes 1 and 2 alone commit more.
    stop(n3).await;
    expected.extend(append(&[&n1, &n2], "two", 5).await);
    holds(&[&n1, &n2], &expected, || true).await;

    // Node 2 loses its disk; node 1, the only other holder of the newer entries, is down.
    stop(n2).await;
    std::fs::remove_dir_all(dir_of(root.path(), 2)).unwrap();
    stop(n1).await;

    // The wiped node and the lagging one: the lagging one stands for election and the wiped
    // one refuses it (a vote would make it leader without "two-*", and they would be lost).
    let (n2, n3) = tokio::join!(start(root.path(), 2, &addrs), start(root.path(), 3, &addrs));
    let asked = tokio::time::timeout(WAIT, async {
        while n2.node.rejoining("t", 0).unwrap_or(0) < 2 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(
        asked.is_ok(),
        "the lagging node never asked the wiped one for its vote: node 2 {:?} {:?}, node 3 {:?} {:?}",
        n2.node.rejoining("t", 0),
        n2.node.view("t", 0),
        n3.node.rejoining("t", 0),
        n3.node.view("t", 0),
    );
    let view = n3.node.view("t", 0).unwrap();
    assert_ne!(
        view.leader,
        Some(3),
        "the lagging node was elected: {view:?}"
    );

    // Node 1 returns: the leader holds everything committed, and the wiped node gets it all
    // and votes again.
    let n1 = start(root.path(), 1, &addrs).await;
    let nodes = [&n1, &n2, &n3];
    expected.extend(append(&nodes, "after", 2).await);
    holds(&nodes, &expected, || n2.node.rejoining("t", 0).is_none()).await;
    for node in [n1, n2, n3] {
        stop(node).await;
    }
}
