//! An experiment, not part of the suite (`#[ignore]`): how long two surviving nodes of three
//! take to elect a new leader of every group after the leader stops, over many rounds, with
//! optional busy threads eating the CPU. Run with
//!
//! ```text
//! HEADWATER_TEST_ELECTION_MS=300,500 HEADWATER_TEST_ROUNDS=20 HEADWATER_TEST_CPU_HOGS=2 \
//!   RUST_LOG=openraft=info cargo test -p headwater-raft --test election_liveness -- --ignored --nocapture
//! ```
//!
//! Each round prints the time from the stop to a leader agreed on by both survivors for every
//! group; a round over `HEADWATER_TEST_STALL_S` (default 30) fails the experiment.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails by panicking

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::batch_of;
use common::nodes::{Node, addresses, election_timeout_ms, start, start_three, stop};

const PARTITIONS: i32 = 4;

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Each group's leader as `node` sees it (`t`/0 and `load`/0..PARTITIONS).
fn leaders(node: &Node) -> Vec<Option<u64>> {
    std::iter::once(node.node.view("t", 0))
        .chain((0..PARTITIONS).map(|p| node.node.view("load", p)))
        .map(|v| v.and_then(|v| v.leader))
        .collect()
}

/// Whether every node of `nodes` names the same leader, one of them, for every group.
fn agreed(nodes: &[&Node]) -> bool {
    let first = leaders(nodes[0]);
    first
        .iter()
        .all(|l| l.is_some_and(|l| nodes.iter().any(|n| n.id == l)))
        && nodes.iter().all(|n| leaders(n) == first)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "an experiment on election timers; see the module's documentation"]
async fn survivors_elect_a_leader_of_every_group_after_each_stop() {
    common::nodes::trace_if_asked();
    let rounds = env("HEADWATER_TEST_ROUNDS", 10);
    let stall = Duration::from_secs(env("HEADWATER_TEST_STALL_S", 30));
    let hogging = Arc::new(AtomicBool::new(true));
    let hogs: Vec<_> = (0..env("HEADWATER_TEST_CPU_HOGS", 0))
        .map(|_| {
            let hogging = hogging.clone();
            std::thread::spawn(move || {
                let mut x = 0u64;
                while hogging.load(Ordering::Relaxed) {
                    x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
                    std::hint::black_box(x);
                }
            })
        })
        .collect();
    println!("election timeout {:?} ms", election_timeout_ms());
    let root = tempfile::tempdir().unwrap();
    let addrs = addresses("127.0.0.1");
    let mut nodes: Vec<Node> = start_three(root.path(), &addrs).await.into();
    for node in &nodes {
        node.node.open_topic("load", PARTITIONS).await.unwrap();
    }
    let mut results = Vec::new();
    for round in 0..rounds {
        let wait = tokio::time::timeout(Duration::from_secs(60), async {
            while !agreed(&nodes.iter().collect::<Vec<_>>()) {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        });
        assert!(
            wait.await.is_ok(),
            "round {round}: no leaders to begin with"
        );
        // A write to every group first, so that each survivor has entries to compare.
        for node in &nodes {
            for p in 0..PARTITIONS {
                let _ = node
                    .node
                    .append("load", p, batch_of(&[format!("r{round}")]).0)
                    .await;
            }
        }
        let victim = leaders(&nodes[0])[0].unwrap();
        let at = nodes.iter().position(|n| n.id == victim).unwrap();
        let stopped = Instant::now();
        stop(nodes.remove(at)).await;
        let survivors: Vec<&Node> = nodes.iter().collect();
        let mut took = None;
        while stopped.elapsed() < stall {
            if agreed(&survivors) {
                took = Some(stopped.elapsed());
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let views: Vec<_> = survivors.iter().map(|n| (n.id, leaders(n))).collect();
        println!("round {round}: stopped node {victim}; leaders after {took:?}: {views:?}");
        results.push(took);
        nodes.push(start(root.path(), victim, &addrs).await);
        nodes
            .last()
            .unwrap()
            .node
            .open_topic("load", PARTITIONS)
            .await
            .unwrap();
        if took.is_none() {
            break;
        }
    }
    hogging.store(false, Ordering::Relaxed);
    for hog in hogs {
        hog.join().unwrap();
    }
    let mut done: Vec<Duration> = results.iter().flatten().copied().collect();
    done.sort();
    println!(
        "{} rounds, {} stalled; fastest {:?}, median {:?}, slowest {:?}",
        results.len(),
        results.iter().filter(|r| r.is_none()).count(),
        done.first(),
        done.get(done.len() / 2),
        done.last()
    );
    for node in nodes {
        stop(node).await;
    }
    assert!(results.iter().all(Option::is_some), "a round stalled");
}
