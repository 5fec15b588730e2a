//! Headwater as separate processes: `headwater log-node`, `headwater gateway` appending to it
//! over the Kafka protocol, and two `headwater router` replicas splitting a route's partitions
//! through its consumer group; one replica is killed (SIGKILL) mid-run and the other takes
//! its partitions over. Every event posted reaches the downstream topic (read back with
//! rdkafka), with its envelope headers. The same flow runs over an open log node, over one
//! that requires SASL/SCRAM-SHA-512 over TLS from its service principals (where a router
//! with a wrong password gets nothing), and over Apache Kafka.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails by panicking

mod common;

use common::{Headwater, Listener, metric};
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Headers;
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};

const BIN: &str = env!("CARGO_BIN_EXE_headwater");

/// A `headwater` process on ports of its own choosing, killed when dropped.
struct Part {
    process: Headwater,
    /// Where it serves /healthz and /metrics (and ingest, for the gateway).
    ops: String,
    name: &'static str,
}

impl Part {
    /// Starts `headwater <args> --listen 127.0.0.1:0` with `brokers` as `log.client.brokers`
    /// and waits until it reports `listener` (the one on `--listen`).
    fn start(
        name: &'static str,
        args: &[&str],
        brokers: Option<&str>,
        dir: &Path,
        listener: Listener,
    ) -> Part {
        let mut process = Headwater::spawn(name, command(name, args, brokers, dir));
        let ops = process.addr(listener).to_string();
        Part { process, ops, name }
    }

    async fn wait_healthy(&mut self, http: &reqwest::Client) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Some(status) = self.process.child.try_wait().unwrap() {
                panic!("{} exited with {status}: {}", self.name, self.stderr());
            }
            let url = format!("http://{}/healthz", self.ops);
            if let Ok(r) = http.get(&url).send().await
                && r.status().is_success()
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("{} not healthy within 60 s: {}", self.name, self.stderr());
    }

    fn stderr(&self) -> String {
        self.process.stderr()
    }

    /// The value of `headwater_router_tasks{route="copy"}` in /metrics.
    async fn tasks(&self, http: &reqwest::Client) -> Option<u32> {
        let tasks = common::metric(http, &self.ops, "headwater_router_tasks{route=\"copy\"}").await;
        tasks.map(|v| v as u32)
    }
}

/// `headwater <args> --listen 127.0.0.1:0 --data-dir <dir>/<name>-data`, with `brokers` as
/// `log.client.brokers`.
fn command(name: &str, args: &[&str], brokers: Option<&str>, dir: &Path) -> Command {
    let mut command = Command::new(BIN);
    command
        .args(args)
        .args(["--listen", "127.0.0.1:0"])
        .arg("--data-dir")
        .arg(dir.join(format!("{name}-data")))
        .current_dir(env!("CARGO_MANIFEST_DIR"));
    if let Some(brokers) = brokers {
        command.env("HEADWATER_LOG__CLIENT__BROKERS", brokers);
    }
    command
}

/// Posts `n` valid events with ids `{tag}-{i}`; the gateway answers 200 with all accepted.
async fn post(http: &reqwest::Client, gateway: &str, tag: &str, n: usize) -> Vec<String> {
    let ids: Vec<String> = (0..n).map(|i| format!("{tag}-{i}")).collect();
    for chunk in ids.chunks(50) {
        let events = common::playback_events(chunk);
        let r = http
            .post(format!("http://{gateway}/v1/events"))
            .json(&events)
            .send()
            .await
            .unwrap();
        let status = r.status();
        let body = r.text().await.unwrap();
        assert_eq!(status, 200, "{body}");
        assert!(
            body.contains(&format!("\"accepted\":{}", chunk.len())),
            "{body}"
        );
    }
    ids
}

