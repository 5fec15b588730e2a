//! Black-box tests of the `headwater` binary: configuration checks, parts not built yet, and
//! `serve` answering health, readiness and metrics, then stopping cleanly on SIGTERM.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails by panicking

mod common;

use common::{Headwater, Listener};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_headwater");

fn headwater(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env_remove("HEADWATER_CONFIG")
        .output()
        .expect("run headwater")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn config_check_prints_the_effective_configuration() {
    let out = headwater(&["config", "check", "config/headwater.yaml"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("listen: 127.0.0.1:8080"), "{stdout}");
    assert!(stdout.contains("kafka_listen: 127.0.0.1:9092"), "{stdout}");
}

#[test]
fn config_check_applies_env_overrides() {
    let out = Command::new(BIN)
        .args(["config", "check", "config/headwater.yaml"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("HEADWATER_GATEWAY__LISTEN", "127.0.0.1:18080")
        .output()
        .expect("run headwater");
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("listen: 127.0.0.1:18080"));
}

#[test]
fn config_check_lists_every_error_with_path_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.yaml");
    std::fs::write(
        &file,
        "gateway:\n  listen: 127.0.0.1:8080\n  limits:\n    max_body_bytes: big\nlog:\n  flush:\n    mode: sometimes\nunknown_key: 1\n",
    )
    .unwrap();
    let out = headwater(&["config", "check", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("3 problem(s)"), "{stderr}");
    assert!(
        stderr.contains("gateway.limits.max_body_bytes: invalid type: string \"big\", expected an integer at line 4"),
        "{stderr}"
    );
    assert!(
        stderr.contains("log.flush.mode: unknown variant `sometimes`"),
        "{stderr}"
    );
    assert!(stderr.contains("at line 7"), "{stderr}");
    assert!(stderr.contains("unknown field `unknown_key`"), "{stderr}");
    assert!(stderr.contains("at line 8"), "{stderr}");
}

#[test]
fn config_check_explains_a_wrong_cluster() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("cluster.yaml");
    std::fs::write(
        &file,
        "log:\n  cluster:\n    node_id: 4\n    nodes:\n      - { id: 1, replication: \"10.0.0.1:9101\", kafka: \"10.0.0.1:9092\" }\n      - { id: 1, replication: \"somewhere\", kafka: \"127.0.0.1\" }\n      - { id: 3000000000, replication: \"log-2.example:9101\", kafka: \"127.0.0.1:9092\" }\n    listen: \"0.0.0.0:9101\"\n    election_timeout_ms: [500, 400]\n",
    )
    .unwrap();
    let out = headwater(&["config", "check", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    for expected in [
        "log.cluster.election_timeout_ms: [500, 400]: min at least 300 (three heartbeats) and \
         below max",
        "log.cluster.nodes[0].replication: 10.0.0.1:9101 is not a loopback address: without \
         log.cluster.tls peers are not authenticated",
        "log.cluster.nodes[1].id: 1 is 0 or not unique",
        "log.cluster.nodes[2].id: 3000000000 is above 2147483647",
        "log.cluster.nodes[2].replication: `log-2.example:9101` is not a socket address (ip:port)",
        "log.cluster.listen: 0.0.0.0:9101 is not a loopback address",
        "log.cluster.nodes[1].replication: `somewhere` is not a socket address",
        "log.cluster.nodes[1].kafka: `127.0.0.1` is not host:port",
        "log.cluster.node_id: 4 is not one of log.cluster.nodes",
    ] {
        assert!(
            stderr.contains(expected),
            "missing `{expected}` in:\n{stderr}"
        );
    }
}

/// With mutual TLS between log nodes, replication addresses may be host names and the node
/// may listen on every interface (a Kubernetes StatefulSet's pods).
#[test]
fn config_check_takes_a_cluster_over_tls_by_host_name() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("cluster.yaml");
    let nodes: String = (0..3)
        .map(|i| {
            format!(
                "      - {{ id: {}, replication: \"log-{i}.log.ns.svc:9101\", kafka: \"log-{i}.log.ns.svc:9092\" }}\n",
                i + 1
            )
        })
        .collect();
    std::fs::write(
        &file,
        format!(
            "log:\n  cluster:\n    listen: \"0.0.0.0:9101\"\n    tls: {{ cert_file: /tls/tls.crt, key_file: /tls/tls.key, ca_file: /tls/ca.crt }}\n    nodes:\n{nodes}"
        ),
    )
    .unwrap();
    let out = headwater(&["config", "check", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
}

#[test]
fn a_log_node_of_a_cluster_without_its_id_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("cluster.yaml");
    std::fs::write(
        &file,
        "log:\n  cluster:\n    nodes:\n      - { id: 1, replication: \"127.0.0.1:0\", kafka: \"127.0.0.1:9092\" }\n",
    )
    .unwrap();
    let data = dir.path().join("data");
    let out = headwater(&[
        "log-node",
        "--config",
        file.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
        "--kafka-listen",
        "127.0.0.1:0",
        "--data-dir",
        data.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("give this node's id with --node-id"),
        "{stderr}"
    );
}

#[test]
fn serve_refuses_an_otlp_request_type_without_a_schema() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let out = Command::new(BIN)
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--kafka-listen",
            "127.0.0.1:0",
        ])
        .arg("--data-dir")
        .arg(&data)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env_remove("HEADWATER_CONFIG")
        .env("HEADWATER_GATEWAY__OTLP_REQUEST_TYPE", "no.such.type")
        .output()
        .expect("run headwater");
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("gateway.otlp_request_type: no schema in schemas/events registers the type `no.such.type`"),
        "{stderr}"
    );
}

#[test]
fn config_check_of_a_missing_file_says_so() {
    let out = headwater(&["config", "check", "/nonexistent/headwater.yaml"]);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("cannot read config file /nonexistent/headwater.yaml"));
}

