//! The abuse run of issue 14: one `headwater serve` on its default limits takes every hostile
//! class a client can send, all at once, each from its own task with bounded loops, while a
//! well-behaved producer posts events and a prober asks `/healthz` at a steady cadence. Then:
//! every acknowledged event is read back through the Kafka port, every probe must have been
//! answered 200 in time, the server's peak RSS (`VmHWM`) must stay under 1 GiB, and a table of
//! each class, the answer it got and the peak RSS so far is printed.
//!
//! `ABUSE_PROFILE=quick` (default, what `cargo test` runs) sends each class at least once;
//! `ABUSE_PROFILE=full` sends more and longer (`scripts/abuse`, against the release binary).
//! `HEADWATER_BIN` runs another `headwater` binary (the test removes it from the child's
//! environment, where it would be read as a configuration key).
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails by panicking

#[path = "common/abuse_http.rs"]
mod abuse_http;
#[path = "common/abuse_kafka.rs"]
mod abuse_kafka;
#[path = "common/abuse_report.rs"]
mod abuse_report;
mod common;

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use abuse_report::Report;
use bytes::Bytes;
use common::kafka_wire::{Wire, batches};
use common::payloads::sha256_hex;
use common::{Headwater, Listener, peak_rss_bytes};
use headwater_log::batch::decode_records;
use reqwest::StatusCode;

const MIB: u64 = 1024 * 1024;
/// The bound of issue 14: the server's peak RSS under all the classes at once.
const RSS_BOUND: u64 = 1024 * MIB;
/// The abusers' API key (tenant `acme`) and the well-behaved producer's (tenant `good`): rate
/// limits are per key, so the abuse cannot rate-limit the producer.
pub(crate) const KEY: &str = "abuse-key";
const GOOD_KEY: &str = "good-key";
/// How long a `/healthz` probe may take, and the cadence of the probes.
const PROBE_WITHIN: Duration = Duration::from_secs(5);
const PROBE_EVERY: Duration = Duration::from_millis(200);
/// Events per batch of the well-behaved producer, and the cadence of its batches.
const GOOD_BATCH: usize = 20;
const GOOD_EVERY: Duration = Duration::from_millis(25);

/// How much of each class to send.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Profile {
    pub name: &'static str,
    /// Rounds of each ingest class (gRPC bombs, tiny elements, OTLP, envelope fields).
    pub ingest_rounds: usize,
    /// Addresses flooding the HTTP port, each with its cap of 1,000 connections and 10 more.
    pub http_addresses: usize,
    /// How long the idle h2c connection is watched for its close (`None`: held to the end).
    pub idle_h2c_wait: Option<Duration>,
    /// Request methods `M1…` and event types `abuse.tN` sent.
    pub methods: usize,
    pub types: usize,
    /// Kafka connections declaring 100 MiB frames from one address (the cap is 256), and
    /// connections sending a whole 100 MiB frame.
    pub declared_frames: usize,
    pub whole_frames: usize,
    /// Batches of 8 × 512 KiB produced to the fetched topic (over 50 MiB from 13).
    pub fetch_batches: usize,
    /// Consumers holding a 50 MiB Fetch answer unread.
    pub unread_fetches: usize,
    /// JoinGroups with 1000 KiB of metadata each.
    pub join_groups: usize,
    /// New topic names asked for in Metadata (auto-created up to `log.max_topics`, 1,000).
    pub metadata_topics: usize,
    /// OffsetCommit entries of one request.
    pub offset_entries: i32,
    /// Inflated sizes of the lz4, gzip and zstd bombs; whether to send a 1 GiB lz4 bomb too.
    pub lz4_bomb: usize,
    pub deflate_bomb: usize,
    pub gib_bomb: bool,
    /// Most batches the well-behaved producer sends.
    pub good_batches: usize,
}

impl Profile {
    fn from_env() -> Self {
        let name = std::env::var("ABUSE_PROFILE").unwrap_or_else(|_| "quick".to_owned());
        match name.as_str() {
            "quick" | "" => QUICK,
            "full" => FULL,
            other => panic!("ABUSE_PROFILE={other}: quick or full"),
        }
    }
}

const QUICK: Profile = Profile {
    name: "quick",
    ingest_rounds: 1,
    http_addresses: 1,
    idle_h2c_wait: None,
    methods: 200,
    types: 150,
    declared_frames: 256,
    whole_frames: 3,
    fetch_batches: 13,
    unread_fetches: 6,
    join_groups: 150,
    metadata_topics: 100,
    offset_entries: 100_000,
    lz4_bomb: 64 << 20,
    deflate_bomb: 32 << 20,
    gib_bomb: false,
    good_batches: 4_000,
};

