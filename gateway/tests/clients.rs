//! Clients no one here wrote: the OpenTelemetry Python SDK's OTLP/HTTP log exporter, Python
//! `requests`, and curl with gzip, each posting to a served gateway; the events are read back
//! through the `Log` trait with envelope headers and payload bytes intact.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails by panicking

mod common;

use std::io::Write;
use std::process::Command;

use common::{TestGateway, header};
use headwater_gateway::GatewayConfig;

fn python() -> String {
    std::env::var("HEADWATER_TEST_PYTHON").unwrap_or_else(|_| {
        panic!(
            "HEADWATER_TEST_PYTHON is not set: this test needs the venv from scripts/install-deps. \
             Run `scripts/services start && . target/services/env.sh` first, or run scripts/test"
        )
    })
}

fn run(command: &mut Command) -> String {
    let output = command.output().expect("spawn client");
    assert!(
        output.status.success(),
        "client failed: {}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[tokio::test]
async fn the_opentelemetry_python_exporter_sends_logs_that_arrive_as_events() {
    let gw = TestGateway::start_with_shipped_schemas(GatewayConfig::default()).await;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/clients/otel_logs.py");
    let endpoint = gw.url("/v1/logs");
    let out =
        tokio::task::spawn_blocking(move || run(Command::new(python()).arg(script).arg(endpoint)))
            .await
            .unwrap();
    assert!(out.contains("exported"), "{out}");
    let records = gw.records("events").await;
    assert_eq!(records.len(), 3, "three log records, three events");
    let mut bodies = Vec::new();
    for record in &records {
        assert_eq!(header(record, "hw.type").as_deref(), Some("otel.log"));
        assert_eq!(record.key.as_deref(), Some(&b"tv-otel-1"[..]));
        let payload: serde_json::Value =
            serde_json::from_slice(record.value.as_ref().unwrap()).unwrap();
        assert_eq!(payload["resource"]["service.name"], "player");
        bodies.push(payload["body"].as_str().unwrap().to_owned());
    }
    bodies.sort();
    assert_eq!(bodies, ["buffering", "decoder failed", "player started"]);
    gw.stop().await;
}

#[tokio::test]
async fn python_requests_posts_a_batch_that_reads_back_byte_for_byte() {
    let gw = TestGateway::start_with_shipped_schemas(GatewayConfig::default()).await;
    let code = r#"
import json, sys, requests
body = '[{"id":"py-1","type":"playback.start","source":"tv-py","payload":{"title_id":"t-py","position_ms":7}}]'
r = requests.post(sys.argv[1], data=body, headers={"Content-Type": "application/json"}, timeout=10)
print(r.status_code, r.text)
"#;
    let url = gw.url("/v1/events");
    let out = tokio::task::spawn_blocking(move || {
        run(Command::new(python()).arg("-c").arg(code).arg(url))
    })
    .await
    .unwrap();
    assert!(out.starts_with("200 "), "{out}");
    assert!(out.contains(r#""accepted":1"#), "{out}");
    let records = gw.records("events").await;
    assert_eq!(records.len(), 1);
    assert_eq!(header(&records[0], "hw.id").as_deref(), Some("py-1"));
    assert!(
        header(&records[0], "hw.user_agent")
            .unwrap()
            .starts_with("python-requests")
    );
    assert_eq!(
        records[0].value.as_deref(),
        Some(&br#"{"title_id":"t-py","position_ms":7}"#[..])
    );
    gw.stop().await;
}

#[tokio::test]
async fn curl_posts_gzip_ndjson() {
    let gw = TestGateway::start_with_shipped_schemas(GatewayConfig::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("events.ndjson.gz");
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    for i in 0..100 {
        writeln!(
            gz,
            r#"{{"id":"c-{i}","type":"playback.start","source":"tv-{}","payload":{{"title_id":"t","position_ms":{i}}}}}"#,
            i % 5
        )
        .unwrap();
    }
    std::fs::write(&file, gz.finish().unwrap()).unwrap();
    let url = gw.url("/v1/events");
    let out = tokio::task::spawn_blocking(move || {
        run(Command::new("curl")
            .args([
                "-sS",
                "--fail-with-body",
                "-H",
                "Content-Type: application/x-ndjson",
            ])
            .args(["-H", "Content-Encoding: gzip", "--data-binary"])
            .arg(format!("@{}", file.display()))
            .arg(url))
    })
    .await
    .unwrap();
    assert!(out.contains(r#""accepted":100"#), "{out}");
    assert_eq!(gw.records("events").await.len(), 100);
    gw.stop().await;
}
