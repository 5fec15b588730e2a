//! Three `headwater log-node` processes as one cluster (`log.cluster`, loopback only): a
//! topic of two partitions replicated on all three, written by an idempotent acks=all
//! librdkafka producer while the leader of partition 0 is killed (SIGKILL) and later restarted
//! from its disk. Every acknowledged record is read back at the offset it was acknowledged
//! with, exactly once, offsets dense from 0 in each partition.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails by panicking

mod common;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::kafka_wire::{Dec, Enc, Wire};
use common::log_cluster::{Cluster, free_port, log_node};
use common::{Headwater, Listener};
use headwater_testing::{Fault, FaultProxy};
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::DeliveryResult;
use rdkafka::producer::{
    BaseRecord, FutureProducer, FutureRecord, Producer, ProducerContext, ThreadedProducer,
};
use rdkafka::{ClientConfig, ClientContext, Message, Offset, TopicPartitionList};

const TOPIC: &str = "orders";

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

/// The Java client (Kafka 4.x `ConsoleProducer`, idempotent acks=all by default) writes 2,000
/// unique lines while the leader of partition 0 is killed: it exits cleanly without a send
/// error, and every line is stored once, at dense offsets. The log nodes know each other by host
/// name and replicate over mutual TLS (`log.cluster.tls`). Needs the Kafka jars of
/// `scripts/install-deps` (`HEADWATER_TEST_KAFKA_LIBS`, from `target/services/env.sh`).
#[test]
fn the_java_client_follows_a_leader_move() {
    use std::io::Write;
    use std::process::Stdio;
    let libs = std::env::var("HEADWATER_TEST_KAFKA_LIBS").unwrap_or_else(|_| {
        panic!(
            "HEADWATER_TEST_KAFKA_LIBS is not set: run scripts/install-deps and \
             scripts/services start, then . target/services/env.sh"
        )
    });
    // The log nodes replicate over mutual TLS, by host name.
    let mut cluster = Cluster::over_tls(&[(TOPIC, 2)]);
    for id in 1..=3 {
        cluster.start(id);
    }
    let leader = leader_of(&cluster, 0);
    let mut producer = Command::new("java")
        .args([
            "-cp",
            &format!("{libs}/*"),
            "org.apache.kafka.tools.ConsoleProducer",
        ])
        .args(["--bootstrap-server", &cluster.bootstrap(), "--topic", TOPIC])
        .args(["--producer-property", "acks=all"])
        .args(["--producer-property", "enable.idempotence=true"])
        .args(["--producer-property", "linger.ms=5"])
        .args(["--producer-property", "delivery.timeout.ms=60000"])
        .args(["--producer-property", "metadata.max.age.ms=1000"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = producer.stdin.take().unwrap();
    let lines =
        |from: usize, to: usize| -> String { (from..to).map(|i| format!("java-{i}\n")).collect() };
    stdin.write_all(lines(0, 1000).as_bytes()).unwrap();
    stdin.flush().unwrap();
    // Kill the leader once the first lines are stored (read back), mid-stream.
    let deadline = Instant::now() + Duration::from_secs(60);
    while read_back(&cluster.bootstrap(), 200).len() < 200 {
        assert!(
            Instant::now() < deadline,
            "the Java producer stored nothing within 60 s"
        );
    }
    cluster.kill(leader);
    stdin.write_all(lines(1000, 2000).as_bytes()).unwrap();
    drop(stdin);
    let exit = {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            if let Some(status) = producer.try_wait().unwrap() {
                break status;
            }
            if Instant::now() > deadline {
                producer.kill().unwrap();
                panic!("the Java producer did not finish within 120 s");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(producer.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    assert!(
        exit.success(),
        "ConsoleProducer exited with {exit}: {stderr}"
    );
    assert!(
        !stderr.contains("Error when sending"),
        "a send failed:\n{stderr}"
    );
    let read = read_back(&cluster.bootstrap(), 2000);
    let values: HashSet<&str> = read.iter().map(|r| r.2.as_str()).collect();
    assert_eq!(read.len(), 2000, "every line once (read {})", read.len());
    assert_eq!(values.len(), 2000, "no line twice");
    for p in 0..2 {
        let offsets: Vec<i64> = read.iter().filter(|r| r.0 == p).map(|r| r.1).collect();
        let mut sorted = offsets.clone();
        sorted.sort_unstable();
        let expected: Vec<i64> = (0..offsets.len() as i64).collect();
        assert_eq!(sorted, expected, "partition {p}: dense offsets from 0");
    }
}

/// Every node's `/readyz` answers 200, and the nodes' `/metrics` come to name exactly one
/// leader of each partition (`headwater_raft_leader`; gauges refresh every 250 ms), each
/// within a bounded wait.
async fn assert_ready_with_one_leader(cluster: &mut Cluster) {
    let http = reqwest::Client::new();
    let ids: Vec<u64> = cluster.nodes.keys().copied().collect();
    let mut ops = Vec::new();
    for id in ids {
        let addr = cluster.nodes.get_mut(&id).unwrap().addr(Listener::Ops);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let status = http
                .get(format!("http://{addr}/readyz"))
                .send()
                .await
                .map(|r| r.status().as_u16());
            if matches!(status, Ok(200)) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "node {id} not ready within 60 s ({status:?}):\n{}",
                cluster.stderr()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        ops.push(addr);
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut leaders = [0u32; 2];
        for addr in &ops {
            let metrics = http
                .get(format!("http://{addr}/metrics"))
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            for (p, count) in leaders.iter_mut().enumerate() {
                let leads = metrics.lines().any(|line| {
                    line.starts_with("headwater_raft_leader{")
                        && line.contains(&format!("partition=\"{p}\""))
                        && line.contains(&format!("topic=\"{TOPIC}\""))
                        && line.ends_with(" 1")
                });
                *count += u32::from(leads);
            }
        }
        if leaders == [1, 1] {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the nodes' metrics name {leaders:?} leaders of the two partitions, not one each"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_records_survive_a_killed_leader_exactly_once_at_dense_offsets() {
    let mut cluster = Cluster::new(&[(TOPIC, 2)]);
    for id in 1..=3 {
        cluster.start(id);
    }
    let first_leader = leader_of(&cluster, 0);
    assert_ready_with_one_leader(&mut cluster).await;
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

// ---------------------------------------------------------------------------------------------
// The fault suite: every directed link between the three nodes goes through its own
// `FaultProxy`, and a seeded loop of at least 50 faults runs while a producer and a reader work.
// ---------------------------------------------------------------------------------------------

/// The faults the loop draws from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum FaultKind {
    /// SIGKILL of a partition's leader, restart once another node leads it.
    KillLeader,
    /// SIGKILL of a node leading neither partition, restart.
    KillFollower,
    /// SIGKILL of any node, restart.
    KillRandom,
    /// Every directed link to and from a partition's leader cut, until another node leads.
    IsolateLeaderCut,
    /// Every directed link to and from a partition's leader blackholed, until another leads.
    IsolateLeaderBlackhole,
    /// Delay on every link of one node (or on every link) for a while.
    Delay,
    /// A leader killed and restarted, then another node killed as soon as the first is back
    /// (while the partition's election is still going on). Out of the loop: see the ignored
    /// test.
    KillDuringElection,
    /// A follower killed, a few bytes of a write that never completed (garbage, never
    /// acknowledged) left at the end of the newest segment of each partition, restart.
    TornWrite,
    /// A follower killed, the newest segment of each partition cut short by a few bytes (its
    /// last, acknowledged, batches torn), restart. Out of the loop: see the ignored test.
    TruncatedTail,
    /// A node other than a partition's leader killed (it may lead the other partition), its
    /// data directory wiped (a new empty disk), restarted with the same
    /// id (and so an empty log and no vote: the design's new identity is still to come).
    WipedDisk,
}

/// The faults of the loop (kills of leaders weighed twice).
const LOOP_FAULTS: [FaultKind; 9] = [
    FaultKind::KillLeader,
    FaultKind::KillLeader,
    FaultKind::KillFollower,
    FaultKind::KillRandom,
    FaultKind::IsolateLeaderCut,
    FaultKind::IsolateLeaderBlackhole,
    FaultKind::Delay,
    FaultKind::TornWrite,
    FaultKind::WipedDisk,
];

/// A small deterministic generator (xorshift64*): the loop is the same for a given seed.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[usize::try_from(self.below(items.len() as u64)).unwrap()]
    }
}

/// Three log nodes, each with its own config whose peers' `replication` addresses are the
/// proxies of its outgoing links; every node binds its real address with `log.cluster.listen`.
struct FaultCluster {
    nodes: BTreeMap<u64, Headwater>,
    /// The proxy of the directed link (from, to): `from` dials it to reach `to`.
    proxies: BTreeMap<(u64, u64), FaultProxy>,
    configs: BTreeMap<u64, PathBuf>,
    kafka: BTreeMap<u64, SocketAddr>,
    root: tempfile::TempDir,
    /// Runs the proxies (the test thread blocks: kills, waits, metadata requests).
    _runtime: tokio::runtime::Runtime,
}

const IDS: [u64; 3] = [1, 2, 3];

impl FaultCluster {
    fn new() -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let root = tempfile::tempdir().unwrap();
        let addr = || -> SocketAddr { format!("127.0.0.1:{}", free_port()).parse().unwrap() };
        let listen: BTreeMap<u64, SocketAddr> = IDS.iter().map(|&id| (id, addr())).collect();
        let kafka: BTreeMap<u64, SocketAddr> = IDS.iter().map(|&id| (id, addr())).collect();
        let mut proxies = BTreeMap::new();
        for &from in &IDS {
            for &to in IDS.iter().filter(|&&to| to != from) {
                let proxy = runtime.block_on(FaultProxy::start(listen[&to])).unwrap();
                proxies.insert((from, to), proxy);
            }
        }
        let mut configs = BTreeMap::new();
        for &id in &IDS {
            let mut nodes_yaml = String::new();
            for &peer in &IDS {
                let replication = if peer == id {
                    listen[&id]
                } else {
                    proxies[&(id, peer)].addr()
                };
                nodes_yaml.push_str(&format!(
                    "      - {{ id: {peer}, replication: \"{replication}\", kafka: \"{}\" }}\n",
                    kafka[&peer]
                ));
            }
            let config = root.path().join(format!("node-{id}.yaml"));
            std::fs::write(
                &config,
                format!(
                    "log:\n  flush: {{ mode: every_append }}\n  topics:\n    {TOPIC}: {{ partitions: 2 }}\n  cluster:\n    id: replication-faults\n    listen: \"{}\"\n    nodes:\n{nodes_yaml}",
                    listen[&id]
                ),
            )
            .unwrap();
            configs.insert(id, config);
        }
        Self {
            nodes: BTreeMap::new(),
            proxies,
            configs,
            kafka,
            root,
            _runtime: runtime,
        }
    }

    fn data(&self, id: u64) -> PathBuf {
        self.root.path().join(format!("node-{id}"))
    }

    fn start(&mut self, id: u64) {
        let kafka = self.kafka[&id].to_string();
        let node = log_node(&self.configs[&id], id, &kafka, &self.data(id));
        self.nodes.insert(id, node);
    }

    fn kill(&mut self, id: u64) {
        let mut node = self.nodes.remove(&id).unwrap();
        node.child.kill().unwrap();
        node.child.wait().unwrap();
    }

    fn bootstrap(&self) -> String {
        self.kafka
            .values()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Sets `fault` on both directions of every link to and from `id`.
    fn isolate(&self, id: u64, fault: Fault) {
        for (&(from, to), proxy) in &self.proxies {
            if from == id || to == id {
                proxy.set(fault);
            }
        }
    }

    fn heal(&self) {
        for proxy in self.proxies.values() {
            proxy.set(Fault::Pass);
        }
    }

    fn stderr(&self) -> String {
        self.nodes
            .iter()
            .map(|(id, n)| format!("--- node {id}\n{}", n.stderr()))
            .collect()
    }

    /// What node `id` says of the topic's partitions: (leader, in-sync replicas) each, asked
    /// over its own Kafka port; `None` when it does not answer.
    fn view(&self, id: u64) -> Option<Vec<(i32, Vec<i32>)>> {
        if !self.nodes.contains_key(&id) {
            return None;
        }
        let stream =
            std::net::TcpStream::connect_timeout(&self.kafka[&id], Duration::from_secs(1)).ok()?;
        let mut wire = Wire::from_std(stream);
        wire.stream
            .set_read_timeout(Some(Duration::from_secs(2)))
            .ok()?;
        let body = Enc::default().array(1).str(TOPIC).i8(0);
        let answer = wire.request(3, 4, &body.0)?;
        let mut answer = Dec(&answer[..]);
        answer.i32(); // throttle
        for _ in 0..answer.i32() {
            answer.i32();
            answer.str();
            answer.i32();
            answer.str(); // rack
        }
        answer.str(); // cluster id
        answer.i32(); // controller
        let mut out = Vec::new();
        for _ in 0..answer.i32() {
            answer.i16();
            answer.str();
            answer.i8();
            for _ in 0..answer.i32() {
                answer.i16();
                answer.i32();
                let leader = answer.i32();
                let replicas = answer.i32();
                answer.skip(4 * usize::try_from(replicas).unwrap_or(0));
                let isr = (0..answer.i32()).map(|_| answer.i32()).collect();
                out.push((leader, isr));
            }
        }
        (out.len() == 2).then_some(out)
    }

    /// The leader of `partition` that node `id` reports if that leader reports itself as
    /// leader too, among the nodes of `among`.
    fn agreed_leader(&self, partition: usize, among: &[u64]) -> Option<u64> {
        for &id in among {
            let Some(view) = self.view(id) else { continue };
            let leader = u64::try_from(view[partition].0).ok()?;
            if among.contains(&leader)
                && self
                    .view(leader)
                    .is_some_and(|v| v[partition].0 == view[partition].0)
            {
                return Some(leader);
            }
        }
        None
    }

    /// Waits (bounded) until `partition` has a leader among `among` other than `not`.
    fn wait_leader(
        &self,
        partition: usize,
        among: &[u64],
        not: Option<u64>,
        within: Duration,
    ) -> u64 {
        let deadline = Instant::now() + within;
        loop {
            if let Some(leader) = self.agreed_leader(partition, among)
                && Some(leader) != not
            {
                return leader;
            }
            assert!(
                Instant::now() < deadline,
                "partition {partition}: no leader among {among:?} (other than {not:?}) within \
                 {within:?}:\n{}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits (bounded) until every node is up, both partitions have a leader, and each
    /// leader counts all three nodes in sync.
    fn wait_healthy(&self, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        loop {
            let healthy = (0..2).all(|p| {
                self.agreed_leader(p, &IDS).is_some_and(|leader| {
                    self.view(leader).is_some_and(|v| v[p].1.len() == IDS.len())
                })
            });
            if healthy {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The newest `.log` segment of each partition of node `id`.
    fn newest_segments(&self, id: u64) -> Vec<PathBuf> {
        let mut newest = Vec::new();
        for p in 0..2 {
            let dir = self
                .data(id)
                .join("log/topics")
                .join(TOPIC)
                .join(p.to_string());
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            newest.extend(
                entries
                    .filter_map(Result::ok)
                    .map(|e| e.path())
                    .filter(|path| path.extension().is_some_and(|e| e == "log"))
                    .max(),
            );
        }
        newest
    }

    /// Writes a few bytes of an unfinished write after the last batch of the newest `.log`
    /// segment of each partition of node `id` (which is down).
    fn tear_write(&self, id: u64, rng: &mut Rng) -> Vec<(PathBuf, u64)> {
        use std::os::unix::fs::FileExt;
        let mut torn = Vec::new();
        for newest in self.newest_segments(id) {
            let extra = 1 + rng.below(200);
            let garbage: Vec<u8> = (0..extra).map(|_| rng.next() as u8).collect();
            std::fs::OpenOptions::new()
                .write(true)
                .open(&newest)
                .unwrap()
                .write_all_at(&garbage, data_end(&newest))
                .unwrap();
            torn.push((newest, extra));
        }
        torn
    }

    /// Cuts the last few bytes of data off the newest `.log` segment of each partition of
    /// node `id` (which is down).
    fn tear_tail(&self, id: u64, rng: &mut Rng) -> Vec<(PathBuf, u64)> {
        let mut torn = Vec::new();
        for newest in self.newest_segments(id) {
            let end = data_end(&newest);
            if end == 0 {
                continue;
            }
            let cut = (1 + rng.below(200)).min(end);
            std::fs::OpenOptions::new()
                .write(true)
                .open(&newest)
                .unwrap()
                .set_len(end - cut)
                .unwrap();
            torn.push((newest, cut));
        }
        torn
    }
}

/// Where a segment file's batches end (a killed node's active segment has a tail of zeros
/// filled ahead of its appends, `log.preallocate_bytes`): each batch is its base offset (8
/// bytes), its length after that field (4, big-endian) and the rest.
fn data_end(path: &Path) -> u64 {
    let bytes = std::fs::read(path).unwrap();
    let mut end = 0;
    while let Some(field) = bytes.get(end + 8..end + 12) {
        let len = i32::from_be_bytes(field.try_into().unwrap());
        match usize::try_from(len) {
            Ok(len) if len > 0 && end + 12 + len <= bytes.len() => end += 12 + len,
            _ => break,
        }
    }
    end as u64
}

/// An acknowledgement: value, partition, offset, when.
#[derive(Debug, Clone)]
struct Ack {
    value: String,
    partition: i32,
    offset: i64,
    at: Instant,
}

/// Every acknowledgement and every failed delivery of the producer.
#[derive(Default)]
struct Ledger {
    /// When `v{n}` was handed to the producer, at `n`.
    sent: Mutex<Vec<Instant>>,
    acks: Mutex<Vec<Ack>>,
    failed: Mutex<Vec<String>>,
    /// The producer's librdkafka warnings and idempotence lines.
    client_log: Mutex<Vec<String>>,
}

struct LedgerContext(Arc<Ledger>);

impl ClientContext for LedgerContext {
    /// Keeps librdkafka's lines for failure reports: its warnings and, the producer being
    /// made with `debug=eos` and the debug log level (rust-rdkafka's level follows the `log`
    /// crate's, which no logger raises here), its idempotence lines (drains, epoch bumps,
    /// sequence errors).
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        self.0
            .client_log
            .lock()
            .unwrap()
            .push(format!("{level:?} {fac}: {log_message}"));
    }
}

impl ProducerContext for LedgerContext {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, (): ()) {
        match result {
            Ok(m) => {
                let value = String::from_utf8(m.payload().unwrap().to_vec()).unwrap();
                self.0.acks.lock().unwrap().push(Ack {
                    value,
                    partition: m.partition(),
                    offset: m.offset(),
                    at: Instant::now(),
                });
            }
            Err((e, m)) => {
                let value = String::from_utf8_lossy(m.payload().unwrap_or_default());
                self.0.failed.lock().unwrap().push(format!("{value}: {e}"));
            }
        }
    }
}

/// What the continuous reader saw: (partition, offset) → value, and any offset it saw with
/// two different values.
#[derive(Default)]
struct Seen {
    records: Mutex<BTreeMap<(i32, i64), String>>,
    conflicts: Mutex<Vec<String>>,
}

/// Sends `v{n}` to partition n % 2 until `stop`, keeping at most a few hundred unacknowledged;
/// returns how many it sent.
fn produce_until(
    producer: &ThreadedProducer<LedgerContext>,
    ledger: &Ledger,
    stop: &AtomicBool,
) -> u64 {
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        if producer.in_flight_count() > 300 {
            std::thread::sleep(Duration::from_millis(5));
            continue;
        }
        let value = format!("v{n:07}");
        let partition = i32::try_from(n % 2).unwrap();
        let record = BaseRecord::<(), _>::to(TOPIC)
            .partition(partition)
            .payload(&value);
        ledger.sent.lock().unwrap().push(Instant::now());
        match producer.send(record) {
            Ok(()) => n += 1,
            Err((e, _)) => panic!("{value} not queued: {e}"),
        }
        std::thread::sleep(Duration::from_millis(6));
    }
    producer.flush(Duration::from_secs(90)).unwrap();
    n
}

/// Reads both partitions from the start until `stop`, recording every record into `seen`.
fn read_until(bootstrap: &str, seen: &Seen, stop: &AtomicBool) {
    let reader = consumer(bootstrap);
    let mut assignment = TopicPartitionList::new();
    for p in 0..2 {
        assignment
            .add_partition_offset(TOPIC, p, Offset::Beginning)
            .unwrap();
    }
    reader.assign(&assignment).unwrap();
    while !stop.load(Ordering::Relaxed) {
        if let Some(Ok(m)) = reader.poll(Duration::from_millis(100)) {
            let value = String::from_utf8(m.payload().unwrap().to_vec()).unwrap();
            let key = (m.partition(), m.offset());
            let mut records = seen.records.lock().unwrap();
            match records.get(&key) {
                Some(old) if *old != value => seen
                    .conflicts
                    .lock()
                    .unwrap()
                    .push(format!("{}/{}: read {old} then {value}", key.0, key.1)),
                Some(_) => {}
                None => {
                    records.insert(key, value);
                }
            }
        }
    }
}

/// Reads both partitions from offset 0 up to the high watermarks (bounded): (partition,
/// offset, value) in order of arrival.
fn read_all(bootstrap: &str) -> (Vec<(i32, i64, String)>, [i64; 2]) {
    let reader = consumer(bootstrap);
    let mut ends = [0i64; 2];
    for p in 0..2 {
        ends[p as usize] = reader
            .fetch_watermarks(TOPIC, p, Duration::from_secs(10))
            .unwrap()
            .1;
    }
    let mut assignment = TopicPartitionList::new();
    for p in 0..2 {
        assignment
            .add_partition_offset(TOPIC, p, Offset::Beginning)
            .unwrap();
    }
    reader.assign(&assignment).unwrap();
    let mut next = [0i64; 2];
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while (next[0] < ends[0] || next[1] < ends[1]) && Instant::now() < deadline {
        if let Some(Ok(m)) = reader.poll(Duration::from_millis(200)) {
            let value = String::from_utf8(m.payload().unwrap().to_vec()).unwrap();
            let p = m.partition() as usize;
            next[p] = next[p].max(m.offset() + 1);
            out.push((m.partition(), m.offset(), value));
        }
    }
    (out, ends)
}

/// Checks that hold at any time: no offset acknowledged or read with two values, no value
/// acknowledged twice, and the producer never told of a sequence gap (librdkafka's ERRSEQ: it
/// then bumps its epoch and sends again, under the new one, every batch whose outcome it could
/// not tell, and a stored one is stored twice; a leader refuses a batch behind one it refused
/// instead, `headwater_raft::node` `propose`).
fn check_running(ledger: &Ledger, seen: &Seen, after: &str) {
    {
        let log = ledger.client_log.lock().unwrap();
        assert!(
            !log.iter().any(|line| line.contains("ERRSEQ")),
            "after {after}: the producer was told of a sequence gap; its librdkafka log:\n{}",
            log.join("\n")
        );
    }
    let conflicts = seen.conflicts.lock().unwrap().clone();
    assert!(conflicts.is_empty(), "after {after}: {conflicts:?}");
    let acks = ledger.acks.lock().unwrap();
    let mut at: HashMap<(i32, i64), &str> = HashMap::new();
    let mut values = HashSet::new();
    for ack in acks.iter() {
        assert!(
            values.insert(&ack.value),
            "after {after}: {} acknowledged twice",
            ack.value
        );
        if let Some(other) = at.insert((ack.partition, ack.offset), &ack.value) {
            panic!(
                "after {after}: {}/{} acknowledged for {other} and {}",
                ack.partition, ack.offset, ack.value
            );
        }
    }
    let records = seen.records.lock().unwrap();
    let mut read_at: HashMap<&str, (i32, i64)> = HashMap::new();
    for (&(p, offset), value) in records.iter() {
        if let Some(first) = read_at.insert(value, (p, offset)) {
            let acked: Vec<_> = acks.iter().filter(|a| a.value == *value).collect();
            panic!(
                "after {after}: {value} read at {first:?} and at {p}/{offset}: a duplicate \
                 (acknowledged: {acked:?}); the producer's librdkafka log:\n{}",
                ledger.client_log.lock().unwrap().join("\n")
            );
        }
    }
    for ack in acks.iter() {
        if let Some(read) = records.get(&(ack.partition, ack.offset)) {
            assert_eq!(
                read, &ack.value,
                "after {after}: {}/{} acknowledged for {} but read as {read}",
                ack.partition, ack.offset, ack.value
            );
        }
    }
}

/// The first acknowledgement on `partition` of a record sent after `since`, when there is one.
fn acks_since(ledger: &Ledger, partition: i32, since: Instant) -> Option<Instant> {
    let sent = ledger.sent.lock().unwrap();
    ledger
        .acks
        .lock()
        .unwrap()
        .iter()
        .filter(|a| a.partition == partition && sent[sent_index(&a.value)] > since)
        .map(|a| a.at)
        .min()
}

/// `n` of a value `v{n}`.
fn sent_index(value: &str) -> usize {
    value[1..].parse().unwrap()
}

/// Waits (bounded) for an acknowledgement on each partition after `since`.
fn wait_progress(cluster: &FaultCluster, ledger: &Ledger, since: Instant, after: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while (0..2).any(|p| acks_since(ledger, p, since).is_none()) {
        assert!(
            Instant::now() < deadline,
            "after {after}: no acknowledgement on both partitions within 30 s (failed: {:?}):\n{}",
            ledger
                .failed
                .lock()
                .unwrap()
                .iter()
                .take(5)
                .collect::<Vec<_>>(),
            cluster.stderr()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn acknowledged_records_survive_fifty_faults_on_proxied_links() {
    fault_suite(&LOOP_FAULTS, 50);
}

/// Leaders killed while another election is under way, alone.
#[test]
fn acknowledged_records_survive_kills_during_elections() {
    fault_suite(&[FaultKind::KillDuringElection], 30);
}

/// A follower whose newest segments lost their last (acknowledged) bytes rejoins: the leader
/// re-replicates what it lost (until `allow_log_reversion` was set, openraft panicked the
/// leader's group on seeing the shorter log, and the partition stopped).
#[test]
fn a_follower_with_a_truncated_tail_rejoins() {
    fault_suite(&[FaultKind::TruncatedTail], 6);
}

/// Runs at least `faults` faults drawn from `kinds` (seeded by `REPLICATION_FAULT_SEED`, a fixed
/// seed by default) against three proxied nodes under a producer and a reader, checking the
/// ledger after each and everything at the end.
fn fault_suite(kinds: &[FaultKind], fault_count: usize) {
    let seed = std::env::var("REPLICATION_FAULT_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20_261_204u64);
    eprintln!("fault suite seed {seed} (REPLICATION_FAULT_SEED to replay)");
    let mut rng = Rng::new(seed);
    let started = Instant::now();
    let mut cluster = FaultCluster::new();
    for id in IDS {
        cluster.start(id);
    }
    assert!(
        cluster.wait_healthy(Duration::from_secs(60)),
        "the cluster never became healthy:\n{}",
        cluster.stderr()
    );

    let ledger = Arc::new(Ledger::default());
    let seen = Arc::new(Seen::default());
    let stop = Arc::new(AtomicBool::new(false));
    let producer: ThreadedProducer<LedgerContext> = ClientConfig::new()
        .set("bootstrap.servers", cluster.bootstrap())
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .set("message.timeout.ms", "120000")
        .set("linger.ms", "5")
        .set("topic.metadata.refresh.interval.ms", "500")
        .set("retry.backoff.ms", "50")
        .set("retry.backoff.max.ms", "200")
        .set("debug", "eos")
        .set_log_level(RDKafkaLogLevel::Debug)
        .create_with_context(LedgerContext(Arc::clone(&ledger)))
        .unwrap();
    let producing = {
        let stop = Arc::clone(&stop);
        let ledger = Arc::clone(&ledger);
        std::thread::spawn(move || produce_until(&producer, &ledger, &stop))
    };
    let reading = {
        let (seen, stop, bootstrap) = (Arc::clone(&seen), Arc::clone(&stop), cluster.bootstrap());
        std::thread::spawn(move || read_until(&bootstrap, &seen, &stop))
    };
    wait_progress(&cluster, &ledger, started, "start");

    let mut counts: BTreeMap<FaultKind, usize> = BTreeMap::new();
    // Each leader kill: the partition and when.
    let mut kills: Vec<(usize, Instant)> = Vec::new();
    let mut faults = 0;
    let election = Duration::from_secs(30);
    while faults < fault_count {
        let kind = rng.pick(kinds);
        let partition = usize::try_from(rng.below(2)).unwrap();
        let leader = cluster.wait_leader(partition, &IDS, None, election);
        let others: Vec<u64> = IDS.iter().copied().filter(|&id| id != leader).collect();
        let label = format!("fault {faults} ({kind:?}, partition {partition}, leader {leader})");
        let fault_at = Instant::now();
        match kind {
            FaultKind::KillLeader => {
                cluster.kill(leader);
                cluster.wait_leader(partition, &others, Some(leader), election);
                cluster.start(leader);
                kills.push((partition, fault_at));
                faults += 1;
            }
            FaultKind::KillFollower
            | FaultKind::KillRandom
            | FaultKind::TornWrite
            | FaultKind::TruncatedTail
            | FaultKind::WipedDisk => {
                let victim = if kind == FaultKind::KillRandom {
                    rng.pick(&IDS)
                } else if kind == FaultKind::WipedDisk {
                    // Node 1 (which bootstraps pristine groups) and the other partition's
                    // leader included.
                    rng.pick(&others)
                } else {
                    let other = 1 - partition;
                    let other_leader = cluster.wait_leader(other, &IDS, None, election);
                    let followers: Vec<u64> = others
                        .iter()
                        .copied()
                        .filter(|&id| id != other_leader)
                        .collect();
                    if followers.is_empty() {
                        others[0]
                    } else {
                        rng.pick(&followers)
                    }
                };
                cluster.kill(victim);
                std::thread::sleep(Duration::from_millis(rng.below(300)));
                match kind {
                    FaultKind::TornWrite => {
                        let torn = cluster.tear_write(victim, &mut rng);
                        eprintln!("{label}: node {victim}, bytes left of a torn write: {torn:?}");
                    }
                    FaultKind::TruncatedTail => {
                        let torn = cluster.tear_tail(victim, &mut rng);
                        eprintln!("{label}: node {victim}, bytes cut off: {torn:?}");
                    }
                    FaultKind::WipedDisk => {
                        std::fs::remove_dir_all(cluster.data(victim)).unwrap();
                        eprintln!("{label}: node {victim} wiped");
                    }
                    _ => {}
                }
                cluster.start(victim);
                faults += 1;
            }
            FaultKind::IsolateLeaderCut | FaultKind::IsolateLeaderBlackhole => {
                let fault = if kind == FaultKind::IsolateLeaderCut {
                    Fault::Cut
                } else {
                    Fault::Blackhole
                };
                cluster.isolate(leader, fault);
                cluster.wait_leader(partition, &others, Some(leader), election);
                std::thread::sleep(Duration::from_millis(rng.below(500)));
                cluster.heal();
                faults += 1;
            }
            FaultKind::Delay => {
                let delay = Duration::from_millis(10 + rng.below(140));
                let node = rng.pick(&[0, 1, 2, 3]);
                for (&(from, to), proxy) in &cluster.proxies {
                    if node == 0 || from == node || to == node {
                        proxy.set(Fault::Delay(delay));
                    }
                }
                std::thread::sleep(Duration::from_millis(600 + rng.below(700)));
                cluster.heal();
                faults += 1;
            }
            FaultKind::KillDuringElection => {
                cluster.kill(leader);
                cluster.start(leader);
                let second = rng.pick(&others);
                cluster.kill(second);
                let rest: Vec<u64> = IDS.iter().copied().filter(|&id| id != second).collect();
                cluster.wait_leader(partition, &rest, None, election);
                cluster.start(second);
                faults += 2;
            }
        }
        *counts.entry(kind).or_default() += 1;
        assert!(
            cluster.wait_healthy(Duration::from_secs(30)),
            "after {label}: not every node in sync within 30 s:\n{}",
            cluster.stderr()
        );
        let healed = Instant::now();
        wait_progress(&cluster, &ledger, healed, &label);
        check_running(&ledger, &seen, &label);
        eprintln!(
            "{label}: done in {:?}, {} acknowledged so far",
            fault_at.elapsed(),
            ledger.acks.lock().unwrap().len()
        );
    }

    stop.store(true, Ordering::Relaxed);
    let sent = producing.join().unwrap();
    reading.join().unwrap();
    let failed = ledger.failed.lock().unwrap().clone();
    assert!(failed.is_empty(), "deliveries failed: {failed:?}");
    check_running(&ledger, &seen, "the last fault");

    // Everything is read back from offset 0 to the high watermark.
    let (read, ends) = read_all(&cluster.bootstrap());
    let mut log: BTreeMap<(i32, i64), &str> = BTreeMap::new();
    for (p, offset, value) in &read {
        if let Some(old) = log.insert((*p, *offset), value) {
            assert_eq!(old, value, "{p}/{offset} read back with two values");
        }
    }
    for p in 0..2 {
        let offsets: Vec<i64> = log.keys().filter(|k| k.0 == p).map(|k| k.1).collect();
        let expected: Vec<i64> = (0..ends[p as usize]).collect();
        assert_eq!(
            offsets, expected,
            "partition {p}: dense offsets from 0 to the end"
        );
    }
    let mut values: HashMap<&str, (i32, i64)> = HashMap::new();
    for (&(p, offset), value) in &log {
        assert!(
            value.starts_with('v') && value[1..].parse::<u64>().unwrap() < sent,
            "{p}/{offset}: {value} was never sent"
        );
        if let Some(first) = values.insert(value, (p, offset)) {
            panic!(
                "{value} at {first:?} and at {p}/{offset}: a duplicate; the producer's \
                 librdkafka log:\n{}",
                ledger.client_log.lock().unwrap().join("\n")
            );
        }
    }
    let acks = ledger.acks.lock().unwrap().clone();
    for ack in &acks {
        assert_eq!(
            values.get(ack.value.as_str()),
            Some(&(ack.partition, ack.offset)),
            "{} acknowledged at {}/{}",
            ack.value,
            ack.partition,
            ack.offset
        );
    }
    for ((p, offset), value) in seen.records.lock().unwrap().iter() {
        assert_eq!(
            log.get(&(*p, *offset)).copied(),
            Some(value.as_str()),
            "{p}/{offset} was read as {value} during the run and later vanished or changed"
        );
    }

    let mut gaps: Vec<Duration> = kills
        .iter()
        .filter_map(|&(p, at)| acks_since(&ledger, p as i32, at).map(|first| first - at))
        .collect();
    gaps.sort();
    let ms = |d: Duration| d.as_millis();
    eprintln!(
        "fault suite: seed {seed}, {faults} faults {counts:?} in {:?}; {sent} sent, {} acknowledged, \
         {} read back ({} + {} offsets)",
        started.elapsed(),
        acks.len(),
        log.len(),
        ends[0],
        ends[1]
    );
    if !gaps.is_empty() {
        eprintln!(
            "produce gap after a leader kill (kill to the first acknowledgement on the partition of a \
             record sent after the kill) over {} \
             kills: min {} ms, median {} ms, max {} ms",
            gaps.len(),
            ms(gaps[0]),
            ms(gaps[gaps.len() / 2]),
            ms(gaps[gaps.len() - 1])
        );
    }
    drop(cluster);
}
