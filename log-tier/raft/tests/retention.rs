//! Retention in a cluster: each node cuts its own log through its Raft group (a data-free
//! snapshot, then a purge that deletes the segments), appends go on at the next offsets, and a
//! node that was down while the others cut past what it holds catches up from the snapshot: its
//! log starts after the cut, and every offset any two nodes hold has the same record on both.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails by panicking

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::nodes::{Node, WAIT, addresses, append, start_configured, stop};
use headwater_log::LogConfig;
use headwater_raft::net::TransportConfig;

/// Small segments and a size bound of two of them: most of a few hundred batches is past
/// retention at once; the loop's own period is long, so the test cuts when it wants.
fn config() -> LogConfig {
    LogConfig {
        retention_ms: i64::MAX as u64,
        retention_bytes: Some(8192),
        retention_check_interval_ms: 3_600_000,
        ..common::log_config()
    }
}

/// Offset → value of every committed record `node` holds.
fn records(node: &Node) -> BTreeMap<i64, String> {
    let log = node.engine.replica("t", 0).unwrap();
    let committed = log.state().committed_offset;
    let mut out = BTreeMap::new();
    for (_, _, base, next, bytes) in common::data(&log) {
        if next > committed {
            continue;
        }
        let records = headwater_log::batch::decode_records(&bytes).unwrap();
        for (i, r) in records.into_iter().enumerate() {
            out.insert(
                base + i as i64,
                String::from_utf8(r.value.unwrap().to_vec()).unwrap(),
            );
        }
    }
    out
}

fn log_start(node: &Node) -> i64 {
    node.engine.partition_offsets("t", 0).unwrap().log_start
}

async fn cut(node: &Node) -> u64 {
    let part = node.node.partition("t", 0).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let upto = headwater_raft::purge_expired(&part, now)
        .await
        .unwrap()
        .expect("something past retention");
    // openraft purges in the background: wait until the log starts after the cut.
    tokio::time::timeout(WAIT, async {
        while part.log.state().purged.is_none_or(|p| p.index < upto) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the purge never happened");
    upto
}

/// Every record two nodes both hold is the same record.
fn agree(nodes: &[&Node]) {
    let held: Vec<BTreeMap<i64, String>> = nodes.iter().map(|n| records(n)).collect();
    for (i, a) in held.iter().enumerate() {
        for b in &held[i + 1..] {
            for (offset, value) in a {
                if let Some(other) = b.get(offset) {
                    assert_eq!(value, other, "offset {offset}");
                }
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_cuts_each_log_and_a_returning_node_starts_after_the_cut() {
    let root = tempfile::tempdir().unwrap();
    let addrs = addresses("127.0.0.1");
    let tcp = TransportConfig::default;
    let (n1, n2, n3) = tokio::join!(
        start_configured(root.path(), 1, &addrs, tcp(), config()),
        start_configured(root.path(), 2, &addrs, tcp(), config()),
        start_configured(root.path(), 3, &addrs, tcp(), config()),
    );
    let mut values = append(&[&n1, &n2, &n3], "a", 60).await;

    // Node 3 is down while the others write on and cut their logs past all it holds.
    let dir3_records = records(&n3);
    stop(n3).await;
    values.extend(append(&[&n1, &n2], "b", 240).await);
    for node in [&n1, &n2] {
        let upto = cut(node).await;
        assert!(upto > 60, "cut at entry {upto}: past what node 3 holds");
        assert!(log_start(node) > 0, "the log starts after the cut");
        let held = records(node);
        let first = *held.keys().next().unwrap();
        assert_eq!(first, log_start(node));
        // What is left is the newest records, at their offsets.
        let tail: Vec<&String> = held.values().collect();
        assert_eq!(
            tail,
            values[first as usize..].iter().collect::<Vec<_>>(),
            "node {}",
            node.id
        );
    }
    assert!(dir3_records.len() <= 60, "node 3 held at most the first 60");

    // It comes back, gets the snapshot (its log is older than anything the leader has) and
    // takes the entries after the cut; writes go on at the next offsets on every node.
    let n3 = start_configured(root.path(), 3, &addrs, tcp(), config()).await;
    let nodes = [&n1, &n2, &n3];
    values.extend(append(&nodes, "c", 20).await);
    let last = (values.len() - 1) as i64;
    tokio::time::timeout(WAIT, async {
        while records(&n3).get(&last) != Some(&values[last as usize]) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("node 3 never caught up");
    assert!(log_start(&n3) > 60, "node 3 starts after the cut");
    assert!(
        records(&n3).keys().all(|&o| o >= log_start(&n3)),
        "node 3 dropped what it held before the cut"
    );
    agree(&nodes);
    for node in nodes {
        let held = records(node);
        for (offset, value) in &held {
            assert_eq!(value, &values[*offset as usize], "node {}", node.id);
        }
    }
    for node in [n1, n2, n3] {
        stop(node).await;
    }
}

/// A snapshot alone cuts nothing: openraft by default purges all but the last 1,000 entries
/// once it has built one, which here would delete records no retention let go.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_without_retention_deletes_nothing() {
    let root = tempfile::tempdir().unwrap();
    let addrs = addresses("127.0.0.1");
    let tcp = TransportConfig::default;
    let keep_all = || LogConfig {
        retention_check_interval_ms: 3_600_000,
        ..common::log_config()
    };
    let (n1, n2, n3) = tokio::join!(
        start_configured(root.path(), 1, &addrs, tcp(), keep_all()),
        start_configured(root.path(), 2, &addrs, tcp(), keep_all()),
        start_configured(root.path(), 3, &addrs, tcp(), keep_all()),
    );
    let nodes = [&n1, &n2, &n3];
    let values = append(&nodes, "s", 1_100).await;
    let leader = common::nodes::leader(&nodes).await;
    let node = nodes.iter().find(|n| n.id == leader).unwrap();
    let part = node.node.partition("t", 0).unwrap();
    part.raft.trigger().snapshot().await.unwrap();
    part.raft
        .wait(Some(WAIT))
        .metrics(
            |m| m.snapshot.is_some_and(|s| s.index >= 1_000),
            "a snapshot",
        )
        .await
        .unwrap();
    // Give a purge the chance it would take: another entry, committed and applied.
    let mut all = values.clone();
    all.extend(append(&nodes, "after", 1).await);
    assert_eq!(part.log.state().purged, None, "nothing purged");
    assert_eq!(log_start(node), 0);
    let held: Vec<String> = records(node).into_values().collect();
    assert_eq!(held, all);
    for node in [n1, n2, n3] {
        stop(node).await;
    }
}
