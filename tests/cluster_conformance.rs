//! The shared `Log` conformance suite (`headwater_log::testsuite`, the one the embedded engine,
//! a single log node and Apache Kafka pass) through `KafkaLog` against three `headwater
//! log-node` processes forming one cluster: every topic it uses is created at run time through
//! the cluster's metadata (CreateTopics, replicated on the three nodes), and each append is
//! committed on a majority.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails by panicking

mod common;

use std::sync::Arc;

use common::log_cluster::Cluster;
use headwater_kafka_client::KafkaLog;
use headwater_log::{KafkaClientConfig, testsuite};

// CreateTopics and DeleteTopics answer once every node has applied the change, so the suite's
// listings right after them hold whichever broker answers (before that, 2 of 9 runs saw a
// deleted topic listed by a broker that had not applied the deletion yet).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_log_suite_passes_against_a_three_node_cluster() {
    let mut cluster = Cluster::new(&[("configured", 1)]);
    for id in 1..=3 {
        cluster.start(id);
    }
    let log = Arc::new(
        KafkaLog::new(KafkaClientConfig {
            brokers: cluster.bootstrap(),
            ..KafkaClientConfig::default()
        })
        .unwrap(),
    );
    testsuite::run_all(log.clone(), "cluster").await;
    drop(log);
}
