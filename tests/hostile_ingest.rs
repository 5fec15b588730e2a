//! Hostile ingest against the real `headwater serve`, sent as a real client would (reqwest over
//! HTTP/1.1 and, for gRPC, HTTP/2 with hand-built frames): every request below used to make the
//! server allocate far more than it received. Each test asserts the answer (status and reason),
//! the server's peak resident set size (`VmHWM`) under a stated bound, and that a normal batch
//! still goes through afterwards.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails by panicking

mod common;

use std::process::Command;

use common::ingest_client::IngestClient;
use common::payloads::{
    OTLP_EXPORT, PAYLOAD, PUBLISH, empty_elements_bomb, field, grpc_frame, gzip, otlp_export,
    proto_event, sha256_hex, tiny_elements_bodies,
};
use common::{Headwater, Listener, peak_rss_bytes};
use reqwest::StatusCode;
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_headwater");
const KEY: &str = "hostile-test-key";
const MIB: u64 = 1024 * 1024;

/// The peak RSS every hostile request here must stay under. A fresh debug `headwater serve`
/// that took one normal batch peaks at about 56 MiB; bounded, the requests below peak at 60 to
/// 140 MiB (the inflated 20 MiB body and its buffers). Before, they took it to 3.7 GiB (gRPC,
/// 10M empty events), 372 MiB (10M tiny JSON elements), 675 MiB (a 4 MiB OTLP resource over 100
/// records) and 1.9 GiB (OTLP, 10M empty `resource_logs`) (measured).
const RSS_BOUND: u64 = 200 * MIB;

/// `headwater serve` with one API key, its ports on 127.0.0.1:0, data in a temporary directory.
struct Server {
    process: Headwater,
    client: IngestClient,
    _dir: tempfile::TempDir,
}

impl Server {
    fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let config = format!(
            "data_dir: {data}\ngateway:\n  listen: 127.0.0.1:0\n  auth:\n    keys:\n      - {{tenant: acme, sha256: {key}}}\nlog:\n  kafka_listen: 127.0.0.1:0\n",
            data = dir.path().join("data").display(),
            key = sha256_hex(KEY),
        );
        let file = dir.path().join("headwater.yaml");
        std::fs::write(&file, config).unwrap();
        let mut command = Command::new(BIN);
        command
            .arg("--config")
            .arg(&file)
            .arg("serve")
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .env_remove("HEADWATER_CONFIG");
        let mut process = Headwater::spawn("serve", command);
        let client = IngestClient::new(process.addr(Listener::Ingest), KEY);
        Self {
            process,
            client,
            _dir: dir,
        }
    }

    fn peak_rss(&self) -> u64 {
        peak_rss_bytes(self.process.child.id())
    }

    /// Fails with the server's stderr when its peak RSS is over [`RSS_BOUND`].
    fn assert_rss_bounded(&self, what: &str) -> u64 {
        let peak = self.peak_rss();
        eprintln!("{what}: peak RSS {} MiB", peak / MIB);
        assert!(
            peak < RSS_BOUND,
            "{what}: peak RSS {} MiB is over the bound of {} MiB",
            peak / MIB,
            RSS_BOUND / MIB
        );
        peak
    }

    /// `POST /v1/events` with the key.
    async fn post_events(
        &self,
        content_type: &str,
        encoding: Option<&str>,
        body: Vec<u8>,
    ) -> (StatusCode, Value) {
        self.client.post_events(content_type, encoding, body).await
    }

    async fn post(
        &self,
        path: &str,
        content_type: &str,
        encoding: Option<&str>,
        body: Vec<u8>,
    ) -> (StatusCode, Value) {
        self.client.post(path, content_type, encoding, body).await
    }

    /// A normal JSON batch of one valid event is accepted.
    async fn assert_normal_batch_works(&self) {
        let body = br#"[{"type":"playback.start","source":"tv-1","payload":{"title_id":"t","position_ms":1}}]"#;
        let (status, answer) = self
            .post_events("application/json", None, body.to_vec())
            .await;
        assert_eq!(status, StatusCode::OK, "{answer}");
        assert_eq!(answer["accepted"], 1, "{answer}");
    }

    /// A unary gRPC call with one message frame (see [`IngestClient::grpc`]).
    async fn grpc(
        &self,
        path: &str,
        key: Option<&str>,
        frame: Vec<u8>,
        gzip: bool,
    ) -> (String, String, Vec<u8>) {
        self.client.grpc(path, key, frame, gzip).await
    }
}

