//! Three `headwater log-node` processes as one cluster (`log.cluster`, loopback only), each
//! node's addresses chosen before any starts; nodes are started, killed (SIGKILL) and restarted
//! on their data directories by id. Used by tests/replication.rs and
//! tests/cluster_replicated.rs.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::{Headwater, Listener};

pub(crate) use headwater_testing::ports::free_port;

/// Spawns `headwater log-node --config <config> --node-id <id>` serving Kafka on `kafka`, its
/// data in `data`, and waits until it reports its Kafka listener.
pub(crate) fn log_node(config: &Path, id: u64, kafka: &str, data: &Path) -> Headwater {
    let mut command = Command::new(env!("CARGO_BIN_EXE_headwater"));
    command
        .arg("log-node")
        .arg("--config")
        .arg(config)
        .args(["--node-id", &id.to_string()])
        .args(["--listen", "127.0.0.1:0", "--kafka-listen", kafka])
        .arg("--data-dir")
        .arg(data)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env_remove("HEADWATER_CONFIG");
    let mut node = Headwater::spawn(&format!("log-node-{id}"), command);
    node.addr(Listener::Kafka);
    node
}

/// The cluster: a shared configuration file, each node's Kafka address, and the running nodes.
pub(crate) struct Cluster {
    pub config: PathBuf,
    /// Kafka address of every node, running or not.
    pub kafka: BTreeMap<u64, String>,
    pub root: tempfile::TempDir,
    pub nodes: BTreeMap<u64, Headwater>,
}

impl Cluster {
    /// Nodes 1–3 on loopback addresses, `flush.mode: every_append`, replicating `topics`
    /// (name, partitions) — the topics of `log.topics`, the only ones a cluster has. None is
    /// started yet.
    pub(crate) fn new(topics: &[(&str, u32)]) -> Self {
        Self::build(topics, false)
    }

    /// Likewise, the nodes knowing each other by host name (`localhost`) over mutual TLS
    /// (`log.cluster.tls`, a private CA's certificate for `localhost` on every node).
    pub(crate) fn over_tls(topics: &[(&str, u32)]) -> Self {
        Self::build(topics, true)
    }

    fn build(topics: &[(&str, u32)], tls: bool) -> Self {
        let root = tempfile::tempdir().expect("a temporary directory");
        let tls_yaml = if tls {
            let dir = root.path().join("pki");
            std::fs::create_dir_all(&dir).expect("create the pki directory");
            let pki = headwater_testing::pki::Pki::generate(&dir, "unused").expect("a test PKI");
            let file = |name: &str| pki.file(name).display().to_string();
            format!(
                "    tls: {{ cert_file: \"{}\", key_file: \"{}\", ca_file: \"{}\" }}\n",
                file("server.pem"),
                file("server.key"),
                file("ca.pem")
            )
        } else {
            String::new()
        };
        let host = if tls { "localhost" } else { "127.0.0.1" };
        let mut kafka = BTreeMap::new();
        let mut nodes_yaml = String::new();
        for id in 1..=3u64 {
            let k = format!("127.0.0.1:{}", free_port());
            let r = format!("{host}:{}", free_port());
            nodes_yaml.push_str(&format!(
                "      - {{ id: {id}, replication: \"{r}\", kafka: \"{k}\" }}\n"
            ));
            kafka.insert(id, k);
        }
        let topics_yaml: String = topics
            .iter()
            .map(|(name, partitions)| format!("    {name}: {{ partitions: {partitions} }}\n"))
            .collect();
        let config = root.path().join("headwater.yaml");
        std::fs::write(
            &config,
            format!(
                "log:\n  flush: {{ mode: every_append }}\n  topics:\n{topics_yaml}  cluster:\n    id: replication-test\n{tls_yaml}    nodes:\n{nodes_yaml}"
            ),
        )
        .expect("write the cluster configuration");
        Self {
            config,
            kafka,
            root,
            nodes: BTreeMap::new(),
        }
    }

    /// Node `id`'s data directory.
    pub(crate) fn data(&self, id: u64) -> PathBuf {
        self.root.path().join(format!("node-{id}"))
    }

    /// Starts node `id` (on its data directory, kept across restarts) and waits until it
    /// reports its Kafka listener.
    pub(crate) fn start(&mut self, id: u64) {
        let node = log_node(&self.config, id, &self.kafka[&id], &self.data(id));
        self.nodes.insert(id, node);
    }

    /// Kills node `id` with SIGKILL and reaps it.
    pub(crate) fn kill(&mut self, id: u64) {
        let mut node = self.nodes.remove(&id).expect("a running node");
        node.child.kill().expect("SIGKILL the node");
        node.child.wait().expect("reap the node");
    }

    /// Every node's Kafka address (running or not), comma-separated.
    pub(crate) fn bootstrap(&self) -> String {
        self.kafka.values().cloned().collect::<Vec<_>>().join(",")
    }

    /// The running nodes' logs, each under a `--- node N` line.
    pub(crate) fn stderr(&self) -> String {
        self.nodes
            .iter()
            .map(|(id, n)| format!("--- node {id}\n{}", n.stderr()))
            .collect()
    }
}