#[test]
fn gateway_and_router_refuse_a_bad_log_client_config() {
    for part in ["gateway", "router"] {
        let out = Command::new(BIN)
            .arg(part)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .env_remove("HEADWATER_CONFIG")
            .env("HEADWATER_LOG__CLIENT__BROKERS", "nohost")
            .env("HEADWATER_LOG__CLIENT__PROPERTIES__ACKS", "0")
            .output()
            .expect("run headwater");
        assert_eq!(out.status.code(), Some(2), "{part}");
        let stderr = text(&out.stderr);
        assert!(stderr.contains("log.client.brokers"), "{part}: {stderr}");
        assert!(
            stderr.contains("log.client.properties.acks"),
            "{part}: {stderr}"
        );
    }
}

#[test]
fn schemas_check_lists_the_shipped_schemas_and_every_problem_of_a_broken_dir() {
    let out = headwater(&["schemas", "check", "schemas/events"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("playback.start v1 (json, topic events, backward)"),
        "{stdout}"
    );
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("a.thing.v1.schema.json"),
        "{\n  \"type\": \"object\",\n  oops\n}",
    )
    .unwrap();
    std::fs::write(dir.path().join("BadName.json"), "{}").unwrap();
    let out = headwater(&["schemas", "check", dir.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("a.thing.v1.schema.json:3:"), "{stderr}");
    assert!(stderr.contains("BadName.json"), "{stderr}");
    assert!(stderr.contains("2 problem(s)"), "{stderr}");
}

#[test]
fn routes_check_accepts_the_shipped_routes_and_explains_a_broken_file() {
    let out = headwater(&["routes", "check", "config/routes.yaml"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("1 route(s), no problems"));
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("routes.yaml");
    std::fs::write(
        &file,
        "routes:\n  - name: a\n    source: {topics: [events]}\n    filter: {field: payload.x, matches: \"(\"}\n    sinks:\n      - {type: s3, compression: brotli}\n  - name: a\n    source: {topics: [events]}\n    sinks: []\n",
    )
    .unwrap();
    let out = headwater(&["routes", "check", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    let lines: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("routes.yaml:"))
        .collect();
    assert!(
        lines.len() >= 4,
        "regex, sink, duplicate name, empty sinks: {stderr}"
    );
    assert!(stderr.contains("routes.yaml:4:"), "{stderr}");
    assert!(stderr.contains("routes.yaml:6:"), "{stderr}");
}

#[test]
fn serve_refuses_a_bad_flag_value() {
    let out = headwater(&["serve", "--listen", "nowhere"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains(
            "gateway.listen: `nowhere` is not a socket address (host:port) (from --listen)"
        )
    );
}

/// A `headwater serve` on ports of its own choosing (`127.0.0.1:0`), killed when dropped.
struct Server {
    process: Headwater,
    addr: SocketAddr,
    base: String,
}

async fn start_serve(data_dir: &Path) -> Server {
    let mut command = Command::new(BIN);
    command
        .args(["serve", "--listen", "127.0.0.1:0"])
        .args(["--kafka-listen", "127.0.0.1:0"])
        .arg("--data-dir")
        .arg(data_dir)
        .current_dir(env!("CARGO_MANIFEST_DIR"));
    let mut process = Headwater::spawn("serve", command);
    let kafka = process.report(Listener::Kafka);
    assert_eq!(
        kafka.get("advertised"),
        kafka.get("kafka"),
        "Kafka clients are told the bound address, not port 0"
    );
    let addr = process.addr(Listener::Ingest);
    let server = Server {
        process,
        addr,
        base: format!("http://{addr}"),
    };
    // Bound before it was reported: the connection waits in the backlog if need be.
    match reqwest::get(format!("{}/healthz", server.base)).await {
        Ok(response) => assert_eq!(response.status(), 200),
        Err(e) => panic!("/healthz: {e}; stderr:\n{}", server.process.stderr()),
    }
    server
}

#[tokio::test]
async fn serve_answers_health_readiness_and_metrics_then_stops_on_sigterm() {
    let data = tempfile::tempdir().unwrap();
    let mut server = start_serve(data.path()).await;

    let ready = reqwest::get(format!("{}/readyz", server.base))
        .await
        .unwrap();
    assert_eq!(ready.status(), 200);
    let metrics = reqwest::get(format!("{}/metrics", server.base))
        .await
        .unwrap();
    assert_eq!(metrics.status(), 200);
    let body = metrics.text().await.unwrap();
    assert!(body.contains("headwater_build_info"), "{body}");
    assert!(body.contains("headwater_http_requests_total"), "{body}");
    assert!(
        body.contains("headwater_http_request_duration_seconds_bucket"),
        "{body}"
    );

    let pid = nix::unistd::Pid::from_raw(server.process.child.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = server.process.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "serve did not stop within 20 s of SIGTERM; stderr:\n{}",
            server.process.stderr()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(
        status.success(),
        "exit status after SIGTERM: {status}; stderr:\n{}",
        server.process.stderr()
    );
    // Nothing accepts on the port the child itself bound and reported, now that it has exited
    // (no other process shares its sockets: they are close-on-exec). This cannot pass because
    // of another test's server: one that got this port since would accept, and fail the check.
    let connect = std::net::TcpStream::connect_timeout(&server.addr, Duration::from_secs(5));
    assert!(
        matches!(&connect, Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused),
        "still accepting after shutdown: {connect:?}"
    );
}

#[tokio::test]
async fn events_acknowledged_by_serve_survive_kill_9() {
    let data = tempfile::tempdir().unwrap();
    let mut server = start_serve(data.path()).await;
    let client = reqwest::Client::new();
    let mut acknowledged = Vec::new();
    for batch in 0..20 {
        let events: Vec<serde_json::Value> = (0..50)
            .map(|i| {
                serde_json::json!({
                    "id": format!("b{batch}-e{i}"), "type": "playback.start", "source": format!("tv-{}", i % 7),
                    "payload": {"title_id": format!("t{i}"), "position_ms": i}
                })
            })
            .collect();
        let response = client
            .post(format!("{}/v1/events", server.base))
            .json(&events)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let answer: serde_json::Value = response.json().await.unwrap();
        assert_eq!(answer["accepted"], 50, "{answer}");
        acknowledged.extend(events.iter().map(|e| e["id"].as_str().unwrap().to_owned()));
    }
    server.process.child.kill().unwrap(); // SIGKILL: no flush, no goodbye
    server.process.child.wait().unwrap();

    let engine = headwater_log::LogEngine::open(
        &data.path().join("log"),
        headwater_log::LogConfig::default(),
    )
    .expect("recovery after kill -9");
    use headwater_log::Log;
    let mut found = std::collections::HashSet::new();
    for partition in 0..engine.partitions("events").await.unwrap() as i32 {
        let end = engine
            .offsets("events", partition)
            .await
            .unwrap()
            .high_watermark;
        let mut offset = 0;
        while offset < end {
            let records = engine
                .read(
                    "events",
                    partition,
                    offset,
                    1 << 20,
                    Duration::from_millis(10),
                )
                .await
                .unwrap();
            for record in &records {
                let id = record.headers.iter().find(|h| h.key == "hw.id").unwrap();
                found.insert(String::from_utf8(id.value.clone().unwrap().to_vec()).unwrap());
            }
            offset = records.last().map_or(end, |r| r.offset + 1);
        }
    }
    let lost: Vec<&String> = acknowledged
        .iter()
        .filter(|id| !found.contains(*id))
        .collect();
    assert!(
        lost.is_empty(),
        "{} acknowledged events lost after kill -9: {:?}",
        lost.len(),
        &lost[..lost.len().min(5)]
    );
    assert_eq!(found.len(), acknowledged.len());
}

#[tokio::test]
async fn serve_is_not_ready_when_the_data_dir_cannot_be_written() {
    let data = tempfile::tempdir().unwrap();
    let server = start_serve(data.path()).await;
    // Replace the data dir by a file: the probe's write fails even as root.
    std::fs::remove_dir_all(data.path()).unwrap();
    std::fs::write(data.path(), b"not a directory").unwrap();
    let ready = reqwest::get(format!("{}/readyz", server.base))
        .await
        .unwrap();
    assert_eq!(ready.status(), 503);
    assert!(ready.headers().contains_key("retry-after"));
    let body = ready.text().await.unwrap();
    assert!(body.contains("probing the data directory"), "{body}");
    assert!(body.contains("Not a directory"), "{body}");
    std::fs::remove_file(data.path()).unwrap();
    std::fs::create_dir(data.path()).unwrap();
}

#[test]
fn serve_exits_when_its_http_port_is_taken_instead_of_hanging() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let data = tempfile::tempdir().unwrap();
    let mut child = Command::new(BIN)
        .args(["serve", "--listen", &addr, "--kafka-listen", "127.0.0.1:0"])
        .arg("--data-dir")
        .arg(data.path())
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            child.kill().unwrap();
            panic!("headwater serve kept running with its HTTP port taken");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(stderr.contains("binding gateway.listen"), "{stderr}");
}