const FULL: Profile = Profile {
    name: "full",
    ingest_rounds: 5,
    http_addresses: 3,
    idle_h2c_wait: Some(Duration::from_secs(120)),
    methods: 1_000,
    types: 300,
    declared_frames: 256,
    whole_frames: 12,
    fetch_batches: 15,
    unread_fetches: 20,
    join_groups: 600,
    metadata_topics: 1_100,
    offset_entries: 1_000_000,
    lz4_bomb: 200 << 20,
    deflate_bomb: 100 << 20,
    gib_bomb: true,
    good_batches: 20_000,
};

/// The server under abuse and what the classes need to reach it.
pub(crate) struct Target {
    pub ingest: SocketAddr,
    pub kafka: SocketAddr,
    pub profile: Profile,
    pub report: Report,
    /// Event types with a schema of their own, for the label flood.
    pub types: Vec<String>,
    /// Connections a class keeps open until the end of the run.
    held: Mutex<Vec<tokio::net::TcpStream>>,
}

impl Target {
    /// Keeps `stream` open until the end of the run.
    pub(crate) fn hold(&self, stream: tokio::net::TcpStream) {
        self.held
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(stream);
    }
}

fn bin() -> PathBuf {
    let bin = std::env::var("HEADWATER_BIN")
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_headwater").to_owned());
    std::fs::canonicalize(&bin).unwrap_or_else(|e| panic!("HEADWATER_BIN {bin}: {e}"))
}

/// The shipped schemas and `count` more types that take any object, in `dir`.
fn schemas(dir: &Path, count: usize) -> Vec<String> {
    std::fs::create_dir_all(dir).unwrap();
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas/events");
    for entry in std::fs::read_dir(shipped).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, dir.join(path.file_name().unwrap())).unwrap();
    }
    (0..count)
        .map(|n| {
            let name = format!("abuse.t{n}");
            let file = dir.join(format!("{name}.v1.schema.json"));
            std::fs::write(file, r#"{"type": "object"}"#).unwrap();
            name
        })
        .collect()
}

/// `headwater serve` on its default limits: only its addresses, data and schema directories and
/// two API keys configured.
fn serve(dir: &Path) -> Headwater {
    let config = format!(
        "data_dir: {data}\ngateway:\n  listen: 127.0.0.1:0\n  auth:\n    keys:\n      - {{tenant: acme, sha256: {key}}}\n      - {{tenant: good, sha256: {good}}}\nlog:\n  kafka_listen: 127.0.0.1:0\nschemas:\n  dir: {schemas}\n",
        data = dir.join("data").display(),
        key = sha256_hex(KEY),
        good = sha256_hex(GOOD_KEY),
        schemas = dir.join("schemas").display(),
    );
    let file = dir.join("headwater.yaml");
    std::fs::write(&file, config).unwrap();
    let mut command = Command::new(bin());
    command
        .arg("--config")
        .arg(&file)
        .arg("serve")
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env_remove("HEADWATER_CONFIG")
        .env_remove("HEADWATER_BIN");
    Headwater::spawn("serve", command)
}

/// What the well-behaved producer got: the ids acknowledged, and the count of each status.
#[derive(Default)]
struct Produced {
    acknowledged: Vec<String>,
    statuses: BTreeMap<u16, usize>,
}

/// Posts `batches` batches (at most; it stops once `done`) of valid events with ids of their
/// own, one every [`GOOD_EVERY`].
async fn produce_good(
    ingest: SocketAddr,
    first: usize,
    batches: usize,
    done: &AtomicBool,
) -> Produced {
    let http = reqwest::Client::new();
    let mut produced = Produced::default();
    let mut cadence = tokio::time::interval(GOOD_EVERY);
    for n in first..first + batches {
        if done.load(Ordering::Relaxed) {
            break;
        }
        cadence.tick().await;
        let ids: Vec<String> = (0..GOOD_BATCH).map(|i| format!("good-{n}-{i}")).collect();
        let events: Vec<_> = ids
            .iter()
            .enumerate()
            .map(|(i, id)| {
                serde_json::json!({"id": id, "type": "playback.start", "source": format!("tv-{i}"),
                    "payload": {"title_id": "t", "position_ms": n}})
            })
            .collect();
        let response = http
            .post(format!("http://{ingest}/v1/events"))
            .bearer_auth(GOOD_KEY)
            .json(&events)
            .send()
            .await;
        let Ok(response) = response else {
            *produced.statuses.entry(0).or_default() += 1;
            continue;
        };
        let status = response.status();
        *produced.statuses.entry(status.as_u16()).or_default() += 1;
        if status != StatusCode::OK {
            continue;
        }
        let answer: serde_json::Value = response.json().await.unwrap();
        let rejected: HashSet<u64> = answer["errors"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|e| e["index"].as_u64())
            .collect();
        let accepted = ids
            .into_iter()
            .enumerate()
            .filter(|(i, _)| !rejected.contains(&(*i as u64)));
        produced.acknowledged.extend(accepted.map(|(_, id)| id));
    }
    produced
}

