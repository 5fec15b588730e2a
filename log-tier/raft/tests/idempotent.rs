//! An idempotent producer's batches through a leader that can no longer write: three
//! `ReplicaNode`s over TCP on loopback. A leader whose followers stopped answering still leads
//! in its own eyes (it keeps its term and has applied an entry of it) but its lease lapses and
//! Raft refuses its writes. It must then refuse the producer's next batches alike: answering
//! the one behind a refused batch OUT_OF_ORDER_SEQUENCE_NUMBER makes librdkafka bump its
//! epoch, and everything it could not tell was stored is sent again under the new epoch, where
//! no sequence can recognise it (the duplicate at consecutive offsets of tests/replication.rs).
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails by panicking

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::nodes::{Node, WAIT, addresses, committed_values, leader, start, start_three, stop};
use headwater_log::Record;
use headwater_log::batch::{self, ProducerFields};
use headwater_raft::{Applied, ProposeError};

/// The producer of these tests.
const PRODUCER: i64 = 7;

/// One record `value` from producer [`PRODUCER`], epoch 0, at `sequence`.
fn idempotent(value: &str, sequence: i32) -> Bytes {
    encoded(
        value,
        ProducerFields {
            producer_id: PRODUCER,
            producer_epoch: 0,
            base_sequence: sequence,
        },
    )
}

fn encoded(value: &str, producer: ProducerFields) -> Bytes {
    let record = Record {
        partition: Some(0),
        key: None,
        value: Some(Bytes::from(value.to_owned())),
        headers: Vec::new(),
        timestamp_ms: 1_700_000_000_000,
    };
    batch::encode(&[&record], producer).unwrap().freeze()
}

/// Proposes `batch` through whichever of `nodes` leads until one commits it, as a producer
/// retries on NOT_LEADER_OR_FOLLOWER; returns its base offset.
async fn produce(nodes: &[&Node], batch: &Bytes) -> i64 {
    tokio::time::timeout(WAIT, async {
        loop {
            let id = leader(nodes).await;
            let node = nodes.iter().find(|n| n.id == id).unwrap();
            match node.node.append("t", 0, batch.clone()).await {
                Ok(Applied::Data { base_offset, .. }) => return base_offset,
                Ok(Applied::Internal) => panic!("a data batch applied as internal"),
                Err(ProposeError::NotLeader { .. } | ProposeError::Unknown) => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => panic!("a producer's retry refused for good: {e}"),
            }
        }
    })
    .await
    .expect("the batch was never committed")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_batch_behind_one_a_lapsed_leader_refused_is_refused_too() {
    let root = tempfile::tempdir().unwrap();
    let addrs = addresses("127.0.0.1");
    let nodes = start_three(root.path(), &addrs).await;
    let id = leader(&[&nodes[0], &nodes[1], &nodes[2]]).await;
    let (leading, followers): (Vec<Node>, Vec<Node>) = nodes.into_iter().partition(|n| n.id == id);
    let leading = leading.into_iter().next().unwrap();
    let first = produce(&[&leading], &idempotent("a", 0)).await;
    assert_eq!(first, 0);

    // The followers go: the leader keeps leading in its own eyes, its lease lapses.
    let follower_ids: Vec<u64> = followers.iter().map(|n| n.id).collect();
    for follower in followers {
        stop(follower).await;
    }
    // Batches of no producer probe for the lapse: until it, each is written and waits for a
    // commit that cannot come (given up on; it stays uncommitted), after it Raft refuses them.
    let plain = encoded("probe", ProducerFields::NONE);
    tokio::time::timeout(WAIT, async {
        loop {
            let probe = leading.node.append("t", 0, plain.clone());
            if let Ok(Err(ProposeError::NotLeader { .. })) =
                tokio::time::timeout(Duration::from_millis(100), probe).await
            {
                return;
            }
        }
    })
    .await
    .expect("the leader without followers never stopped taking writes");
    let view = leading.node.view("t", 0).unwrap();
    assert_eq!(
        view.leader,
        Some(id),
        "the leader still leads in its own eyes"
    );

    // The producer's next batch is refused (its client will send it again)...
    let refused = leading.node.append("t", 0, idempotent("b", 1)).await;
    assert!(
        matches!(refused, Err(ProposeError::NotLeader { .. })),
        "the lapsed leader took a batch: {refused:?}"
    );
    // ...and so is the one behind it, which comes before that resend: not as out of order.
    let behind = leading.node.append("t", 0, idempotent("c", 2)).await;
    assert!(
        matches!(behind, Err(ProposeError::NotLeader { .. })),
        "the batch behind a refused one must be refused as the refused one was, so that the \
         producer sends both again in order under the same epoch: {behind:?}"
    );

    // The followers come back: the producer sends both again, in order and under the same
    // epoch, and each is committed once, right after its first (probes of the lapse aside).
    let mut nodes = vec![leading];
    for id in follower_ids {
        nodes.push(start(root.path(), id, &addrs).await);
    }
    let all: Vec<&Node> = nodes.iter().collect();
    let b = produce(&all, &idempotent("b", 1)).await;
    let c = produce(&all, &idempotent("c", 2)).await;
    assert!(first < b && b < c, "offsets {first}, {b}, {c}");
    let id = leader(&all).await;
    let leading = all.iter().find(|n| n.id == id).unwrap();
    let produced: Vec<String> = committed_values(leading)
        .into_iter()
        .filter(|v| v != "probe")
        .collect();
    assert_eq!(produced, ["a", "b", "c"]);
    for node in nodes {
        stop(node).await;
    }
}