/// Class 1: a ~20 KiB gzip frame of `0a 00` × 10M (10M empty events once decoded) is refused
/// before it is decoded without a key, and at `max_events_per_batch` with one; memory stays flat.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_bomb_of_empty_events_is_refused_before_it_is_decoded() {
    let server = Server::start();
    server.assert_normal_batch_works().await;
    let fresh = server.peak_rss();
    eprintln!("fresh server: peak RSS {} MiB", fresh / MIB);
    let bomb = empty_elements_bomb(10_000_000);
    assert!(bomb.len() < 64 * 1024, "the bomb is {} bytes", bomb.len());
    let frame = grpc_frame(true, &bomb);
    let publish = PUBLISH;

    let (status, message, _) = server.grpc(publish, None, frame.clone(), true).await;
    assert_eq!(status, "16", "UNAUTHENTICATED: {message}");
    assert!(message.contains("missing API key"), "{message}");
    server.assert_rss_bounded("gRPC bomb without a key");

    let (status, message, _) = server.grpc(publish, Some(KEY), frame, true).await;
    assert_eq!(status, "8", "RESOURCE_EXHAUSTED: {message}");
    assert!(message.contains("over the limit of 10000"), "{message}");
    server.assert_rss_bounded("gRPC bomb with a key");

    // The same service still takes a normal batch.
    let batch = field(
        1,
        &proto_event("g1", "playback.start", "tv-1", PAYLOAD, &[]),
    );
    let (status, message, body) = server
        .grpc(publish, Some(KEY), grpc_frame(false, &batch), false)
        .await;
    assert!(status.is_empty() || status == "0", "{status} {message}");
    // One frame holding PublishResponse { accepted: 1 }.
    assert_eq!(body, [0, 0, 0, 0, 2, 0x08, 0x01], "{message}");
    server.assert_normal_batch_works().await;
}

/// Class 2: JSON and NDJSON bodies of 10M tiny elements (20 MB, ~20 KiB gzipped), each a
/// reference once decoded, are refused at `max_events_per_batch` having kept no more than that.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_bodies_of_millions_of_tiny_elements_are_refused_at_the_limit() {
    let server = Server::start();
    server.assert_normal_batch_works().await;
    for (content_type, body) in tiny_elements_bodies(10_000_000) {
        assert!(body.len() < 64 * 1024, "the body is {} bytes", body.len());
        let (status, answer) = server.post_events(content_type, Some("gzip"), body).await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{answer}");
        let reason = answer["error"].as_str().unwrap();
        assert_eq!(
            reason, "batch of 10000000 events is over the limit of 10000",
            "{content_type}"
        );
        server.assert_rss_bounded(&format!("10M tiny elements as {content_type}"));
    }
    server.assert_normal_batch_works().await;
}

/// Class 3: OTLP copies the resource into every record. A 4 MiB resource attribute with 100
/// records (400 MiB of copies) is refused with 413 before any record is built, over HTTP and
/// gRPC; an export of 10M empty `resource_logs` (a ~20 KiB gzip frame that decodes to over
/// 1 GiB) is refused before it is decoded. Normal exports still go through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn otlp_requests_that_expand_past_their_budget_are_refused() {
    let server = Server::start();
    server.assert_normal_batch_works().await;
    let copies = otlp_export(4 << 20, 100);
    let (status, answer) = server
        .post(
            "/v1/logs",
            "application/x-protobuf",
            Some("gzip"),
            gzip(&copies),
        )
        .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{answer}");
    let reason = answer["error"].as_str().unwrap();
    assert!(
        reason.starts_with("request expands to more than 20971520 bytes of events")
            && reason.contains("copy of its resource"),
        "{reason}"
    );
    server.assert_rss_bounded("OTLP/HTTP 4 MiB resource x 100 records");

    let export = OTLP_EXPORT;
    let frame = grpc_frame(true, &gzip(&copies));
    let (status, message, _) = server.grpc(export, Some(KEY), frame, true).await;
    assert_eq!(status, "8", "RESOURCE_EXHAUSTED: {message}");
    assert!(message.contains("copy of its resource"), "{message}");
    server.assert_rss_bounded("OTLP gRPC 4 MiB resource x 100 records");

    let bomb = empty_elements_bomb(10_000_000);
    let frame = grpc_frame(true, &bomb);
    let (status, message, _) = server.grpc(export, None, frame.clone(), true).await;
    assert_eq!(status, "16", "UNAUTHENTICATED: {message}");
    let (status, message, _) = server.grpc(export, Some(KEY), frame, true).await;
    assert_eq!(status, "8", "RESOURCE_EXHAUSTED: {message}");
    assert!(message.contains("once decoded"), "{message}");
    let (status, answer) = server
        .post("/v1/logs", "application/x-protobuf", Some("gzip"), bomb)
        .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{answer}");
    server.assert_rss_bounded("OTLP 10M empty resource_logs");

    // Within the budget: 1 KiB of resource in each of 100 records.
    let normal = otlp_export(1024, 100);
    let (status, answer) = server
        .post("/v1/logs", "application/x-protobuf", None, normal.clone())
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let (status, message, body) = server
        .grpc(export, Some(KEY), grpc_frame(false, &normal), false)
        .await;
    assert!(status.is_empty() || status == "0", "{status} {message}");
    // An empty ExportLogsServiceResponse: every record accepted.
    assert_eq!(body, [0, 0, 0, 0, 0], "{message}");
    server.assert_normal_batch_works().await;
}

