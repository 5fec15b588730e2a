//! Consumer groups over three `headwater log-node` processes (`log.cluster`, loopback only):
//! a librdkafka consumer commits its offset (commit_sync) after reading part of a topic; the
//! group coordinator (the leader of the internal offsets partition) is killed with SIGKILL;
//! the surviving nodes agree on a new coordinator, which answers OffsetFetch with the committed
//! offset while the others answer NOT_COORDINATOR; and a new consumer of the same group,
//! bootstrapped from the survivors only, resumes exactly at the committed offset. The offsets
//! partition itself is offered to no client (not in Metadata, Produce to it refused).
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails by panicking

mod common;

use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use common::kafka_wire::{Dec, Enc, UNKNOWN_TOPIC_OR_PARTITION, Wire};
use common::{Headwater, Listener};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Message};

const BIN: &str = env!("CARGO_BIN_EXE_headwater");
const TOPIC: &str = "events";
const GROUP: &str = "resume-test";
/// Records produced, and how many the first consumer reads before committing.
const RECORDS: i64 = 60;
const READ_FIRST: i64 = 25;
/// A bound on every wait (elections take about a second; a cluster on two shared cores more).
const WAIT: Duration = Duration::from_secs(90);

const FIND_COORDINATOR: i16 = 10;
const OFFSET_FETCH: i16 = 9;
const NOT_COORDINATOR: i16 = 16;

/// A loopback port nobody listens on right now (every node's addresses are in the shared
/// config before any starts).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Cluster {
    config: PathBuf,
    kafka: BTreeMap<u64, SocketAddr>,
    root: tempfile::TempDir,
    nodes: BTreeMap<u64, Headwater>,
}

impl Cluster {
    fn new() -> Self {
        let root = tempfile::tempdir().unwrap();
        let mut kafka = BTreeMap::new();
        let mut nodes_yaml = String::new();
        for id in 1..=3u64 {
            let k: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
            let r = format!("127.0.0.1:{}", free_port());
            nodes_yaml.push_str(&format!(
                "      - {{ id: {id}, replication: \"{r}\", kafka: \"{k}\" }}\n"
            ));
            kafka.insert(id, k);
        }
        let config = root.path().join("headwater.yaml");
        std::fs::write(
            &config,
            format!(
                "log:\n  flush: {{ mode: every_append }}\n  topics:\n    {TOPIC}: {{ partitions: 1 }}\n  cluster:\n    id: groups-test\n    nodes:\n{nodes_yaml}"
            ),
        )
        .unwrap();
        let mut cluster = Self {
            config,
            kafka,
            root,
            nodes: BTreeMap::new(),
        };
        for id in 1..=3 {
            cluster.start(id);
        }
        cluster
    }

    fn start(&mut self, id: u64) {
        let mut command = Command::new(BIN);
        command
            .arg("log-node")
            .arg("--config")
            .arg(&self.config)
            .args(["--node-id", &id.to_string()])
            .args([
                "--listen",
                "127.0.0.1:0",
                "--kafka-listen",
                &self.kafka[&id].to_string(),
            ])
            .arg("--data-dir")
            .arg(self.root.path().join(format!("node-{id}")))
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .env_remove("HEADWATER_CONFIG");
        let mut node = Headwater::spawn(&format!("log-node-{id}"), command);
        node.addr(Listener::Kafka);
        self.nodes.insert(id, node);
    }

    fn kill(&mut self, id: u64) {
        let mut node = self.nodes.remove(&id).unwrap();
        node.child.kill().unwrap();
        node.child.wait().unwrap();
    }

    /// The Kafka addresses of the running nodes.
    fn bootstrap(&self) -> String {
        self.nodes
            .keys()
            .map(|id| self.kafka[id].to_string())
            .collect::<Vec<_>>()
            .join(",")
    }

    fn stderr(&self) -> String {
        self.nodes
            .iter()
            .map(|(id, n)| format!("--- node {id}\n{}", n.stderr()))
            .collect()
    }

