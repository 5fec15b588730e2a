//! Three `headwater log-node` processes as one cluster (`log.cluster`, loopback only): a
//! topic of two partitions replicated on all three, written by an idempotent acks=all
//! librdkafka producer while the leader of partition 0 is killed (SIGKILL) and later restarted
//! from its disk. Every acknowledged record is read back at the offset it was acknowledged
//! with, exactly once, offsets dense from 0 in each partition.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails by panicking

mod common;

use std::collections::{BTreeMap, HashSet};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{Headwater, Listener};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};

const BIN: &str = env!("CARGO_BIN_EXE_headwater");
const TOPIC: &str = "orders";

/// A loopback port nobody listens on right now (the nodes' addresses must be known to all
/// three before any starts).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Cluster {
    config: PathBuf,
    kafka: BTreeMap<u64, String>,
    root: tempfile::TempDir,
    nodes: BTreeMap<u64, Headwater>,
}

impl Cluster {
    fn new() -> Self {
        let root = tempfile::tempdir().unwrap();
        let mut kafka = BTreeMap::new();
        let mut nodes_yaml = String::new();
        for id in 1..=3u64 {
            let k = format!("127.0.0.1:{}", free_port());
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
                "log:\n  flush: {{ mode: every_append }}\n  topics:\n    {TOPIC}: {{ partitions: 2 }}\n  cluster:\n    id: replication-test\n    nodes:\n{nodes_yaml}"
            ),
        )
        .unwrap();
        Self {
            config,
            kafka,
            root,
            nodes: BTreeMap::new(),
        }
    }

    fn data(&self, id: u64) -> PathBuf {
        self.root.path().join(format!("node-{id}"))
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
                &self.kafka[&id],
            ])
            .arg("--data-dir")
            .arg(self.data(id))
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

    fn bootstrap(&self) -> String {
        self.kafka.values().cloned().collect::<Vec<_>>().join(",")
    }

    fn stderr(&self) -> String {
        self.nodes
            .iter()
            .map(|(id, n)| format!("--- node {id}\n{}", n.stderr()))
            .collect()
    }
}

fn consumer(bootstrap: &str) -> BaseConsumer {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "replication-test-reader")
        .set("enable.auto.commit", "false")
        .set("topic.metadata.refresh.interval.ms", "500")
        .create()
        .unwrap()
}

/// The leader of `partition` once every partition of the topic has one (bounded wait).
fn leader_of(cluster: &Cluster, partition: i32) -> u64 {
    let reader = consumer(&cluster.bootstrap());
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(md) = reader.fetch_metadata(Some(TOPIC), Duration::from_secs(5))
            && let Some(topic) = md.topics().iter().find(|t| t.name() == TOPIC)
            && topic.partitions().len() == 2
            && topic.partitions().iter().all(|p| p.leader() > 0)
        {
            let p = &topic.partitions()[partition as usize];
            return u64::try_from(p.leader()).unwrap();
        }
        assert!(
            Instant::now() < deadline,
            "no leaders within 60 s:\n{}",
            cluster.stderr()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Sends `n` records `{tag}-{i}` alternately to partitions 0 and 1; returns what was
/// acknowledged: value → (partition, offset).
async fn produce(producer: &FutureProducer, tag: &str, n: usize) -> Vec<(String, i32, i64)> {
    let sends = (0..n).map(|i| {
        let value = format!("{tag}-{i}");
        async move {
            let partition = (i % 2) as i32;
            let record = FutureRecord::<(), _>::to(TOPIC)
                .partition(partition)
                .payload(&value);
            producer
                .send(record, Duration::from_secs(60))
                .await
                .map(|d| (value.clone(), d.partition, d.offset))
                .map_err(|(e, _)| format!("{value}: {e}"))
        }
    });
    futures::future::join_all(sends)
        .await
        .into_iter()
        .map(|r| r.unwrap())
        .collect()
}

/// Reads both partitions from offset 0 until every acknowledged record is seen (bounded).
fn read_back(bootstrap: &str, acked: usize) -> Vec<(i32, i64, String)> {
    let reader = consumer(bootstrap);
    let mut assignment = TopicPartitionList::new();
    for p in 0..2 {
        assignment
            .add_partition_offset(TOPIC, p, Offset::Beginning)
            .unwrap();
    }
    reader.assign(&assignment).unwrap();
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while out.len() < acked && Instant::now() < deadline {
        if let Some(Ok(m)) = reader.poll(Duration::from_millis(500)) {
            let value = String::from_utf8(m.payload().unwrap().to_vec()).unwrap();
            out.push((m.partition(), m.offset(), value));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_records_survive_a_killed_leader_exactly_once_at_dense_offsets() {
    let mut cluster = Cluster::new();
    for id in 1..=3 {
        cluster.start(id);
    }
    let first_leader = leader_of(&cluster, 0);
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", cluster.bootstrap())
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .set("message.timeout.ms", "60000")
        .set("linger.ms", "5")
        .set("topic.metadata.refresh.interval.ms", "500")
        .create()
        .unwrap();
    let mut acked = produce(&producer, "before", 200).await;

    // The leader of partition 0 dies mid-stream; writes go on through the new leaders.
    let during = {
        let producer = producer.clone();
        tokio::spawn(async move { produce(&producer, "during", 200).await })
    };
    cluster.kill(first_leader);
    acked.extend(during.await.unwrap());
    let new_leader = leader_of(&cluster, 0);
    assert_ne!(
        new_leader, first_leader,
        "a surviving node leads partition 0"
    );
    acked.extend(produce(&producer, "after", 200).await);

    // The killed node comes back from its disk and catches up.
    cluster.start(first_leader);
    acked.extend(produce(&producer, "rejoined", 100).await);

    let read = read_back(&cluster.bootstrap(), acked.len());
    let mut by_value: BTreeMap<&str, (i32, i64)> = BTreeMap::new();
    for (partition, offset, value) in &read {
        assert!(
            by_value.insert(value, (*partition, *offset)).is_none(),
            "{value} read twice"
        );
    }
    for (value, partition, offset) in &acked {
        assert_eq!(
            by_value.get(value.as_str()),
            Some(&(*partition, *offset)),
            "{value} acknowledged at {partition}/{offset}"
        );
    }
    assert_eq!(read.len(), acked.len(), "nothing but what was acknowledged");
    for p in 0..2 {
        let offsets: Vec<i64> = read.iter().filter(|r| r.0 == p).map(|r| r.1).collect();
        let expected: Vec<i64> = (0..offsets.len() as i64).collect();
        assert_eq!(offsets, expected, "partition {p}: dense offsets from 0");
    }
    let distinct: HashSet<&String> = acked.iter().map(|a| &a.0).collect();
    assert_eq!(distinct.len(), 700);
    drop(cluster);
}