/// What the prober saw: probes sent, the slowest answer, and every failure.
#[derive(Default)]
struct Probed {
    probes: usize,
    slowest: Duration,
    failures: Vec<String>,
}

/// GETs `/healthz` on a fresh connection every [`PROBE_EVERY`] until `done`.
async fn probe(ingest: SocketAddr, done: &AtomicBool, most: usize) -> Probed {
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .timeout(PROBE_WITHIN)
        .build()
        .unwrap();
    let mut probed = Probed::default();
    let mut cadence = tokio::time::interval(PROBE_EVERY);
    while !done.load(Ordering::Relaxed) && probed.probes < most {
        cadence.tick().await;
        let sent = Instant::now();
        let answer = http.get(format!("http://{ingest}/healthz")).send().await;
        probed.probes += 1;
        probed.slowest = probed.slowest.max(sent.elapsed());
        match answer {
            Ok(response) if response.status() == StatusCode::OK => {}
            Ok(response) => probed
                .failures
                .push(format!("status {}", response.status())),
            Err(error) => probed.failures.push(format!("{error}")),
        }
    }
    probed
}

/// Every `hw.id` in `topic`, read from offset 0 of each partition through the Kafka port.
fn read_ids(kafka: SocketAddr, topic: &str) -> HashSet<String> {
    let mut wire = Wire::connect(kafka);
    let topics = wire
        .metadata(&[topic.to_owned()])
        .expect("a Metadata answer");
    let (_, error, partitions) = &topics[0];
    assert_eq!(*error, 0, "Metadata of {topic}");
    let mut ids = HashSet::new();
    for partition in 0..i32::try_from(*partitions).unwrap() {
        let mut offset = 0;
        loop {
            let (error, high_watermark, records) = wire.fetch(topic, partition, offset, 8 << 20);
            assert_eq!(error, 0, "Fetch {topic}/{partition} at {offset}");
            if offset >= high_watermark {
                break;
            }
            let before = offset;
            for batch in batches(records) {
                for record in decode_records(&Bytes::from(batch.to_vec())).unwrap() {
                    offset = offset.max(record.offset + 1);
                    let id = record.headers.iter().find(|h| h.key == "hw.id");
                    if let Some(value) = id.and_then(|h| h.value.as_ref()) {
                        ids.insert(String::from_utf8_lossy(value).into_owned());
                    }
                }
            }
            assert!(
                offset > before,
                "{topic}/{partition}: no record at {before}"
            );
        }
    }
    ids
}

/// Starts the server and makes the topics the Kafka classes write to, as they would exist in a
/// deployment (before the topic flood fills `log.max_topics`).
async fn start(profile: Profile, dir: &Path) -> (Headwater, Arc<Target>) {
    let types = schemas(&dir.join("schemas"), profile.types);
    let mut server = serve(dir);
    let ingest = server.addr(Listener::Ingest);
    let kafka = server.addr(Listener::Kafka);
    let pid = server.child.id();
    eprintln!(
        "abuse profile {}: headwater serve {} (pid {pid}), ingest {ingest}, kafka {kafka}",
        profile.name,
        bin().display()
    );
    let setup = tokio::task::spawn_blocking(move || {
        let topics = [
            "abuse-fetched",
            "abuse-bombs",
            "abuse-starved",
            "events",
            "events.dlq",
        ];
        let topics: Vec<String> = topics.map(str::to_owned).to_vec();
        Wire::connect(kafka)
            .metadata(&topics)
            .expect("a Metadata answer")
    });
    for (topic, code, _) in setup.await.unwrap() {
        assert_eq!(code, 0, "creating {topic}");
    }
    let report = Report::new(pid);
    let target = Target {
        ingest,
        kafka,
        profile,
        report,
        types,
        held: Mutex::new(Vec::new()),
    };
    (server, Arc::new(target))
}