    /// Waits (bounded) until every running node names the same running coordinator for
    /// `GROUP` (survivors name a killed leader until they notice it is gone), and returns it.
    fn agreed_coordinator(&self) -> u64 {
        let deadline = Instant::now() + WAIT;
        loop {
            let named: Vec<Option<i32>> = self
                .nodes
                .keys()
                .map(|id| find_coordinator(self.kafka[id]))
                .collect();
            if let Some(Some(first)) = named.first()
                && named.iter().all(|n| *n == Some(*first))
                && self.nodes.contains_key(&u64::try_from(*first).unwrap())
            {
                return u64::try_from(*first).unwrap();
            }
            assert!(
                Instant::now() < deadline,
                "no agreed coordinator within {WAIT:?} ({named:?}):\n{}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// FindCoordinator v1 for `GROUP` asked of `addr`: the coordinator's node id, `None` while
/// there is none (or the node cannot be reached).
fn find_coordinator(addr: SocketAddr) -> Option<i32> {
    let stream = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5)).ok()?;
    let mut wire = Wire::from_std(stream);
    let body = Enc::default().str(GROUP).i8(0);
    let answer = wire.request(FIND_COORDINATOR, 1, &body.0)?;
    let mut dec = Dec(&answer[..]);
    let _throttle = dec.i32();
    let error = dec.i16();
    let _message = dec.str();
    let node = dec.i32();
    (error == 0).then_some(node)
}

/// OffsetFetch v1 for `GROUP`'s partition 0 of `TOPIC` asked of `addr`: (error code, offset).
fn offset_fetch(addr: SocketAddr) -> (i16, i64) {
    let mut wire = Wire::connect(addr);
    let body = Enc::default()
        .str(GROUP)
        .array(1)
        .str(TOPIC)
        .array(1)
        .i32(0);
    let answer = wire.request(OFFSET_FETCH, 1, &body.0).unwrap();
    let mut dec = Dec(&answer[..]);
    assert_eq!(dec.i32(), 1, "one topic");
    assert_eq!(dec.str(), TOPIC);
    assert_eq!(dec.i32(), 1, "one partition");
    assert_eq!(dec.i32(), 0);
    let offset = dec.i64();
    let _metadata = dec.str();
    (dec.i16(), offset)
}

/// The topics a Metadata request for all topics lists.
fn first_metadata(cluster: &Cluster) -> Vec<String> {
    let reader: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", cluster.bootstrap())
        .create()
        .unwrap();
    let metadata = reader.fetch_metadata(None, WAIT).unwrap();
    metadata
        .topics()
        .iter()
        .map(|t| t.name().to_owned())
        .collect()
}

fn consumer(bootstrap: &str) -> BaseConsumer {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", GROUP)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("topic.metadata.refresh.interval.ms", "500")
        .set("session.timeout.ms", "6000")
        .create()
        .unwrap();
    consumer.subscribe(&[TOPIC]).unwrap();
    consumer
}

/// The next record's (offset, value), polling within the bound.
fn next(consumer: &BaseConsumer, cluster: &Cluster) -> (i64, String) {
    let deadline = Instant::now() + WAIT;
    loop {
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(message)) => {
                let value = String::from_utf8(message.payload().unwrap().to_vec()).unwrap();
                return (message.offset(), value);
            }
            Some(Err(e)) => eprintln!("consumer: {e}"),
            None => {}
        }
        assert!(
            Instant::now() < deadline,
            "no record within {WAIT:?}:\n{}",
            cluster.stderr()
        );
    }
}

fn produce_all(cluster: &Cluster) {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", cluster.bootstrap())
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .set("message.timeout.ms", "60000")
        .create()
        .unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        for i in 0..RECORDS {
            let value = format!("record-{i}");
            let sent = producer
                .send(
                    FutureRecord::<(), _>::to(TOPIC)
                        .payload(&value)
                        .partition(0),
                    Duration::from_secs(60),
                )
                .await;
            let delivery = sent.unwrap_or_else(|(e, _)| {
                panic!("record {i} not acknowledged: {e}\n{}", cluster.stderr())
            });
            assert_eq!(delivery.offset, i, "dense offsets from 0");
        }
    });
}

#[test]
fn a_group_resumes_at_its_committed_offset_after_the_coordinator_is_killed() {
    let mut cluster = Cluster::new();
    produce_all(&cluster);

    // Read part of the topic and commit synchronously.
    let first = consumer(&cluster.bootstrap());
    for want in 0..READ_FIRST {
        let (offset, value) = next(&first, &cluster);
        assert_eq!((offset, value), (want, format!("record-{want}")));
    }
    first
        .commit_consumer_state(CommitMode::Sync)
        .unwrap_or_else(|e| panic!("commit_sync: {e}\n{}", cluster.stderr()));
    drop(first);

    let coordinator = cluster.agreed_coordinator();
    assert_eq!(
        offset_fetch(cluster.kafka[&coordinator]),
        (0, READ_FIRST),
        "the coordinator answers the committed offset"
    );

    // The offsets partition is not offered to clients.
    let listed = first_metadata(&cluster);
    assert_eq!(
        listed,
        [TOPIC.to_owned()],
        "Metadata lists only the data topics"
    );
    let batch = headwater_log::batch::encode(
        &[&headwater_log::Record {
            value: Some(bytes::Bytes::from_static(b"{}")),
            ..Default::default()
        }],
        headwater_log::batch::ProducerFields::NONE,
    )
    .unwrap();
    for addr in cluster.kafka.values() {
        let (error, _) = Wire::connect(*addr)
            .produce("__consumer_offsets", 0, &batch)
            .unwrap();
        assert_eq!(error, UNKNOWN_TOPIC_OR_PARTITION);
    }

    cluster.kill(coordinator);
    let successor = cluster.agreed_coordinator();
    assert_ne!(successor, coordinator);

    // The new coordinator answers the committed offset (once it has applied the offsets
    // log); the other survivor says it does not coordinate.
    let deadline = Instant::now() + WAIT;
    loop {
        let answer = offset_fetch(cluster.kafka[&successor]);
        if answer == (0, READ_FIRST) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the new coordinator answered {answer:?}:\n{}",
            cluster.stderr()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    for id in cluster.nodes.keys().filter(|id| **id != successor) {
        assert_eq!(offset_fetch(cluster.kafka[id]).0, NOT_COORDINATOR);
    }

    // A new member of the group, from the survivors only, resumes at the committed offset.
    let second = consumer(&cluster.bootstrap());
    for want in READ_FIRST..RECORDS {
        let (offset, value) = next(&second, &cluster);
        assert_eq!((offset, value), (want, format!("record-{want}")));
    }
    assert!(
        second.poll(Duration::from_millis(500)).is_none(),
        "nothing past the end"
    );
}
