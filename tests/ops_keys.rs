//! Black-box tests of the `headwater` binary: `gateway.auth.ops_keys` guards `/metrics` of every
//! part, `log-node` and `router` included (their ops port, `gateway.listen`), while `/healthz`
//! and `/readyz` stay open for probes.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails by panicking

mod common;

use std::path::Path;
use std::process::Command;

use common::{Headwater, Listener};
use reqwest::StatusCode;

const BIN: &str = env!("CARGO_BIN_EXE_headwater");

/// The ops key, and its SHA-256 (`printf %s ops-key-for-tests | sha256sum`) as configured.
const OPS_KEY: &str = "ops-key-for-tests";
const CONFIG: &str = "\
gateway:
  auth:
    ops_keys: [612888d5d2372cc5cc9d1bc748a66f3e064b50a8289bbf6cc74779fad159c936]
";

/// `headwater <args>` with the ops-key configuration, its ops port on 127.0.0.1:0.
fn start(name: &str, args: &[&str], dir: &Path, brokers: Option<&str>) -> Headwater {
    let config = dir.join("headwater.yaml");
    std::fs::write(&config, CONFIG).unwrap();
    let mut command = Command::new(BIN);
    command
        .args(args)
        .arg("--config")
        .arg(&config)
        .args(["--listen", "127.0.0.1:0"])
        .arg("--data-dir")
        .arg(dir.join(format!("{name}-data")))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env_remove("HEADWATER_CONFIG");
    if let Some(brokers) = brokers {
        command.env("HEADWATER_LOG__CLIENT__BROKERS", brokers);
    }
    Headwater::spawn(name, command)
}

/// `/metrics` answers 401 without a key and with a wrong one, 200 with the ops key (either
/// header); `/healthz` answers without a key.
async fn assert_metrics_guarded(http: &reqwest::Client, part: &mut Headwater, name: &str) {
    let ops = part.addr(Listener::Ops);
    let metrics = format!("http://{ops}/metrics");
    let status = |r: reqwest::Response| r.status();
    let bare = http.get(&metrics).send().await.map(status).unwrap();
    assert_eq!(bare, StatusCode::UNAUTHORIZED, "{name}: no key");
    let wrong = http.get(&metrics).bearer_auth("not-the-key");
    let wrong = wrong.send().await.map(status).unwrap();
    assert_eq!(wrong, StatusCode::UNAUTHORIZED, "{name}: wrong key");
    let bearer = http.get(&metrics).bearer_auth(OPS_KEY);
    let bearer = bearer.send().await.map(status).unwrap();
    assert_eq!(bearer, StatusCode::OK, "{name}: bearer ops key");
    let header = http.get(&metrics).header("x-api-key", OPS_KEY);
    let header = header.send().await.map(status).unwrap();
    assert_eq!(header, StatusCode::OK, "{name}: x-api-key ops key");
    let health = http.get(format!("http://{ops}/healthz")).send().await;
    assert_eq!(health.map(status).unwrap(), StatusCode::OK, "{name}: probe");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ops_keys_guard_metrics_of_log_node_and_router() {
    let dir = tempfile::tempdir().unwrap();
    let http = reqwest::Client::new();
    let mut node = start(
        "log-node",
        &["log-node", "--kafka-listen", "127.0.0.1:0"],
        dir.path(),
        None,
    );
    let kafka = node.addr(Listener::Kafka).to_string();
    assert_metrics_guarded(&http, &mut node, "log-node").await;

    let routes = dir.path().join("routes.yaml");
    std::fs::write(
        &routes,
        "routes:\n  - name: copy\n    source: {topics: [events]}\n    sinks:\n      - {type: topic, topic: events.copy}\n",
    )
    .unwrap();
    let routes = routes.to_str().unwrap();
    let mut router = start(
        "router",
        &["router", "--routes", routes],
        dir.path(),
        Some(&kafka),
    );
    assert_metrics_guarded(&http, &mut router, "router").await;
}