/// Every `hw.id` in `topic` (all partitions, from the start) with how often it occurs, read
/// as `access.reader` until `want` are all seen or 60 s pass.
fn read_ids(
    brokers: &str,
    access: &Access,
    topic: &str,
    want: &HashSet<String>,
) -> HashMap<String, usize> {
    let mut config = ClientConfig::new();
    for (key, value) in &access.reader {
        config.set(key, value);
    }
    let consumer: BaseConsumer = config
        .set("bootstrap.servers", brokers)
        .set("group.id", "cluster-test-reader")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let md = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .unwrap();
    let partitions = md.topics()[0].partitions().len() as i32;
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&tpl).unwrap();
    let mut seen: HashMap<String, usize> = HashMap::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !want.iter().all(|id| seen.contains_key(id)) && Instant::now() < deadline {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(200)) {
            let headers = m.headers().expect("envelope headers");
            let id = headers
                .iter()
                .find(|h| h.key == "hw.id")
                .and_then(|h| h.value)
                .expect("hw.id header");
            assert!(headers.iter().any(|h| h.key == "hw.type"));
            *seen
                .entry(String::from_utf8(id.to_vec()).unwrap())
                .or_default() += 1;
        }
    }
    seen
}

/// Waits until the routers' `copy` tasks are `want` (one entry per router, `None` = ignored).
async fn wait_tasks(http: &reqwest::Client, routers: &[&Part], want: &[u32]) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let mut got = Vec::new();
        for r in routers {
            got.push(r.tasks(http).await.unwrap_or(0));
        }
        if got == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "router tasks {got:?}, wanted {want:?}; logs:\n{}",
            routers
                .iter()
                .map(|r| r.stderr())
                .collect::<Vec<_>>()
                .join("\n----\n")
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// How the gateway, the routers and the test's own reader reach the log.
#[derive(Default)]
struct Access {
    /// Configuration file of the gateway (`--config`), holding its `log.client`; none: the
    /// built-in defaults, unauthenticated.
    gateway: Option<PathBuf>,
    /// Configuration file of the routers, likewise.
    router: Option<PathBuf>,
    /// librdkafka properties of the reader that checks what arrived.
    reader: Vec<(String, String)>,
}