/// Class 11: envelope fields are bounded; an event with an oversized `source` (1.1 MB, which
/// made its record too large for the log and the whole batch answer 503), `id` or `type`, or
/// too many attributes, is rejected with its index and reason, and the rest of the batch is
/// accepted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_envelope_fields_reject_their_event_only() {
    let server = Server::start();
    let event = |id: &str, event_type: &str, source: &str| {
        serde_json::json!({"id": id, "type": event_type, "source": source,
            "payload": {"title_id": "t", "position_ms": 1}})
    };
    let huge = "s".repeat(1_100_000);
    let batch = serde_json::json!([
        event("ok-1", "playback.start", "tv-1"),
        event("big-source", "playback.start", &huge),
        event(&"i".repeat(129), "playback.start", "tv-1"),
        event("big-type", &"t".repeat(129), "tv-1"),
        event("ok-2", "playback.start", "tv-2"),
    ]);
    let body = serde_json::to_vec(&batch).unwrap();
    let (status, answer) = server.post_events("application/json", None, body).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["accepted"], 2, "{answer}");
    assert_eq!(answer["rejected"], 3, "{answer}");
    let errors = answer["errors"].as_array().unwrap();
    let reasons: Vec<(u64, &str)> = errors
        .iter()
        .map(|e| (e["index"].as_u64().unwrap(), e["reason"].as_str().unwrap()))
        .collect();
    assert_eq!(
        reasons,
        [
            (
                1,
                "`source` of 1100000 bytes is over the limit of 256 bytes"
            ),
            (2, "`id` of 129 bytes is over the limit of 128 bytes"),
            (3, "`type` of 129 bytes is over the limit of 128 bytes"),
        ]
    );

    // Protobuf attributes (record headers `hw.attr.*`): at most 64 per event, 8 KiB in all.
    let keys: Vec<String> = (0..65).map(|i| format!("k{i}")).collect();
    let many: Vec<(&str, &str)> = keys.iter().map(|k| (k.as_str(), "v")).collect();
    let long = "v".repeat(9000);
    let mut batch = Vec::new();
    batch.extend(field(
        1,
        &proto_event("p1", "playback.start", "tv-1", PAYLOAD, &many),
    ));
    batch.extend(field(
        1,
        &proto_event("p2", "playback.start", "tv-1", PAYLOAD, &[("k", &long)]),
    ));
    batch.extend(field(
        1,
        &proto_event("p3", "playback.start", "tv-1", PAYLOAD, &many[..64]),
    ));
    let (status, answer) = server
        .post_events("application/x-protobuf", None, batch)
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["accepted"], 1, "{answer}");
    assert_eq!(answer["errors"][0]["index"], 0, "{answer}");
    assert_eq!(
        answer["errors"][0]["reason"], "65 attributes are over the limit of 64",
        "{answer}"
    );
    assert_eq!(answer["errors"][1]["index"], 1, "{answer}");
    assert_eq!(
        answer["errors"][1]["reason"], "attributes of 9001 bytes are over the limit of 8192 bytes",
        "{answer}"
    );
    server.assert_rss_bounded("oversized envelope fields");
    server.assert_normal_batch_works().await;
}