/// Runs every class at once beside the producer and the prober; returns what those two saw.
async fn abuse(target: &Arc<Target>) -> (Produced, Probed) {
    let (ingest, batches) = (target.ingest, target.profile.good_batches);
    let done = Arc::new(AtomicBool::new(false));
    let prober = {
        let done = Arc::clone(&done);
        tokio::spawn(async move { probe(ingest, &done, 100_000).await })
    };
    let producer = {
        let done = Arc::clone(&done);
        tokio::spawn(async move { produce_good(ingest, 10, batches, &done).await })
    };
    let mut classes = abuse_http::spawn(target);
    classes.extend(abuse_kafka::spawn(target));
    for class in classes {
        if let Err(error) = class.await {
            let message = match error.try_into_panic() {
                Ok(panic) => panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                    .unwrap_or_default(),
                Err(error) => error.to_string(),
            };
            target.report.row("a class panicked", message, false);
        }
    }
    done.store(true, Ordering::Relaxed);
    (producer.await.unwrap(), prober.await.unwrap())
}

/// The acknowledged ids not found in `events` through the Kafka port; the producer's and the
/// prober's rows, and the rows of the classes covered elsewhere.
async fn verify(
    target: &Target,
    acknowledged: &[String],
    during: &Produced,
    probed: &Probed,
) -> Vec<String> {
    let kafka = target.kafka;
    let stored = tokio::task::spawn_blocking(move || read_ids(kafka, "events"))
        .await
        .unwrap();
    let missing: Vec<String> = acknowledged
        .iter()
        .filter(|id| !stored.contains(*id))
        .cloned()
        .collect();
    let report = &target.report;
    report.row(
        "well-behaved producer (HTTP JSON, 20 events a batch)",
        format!(
            "statuses {:?}; {} events acknowledged, {} of them missing when read back",
            during.statuses,
            acknowledged.len(),
            missing.len()
        ),
        missing.is_empty() && !acknowledged.is_empty(),
    );
    report.row(
        "prober GET /healthz",
        format!(
            "{} probes, slowest {} ms, {} failed {:?}",
            probed.probes,
            probed.slowest.as_millis(),
            probed.failures.len(),
            probed.failures.iter().take(3).collect::<Vec<_>>()
        ),
        probed.failures.is_empty() && probed.probes > 0,
    );
    report.covered(
        "12 fsync failure",
        "log-tier/storage disk_full_tests::failed_fsync_fails_the_partition_until_restart",
    );
    report.covered(
        "13 corrupt sealed segment",
        "log-tier/storage recovery_tests::corrupt_sealed_segment_is_quarantined_and_later_segments_kept",
    );
    report.covered(
        "14 a 503 after the write",
        "gateway/tests/partial_appends.rs (a retry appends only what was not written)",
    );
    missing
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_class_at_once_stays_bounded_and_loses_nothing_acknowledged() {
    let profile = Profile::from_env();
    let dir = tempfile::tempdir().unwrap();
    let (server, target) = start(profile, dir.path()).await;

    // Before the abuse: acknowledged events that must survive it.
    let never = AtomicBool::new(false);
    let before = produce_good(target.ingest, 0, 10, &never).await;
    assert_eq!(
        before.statuses.get(&200),
        Some(&10),
        "{:?}",
        before.statuses
    );
    let (during, probed) = abuse(&target).await;
    let abuse_took = target.report.elapsed();

    // Afterwards: every acknowledged event is readable.
    let acknowledged: Vec<String> = before
        .acknowledged
        .iter()
        .chain(&during.acknowledged)
        .cloned()
        .collect();
    let missing = verify(&target, &acknowledged, &during, &probed).await;
    let peak = peak_rss_bytes(server.child.id());
    let (table, unexpected) = target.report.table();
    eprintln!(
        "\nabuse profile {} against {}: {:.1}s of abuse, server peak RSS {} MiB (bound {} MiB)\n\n{table}",
        profile.name,
        bin().display(),
        abuse_took.as_secs_f64(),
        peak / MIB,
        RSS_BOUND / MIB
    );
    let mut server = server;
    assert!(
        server.child.try_wait().unwrap().is_none(),
        "headwater serve exited; stderr:\n{}",
        server.stderr()
    );
    assert!(
        peak < RSS_BOUND,
        "peak RSS {} MiB is over {} MiB",
        peak / MIB,
        RSS_BOUND / MIB
    );
    assert!(unexpected.is_empty(), "unexpected answers: {unexpected:#?}");
    assert!(
        missing.is_empty(),
        "acknowledged and not readable: {missing:?}"
    );
}