impl Access {
    /// `args` after `--config <file>` when `file` is set.
    fn args<'a>(file: Option<&'a PathBuf>, args: &[&'a str]) -> Vec<&'a str> {
        let config = file.map(|f| ["--config", f.to_str().unwrap()]);
        config
            .into_iter()
            .flatten()
            .chain(args.iter().copied())
            .collect()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_and_router_replicas_over_a_log_node() {
    let dir = tempfile::tempdir().unwrap();
    let http = reqwest::Client::new();
    let mut node = Part::start(
        "log-node",
        &["log-node", "--kafka-listen", "127.0.0.1:0"],
        None,
        dir.path(),
        Listener::Ops,
    );
    let kafka = node.process.addr(Listener::Kafka).to_string();
    node.wait_healthy(&http).await;
    replicas(&http, &kafka, dir.path(), "node", &Access::default()).await;
    drop(node);
}

/// The passwords of the secured log node's principals (the node stores only their SCRAM
/// credentials).
const GATEWAY_PASSWORD: &str = "gateway-secret";
const ROUTER_PASSWORD: &str = "router-secret";
const OPS_PASSWORD: &str = "ops-secret";

/// The log node's configuration: TLS, SASL with SCRAM-SHA-512 only, and three principals
/// (docs/OPERATIONS.md, "A secure three-process setup", shows the same).
fn secured_node_config(pki: &Path) -> String {
    let credential = |password| common::scram_credential("SCRAM-SHA-512", password);
    format!(
        r#"log:
  kafka_listen: 127.0.0.1:0
  kafka_tls:
    cert_file: {cert}
    key_file: {key}
  kafka_sasl:
    enabled: true
    mechanisms: [SCRAM-SHA-512]
  principals:
    - name: gateway
      role: service
      scram_sha512: "{gateway}"
    - name: router
      role: service
      scram_sha512: "{router}"
    - name: ops
      role: operator
      scram_sha512: "{ops}"
"#,
        cert = pki.join("server.pem").display(),
        key = pki.join("server.key").display(),
        gateway = credential(GATEWAY_PASSWORD),
        router = credential(ROUTER_PASSWORD),
        ops = credential(OPS_PASSWORD),
    )
}

/// librdkafka properties for `user` with `password`: SASL_SSL, SCRAM-SHA-512, the test CA.
fn scram_properties(pki: &Path, user: &str, password: &str) -> Vec<(String, String)> {
    [
        ("security.protocol", "SASL_SSL"),
        ("sasl.mechanisms", "SCRAM-SHA-512"),
        ("sasl.username", user),
        ("sasl.password", password),
        ("ssl.ca.location", &pki.join("ca.pem").display().to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

/// Writes `<dir>/<name>.yaml` with `log.client` reaching `brokers` as `properties`.
fn client_config(
    dir: &Path,
    name: &str,
    brokers: &str,
    properties: &[(String, String)],
) -> PathBuf {
    let mut yaml = format!("log:\n  client:\n    brokers: {brokers}\n    properties:\n");
    for (key, value) in properties {
        yaml.push_str(&format!("      {key}: \"{value}\"\n"));
    }
    let file = dir.join(format!("{name}.yaml"));
    std::fs::write(&file, yaml).unwrap();
    file
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_and_router_replicas_over_a_log_node_with_scram_and_tls() {
    let dir = tempfile::tempdir().unwrap();
    let http = reqwest::Client::new();
    let pki = dir.path().join("pki");
    std::fs::create_dir(&pki).unwrap();
    headwater_testing::Pki::generate(&pki, "unused-client").unwrap();
    let node_config = dir.path().join("log-node.yaml");
    std::fs::write(&node_config, secured_node_config(&pki)).unwrap();
    let node_args = Access::args(Some(&node_config), &["log-node"]);
    let mut node = Part::start("log-node", &node_args, None, dir.path(), Listener::Ops);
    let kafka = node.process.addr(Listener::Kafka).to_string();
    node.wait_healthy(&http).await;

    // A router with a wrong password: its clients are refused at the SASL exchange, so it
    // never joins `router.copy.members` (the good replicas below split the partitions
    // between themselves alone) and reads nothing.
    let wrong = scram_properties(&pki, "router", "not-the-password");
    let wrong = client_config(dir.path(), "intruder", &kafka, &wrong);
    let routes = write_routes(dir.path());
    let intruder_args = Access::args(Some(&wrong), &["router", "--routes", &routes]);
    let intruder = Headwater::spawn(
        "intruder",
        command("intruder", &intruder_args, None, dir.path()),
    );

    let access = Access {
        gateway: Some(client_config(
            dir.path(),
            "gateway",
            &kafka,
            &scram_properties(&pki, "gateway", GATEWAY_PASSWORD),
        )),
        router: Some(client_config(
            dir.path(),
            "router",
            &kafka,
            &scram_properties(&pki, "router", ROUTER_PASSWORD),
        )),
        reader: scram_properties(&pki, "ops", OPS_PASSWORD),
    };
    let logs = replicas(&http, &kafka, dir.path(), "secured", &access).await;

    let refused = "SASL authentication error: Authentication failed: invalid username or password";
    assert!(
        intruder.wait_for_stderr(refused, Duration::from_secs(30)),
        "the intruder's log names the refusal:\n{}",
        intruder.stderr()
    );
    let failures = "headwater_log_kafka_auth_failures_total{stage=\"sasl\"}";
    let failures = metric(&http, &node.ops, failures).await;
    assert!(failures.is_some_and(|n| n >= 1.0), "{failures:?}");
    // The services were never refused by an ACL.
    let denied = metric(&http, &node.ops, "headwater_log_kafka_denied_total{").await;
    assert_eq!(
        denied,
        None,
        "services denied; log node:\n{}",
        node.stderr()
    );
    for (name, log) in logs.iter().chain([&("intruder", intruder.stderr())]) {
        for password in [GATEWAY_PASSWORD, ROUTER_PASSWORD, "not-the-password"] {
            assert!(!log.contains(password), "{name} printed a password:\n{log}");
        }
    }
    drop(node);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_and_router_replicas_over_apache_kafka() {
    let dir = tempfile::tempdir().unwrap();
    let http = reqwest::Client::new();
    let kafka = common::service("HEADWATER_TEST_KAFKA");
    let run = common::unique("kafka");
    replicas(&http, &kafka, dir.path(), &run, &Access::default()).await;
}

/// Writes the routes file: one route `copy` from `events` to the topic `events.copy`. Batches
/// stay open 3 s, so the `first` events are still in router-a's open batches when router-b
/// joins and the rebalance moves half of their partitions.
fn write_routes(dir: &Path) -> String {
    let routes = dir.join("routes.yaml");
    std::fs::write(
        &routes,
        "routes:\n  - name: copy\n    source: {topics: [events]}\n    batch: {max_age_ms: 3000}\n    sinks:\n      - {type: topic, topic: events.copy}\n",
    )
    .unwrap();
    routes.to_str().unwrap().to_owned()
}

/// Gateway + two routers over `kafka`, reached as `access` says; ids are prefixed with `run`
/// (a shared broker keeps earlier runs' events). Returns each process's log (name, stderr).
async fn replicas(
    http: &reqwest::Client,
    kafka: &str,
    dir: &Path,
    run: &str,
    access: &Access,
) -> Vec<(&'static str, String)> {
    let http = http.clone();
    let gateway_args = Access::args(access.gateway.as_ref(), &["gateway"]);
    let mut gateway = Part::start("gateway", &gateway_args, Some(kafka), dir, Listener::Ingest);
    gateway.wait_healthy(&http).await;
    let mut ids = post(&http, &gateway.ops, &format!("{run}-first"), 200).await;

    let routes = write_routes(dir);
    let router = Access::args(access.router.as_ref(), &["router", "--routes", &routes]);
    let mut a = Part::start("router-a", &router, Some(kafka), dir, Listener::Ops);
    a.wait_healthy(&http).await;
    let mut b = Part::start("router-b", &router, Some(kafka), dir, Listener::Ops);
    b.wait_healthy(&http).await;
    // `events` has 4 partitions (auto-created by the gateway): 2 each.
    wait_tasks(&http, &[&a, &b], &[2, 2]).await;
    ids.extend(post(&http, &gateway.ops, &format!("{run}-second"), 200).await);

    // A replica dies without a word: the other gets its partitions after the session timeout.
    a.process.child.kill().unwrap();
    a.process.child.wait().unwrap();
    ids.extend(post(&http, &gateway.ops, &format!("{run}-third"), 200).await);
    wait_tasks(&http, &[&b], &[4]).await;
    ids.extend(post(&http, &gateway.ops, &format!("{run}-fourth"), 200).await);

    let want: HashSet<String> = ids.into_iter().collect();
    // Both topics at once, on threads of their own (rdkafka blocks).
    let (seen, source) = tokio::task::block_in_place(|| {
        std::thread::scope(|s| {
            let copy = s.spawn(|| read_ids(kafka, access, "events.copy", &want));
            let source = s.spawn(|| read_ids(kafka, access, "events", &want));
            (copy.join().unwrap(), source.join().unwrap())
        })
    });
    let missing: Vec<_> = want.iter().filter(|id| !seen.contains_key(*id)).collect();
    assert!(
        missing.is_empty(),
        "{} of {} events missing downstream, e.g. {:?}; router-b log:\n{}",
        missing.len(),
        want.len(),
        &missing[..missing.len().min(10)],
        b.stderr()
    );
    // Before the kill, partitions only moved by a rebalance that waited for their owner to
    // deliver and commit: each of those events went downstream exactly once. (After the
    // SIGKILL, batches the dead replica had sent but not committed are sent again.)
    let first = format!("{run}-first-");
    let doubled: Vec<_> = seen
        .iter()
        .filter(|(id, n)| id.starts_with(&first) && **n != 1)
        .collect();
    assert!(
        doubled.is_empty(),
        "sent twice across a clean handover: {doubled:?}"
    );
    // The events themselves are in the log, read through the Kafka protocol.
    let ours: HashSet<String> = source
        .into_iter()
        .filter(|(id, n)| {
            assert_eq!(*n, 1, "{id} appended {n} times");
            id.starts_with(&format!("{run}-"))
        })
        .map(|(id, _)| id)
        .collect();
    assert_eq!(ours, want, "exactly the posted events in `events`");
    vec![
        ("gateway", gateway.stderr()),
        ("router-a", a.stderr()),
        ("router-b", b.stderr()),
    ]
}
