//! `KafkaLog` against real Kafka-protocol servers: the shared `Log` suite and group membership,
//! run against a Headwater log node (the embedded engine behind the Kafka listener, in this
//! process) and against the Apache Kafka broker from scripts/services.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails by panicking

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use headwater_kafka::{KafkaOptions, serve};
use headwater_kafka_client::KafkaLog;
use headwater_log::{
    Assignment, GroupMembership, KafkaClientConfig, Log, LogConfig, LogEngine, testsuite,
};
use tokio::net::TcpListener;
use tokio::sync::watch;

/// A log node on a free loopback port; dropping the returned sender stops it.
async fn log_node(dir: &std::path::Path) -> (String, watch::Sender<bool>, Arc<LogEngine>) {
    let engine = LogEngine::open(dir, LogConfig::default()).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = watch::channel(false);
    tokio::spawn(serve(
        engine.clone(),
        listener,
        KafkaOptions::advertising(addr),
        stopped,
    ));
    (addr.to_string(), stop, engine)
}

fn client(brokers: &str) -> Arc<KafkaLog> {
    Arc::new(
        KafkaLog::new(KafkaClientConfig {
            brokers: brokers.to_owned(),
            ..KafkaClientConfig::default()
        })
        .unwrap(),
    )
}

fn unique(prefix: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{prefix}-{nanos}")
}

fn real_kafka() -> String {
    match std::env::var("HEADWATER_TEST_KAFKA") {
        Ok(v) if !v.is_empty() => v,
        _ => panic!(
            "HEADWATER_TEST_KAFKA is not set: start the real services with `scripts/services \
             start` and `. target/services/env.sh` before `cargo test -p headwater-kafka-client`"
        ),
    }
}

/// Waits (bounded) until `member` owns `want` partitions, releasing revoked ones at once (it
/// works on nothing).
async fn wait_for(
    member: &dyn GroupMembership,
    rx: &mut watch::Receiver<Assignment>,
    want: usize,
) -> Assignment {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let now = rx.borrow_and_update().clone();
        member.released();
        if now.len() == want {
            return now;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(
            !left.is_zero(),
            "assignment stayed at {now:?}, wanted {want}"
        );
        let _ = tokio::time::timeout(left.min(Duration::from_millis(200)), rx.changed()).await;
    }
}

/// Two members split a 4-partition topic 2 + 2 with nothing shared; when one leaves, the
/// other gets all 4.
async fn members_split_and_rebalance(log: Arc<KafkaLog>, prefix: &str) {
    let topic = format!("{prefix}-members");
    log.create_topic(&topic, 4).await.unwrap();
    let group = format!("{prefix}-members-group");
    let topics = vec![topic.clone()];
    let a: Box<dyn GroupMembership> = log.join_group(&group, &topics).await.unwrap().unwrap();
    let mut ra = a.assignment();
    wait_for(&*a, &mut ra, 4).await;
    let b = log.join_group(&group, &topics).await.unwrap().unwrap();
    let mut rb = b.assignment();
    let got_a = wait_for(&*a, &mut ra, 2).await;
    let got_b = wait_for(&*b, &mut rb, 2).await;
    let mut all: Vec<_> = got_a.iter().chain(got_b.iter()).cloned().collect();
    all.sort();
    let want: Vec<_> = (0..4).map(|p| (topic.clone(), p)).collect();
    assert_eq!(all, want, "each partition owned exactly once");
    drop(a);
    assert_eq!(wait_for(&*b, &mut rb, 4).await.len(), 4);
}

/// A record over the producer's `message.max.bytes` is refused alone, with its size, so the
/// topic sink can split or reject it.
async fn oversize_record_is_message_too_large(log: &KafkaLog) {
    let record = headwater_log::Record {
        partition: Some(0),
        value: Some(bytes::Bytes::from(vec![b'x'; 2_000_000])),
        ..Default::default()
    };
    let err = log.append("node-oversize", vec![record]).await.unwrap_err();
    match err {
        headwater_log::LogError::MessageTooLarge { size, max } => {
            assert_eq!((size, max), (2_000_000, 1_000_000), "{err}");
        }
        other => panic!("expected MessageTooLarge, got {other}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn suite_against_headwater_log_node() {
    let dir = tempfile::tempdir().unwrap();
    let (brokers, stop, engine) = log_node(dir.path()).await;
    let log = client(&brokers);
    testsuite::run_all(log.clone(), "node").await;
    members_split_and_rebalance(log.clone(), "node").await;
    oversize_record_is_message_too_large(&log).await;
    drop(log);
    let _ = stop.send(true);
    engine.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn suite_against_apache_kafka() {
    let log = client(&real_kafka());
    let prefix = unique("kl");
    testsuite::run_all(log.clone(), &prefix).await;
    members_split_and_rebalance(log, &prefix).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn brokers_down_is_retryable_not_a_hang() {
    // Nothing listens on this port (bound then dropped).
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let log = Arc::new(
        KafkaLog::new(KafkaClientConfig {
            brokers: addr.to_string(),
            request_timeout_ms: 1000,
            message_timeout_ms: 1000,
            ..KafkaClientConfig::default()
        })
        .unwrap(),
    );
    let started = Instant::now();
    let err = log.check_writable().await.unwrap_err();
    assert!(err.is_retryable(), "{err}");
    let err = log.partitions("events").await.unwrap_err();
    assert!(err.is_retryable(), "{err}");
    assert!(started.elapsed() < Duration::from_secs(20));
}
