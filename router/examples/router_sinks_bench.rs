//! Router throughput end to end into real sinks, on one core: events from a `MemoryLog`
//! through a route into the S3 sink (local files; and the S3 server from scripts/services when
//! `HEADWATER_TEST_S3` is set) and the OpenSearch `_bulk` sink (`HEADWATER_TEST_OPENSEARCH`),
//! each until every event is committed; and from the embedded log engine (records decoded from
//! stored batches, as `headwater serve` reads them) into the S3 sink's local files. Prints
//! events/s, payload MB/s, the sink's own time (inside `Sink::send`) apart, and the process CPU
//! time.
//! Run: `cargo run --release -p headwater-router --example router_sinks_bench [events [rows]]`,
//! `rows` one of `all` (the default), `memory` (the memory log into local files only) or
//! `engine` (the engine into local files only), for profiling one path alone.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark fails by panicking

#[path = "common/mod.rs"]
mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use headwater_log::{Log, LogConfig, LogEngine, MemoryLog, Record};
use headwater_router::{Router, RouterOptions, RouterParts, check_routes};
use headwater_schemas::Envelope;
use headwater_sinks::config::{
    ElasticsearchConfig, S3Config, SinkConfig, SinkContext, build as build_sink,
};
use headwater_sinks::{Batch, Delivery, Sink, SinkError};

/// The allocator of the `headwater` binary, in which the router runs (src/main.rs).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Measures the time spent inside the wrapped sink.
struct Timed {
    inner: Arc<dyn Sink>,
    nanos: AtomicU64,
}

#[async_trait]
impl Sink for Timed {
    fn kind(&self) -> &'static str {
        self.inner.kind()
    }
    async fn send(&self, batch: Batch) -> Result<Delivery, SinkError> {
        let t = Instant::now();
        let r = self.inner.send(batch).await;
        self.nanos
            .fetch_add(t.elapsed().as_nanos() as u64, Ordering::Relaxed);
        r
    }
    async fn flush(&self) -> Result<(), SinkError> {
        self.inner.flush().await
    }
    async fn healthcheck(&self) -> Result<(), SinkError> {
        self.inner.healthcheck().await
    }
}

/// A ~200-byte `playback.start` payload.
fn record(i: u64) -> Record {
    let payload = format!(
        r#"{{"title_id":"title-{:06}","position_ms":{},"bitrate_kbps":4300,"cdn":"edge-{}","device":{{"model":"tv-x","os":"linux","app":"7.12.0"}},"session":"s-{:012}","abr":"hls-v3","region":"eu-west-1"}}"#,
        i % 100_000,
        i * 250,
        i % 17,
        i / 7
    );
    common::record(i, payload)
}

/// The raw floor in the same run: read the same log, rebuild each envelope, write it as an
/// NDJSON line and zstd(3) every 20,000 lines, nothing else (no routing, no sink, no commit).
async fn floor(n: u64) {
    let log = filled_log(n).await;
    let (cpu0, started) = (cpu_seconds(), Instant::now());
    let (mut next, mut ndjson, mut lines, mut raw) = (0i64, Vec::new(), 0usize, 0usize);
    while next < n as i64 {
        let records = log
            .read("events", 0, next, 1 << 20, Duration::ZERO)
            .await
            .expect("read");
        for r in records {
            next = r.offset + 1;
            let headers = r
                .headers
                .iter()
                .map(|h| (h.key.as_ref(), h.value.as_deref().unwrap_or_default()));
            let env = Envelope::from_headers(headers, r.value.clone().unwrap_or_default())
                .expect("envelope");
            serde_json::to_writer(&mut ndjson, &env).expect("json");
            ndjson.push(b'\n');
            lines += 1;
            if lines == 20_000 {
                raw += ndjson.len();
                zstd::bulk::compress(&ndjson, 3).expect("zstd");
                (lines, ndjson) = (0, Vec::new());
            }
        }
    }
    raw += ndjson.len();
    zstd::bulk::compress(&ndjson, 3).expect("zstd");
    let (secs, cpu) = (started.elapsed().as_secs_f64(), cpu_seconds() - cpu0);
    println!(
        "| floor: read + envelope + NDJSON + zstd, no router | {n} | - | {:.0} | {:.1} (NDJSON) | {secs:.2} | - | {cpu:.2} | {:.0} |",
        n as f64 / secs,
        raw as f64 / secs / 1e6,
        n as f64 / cpu.max(0.01),
    );
}

/// A `MemoryLog` with `n` events in `events`/0.
async fn filled_log(n: u64) -> Arc<MemoryLog> {
    let log = Arc::new(MemoryLog::default());
    fill(log.as_ref(), n).await;
    log
}

/// `n` events appended to `events`/0 of `log`, 10,000 a batch.
async fn fill(log: &dyn Log, n: u64) {
    log.create_topic("events", 1).await.expect("topic");
    for chunk in (0..n).collect::<Vec<_>>().chunks(10_000) {
        let records: Vec<Record> = chunk.iter().map(|i| record(*i)).collect();
        log.append("events", records).await.expect("append");
    }
}

/// User + system CPU seconds of this process so far.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit(')').next().unwrap_or("");
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // Fields 14 and 15 of /proc/PID/stat (utime, stime), 1-based after the command name.
    (ticks(11) + ticks(12)) / 100.0
}

/// Routes the `n` events of `log` (`events`/0) into `sink` until all are committed.
async fn run(name: &str, log: Arc<dyn Log>, sink: Arc<dyn Sink>, batch_events: usize, n: u64) {
    let bytes: u64 = (0..n)
        .map(|i| record(i).value.map_or(0, |v| v.len() as u64))
        .sum();
    let timed = Arc::new(Timed {
        inner: sink,
        nanos: AtomicU64::new(0),
    });
    let t = Arc::clone(&timed);
    let routes =
        "routes:\n  - name: bench\n    source: {topics: [events]}\n    sinks: [{type: bench}]\n";
    let (cpu0, started) = (cpu_seconds(), Instant::now());
    let router = Router::start(RouterParts {
        log: Arc::clone(&log),
        routes: check_routes(routes).expect("routes"),
        sink_factory: Arc::new(move |_| Ok(Arc::clone(&t) as Arc<dyn Sink>)),
        options: RouterOptions {
            batch_max_events: batch_events,
            batch_max_bytes: 64 << 20,
            batch_max_age: Duration::from_millis(500),
            ..RouterOptions::default()
        },
    })
    .await
    .expect("start");
    let deadline = Instant::now() + Duration::from_secs(600);
    while log
        .committed("router.bench", "events", 0)
        .await
        .ok()
        .flatten()
        != Some(n as i64)
    {
        assert!(
            Instant::now() < deadline,
            "{name}: not all committed in 600 s"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let (secs, cpu) = (started.elapsed().as_secs_f64(), cpu_seconds() - cpu0);
    router.shutdown().await;
    let sink_secs = timed.nanos.load(Ordering::Relaxed) as f64 / 1e9;
    println!(
        "| {name} | {n} | {:.0} | {:.0} | {:.1} | {secs:.2} | {sink_secs:.2} | {cpu:.2} | {:.0} |",
        bytes as f64 / n as f64,
        n as f64 / secs,
        bytes as f64 / secs / 1e6,
        n as f64 / cpu.max(0.01),
    );
}

fn s3_config(bucket: &str, endpoint: &str) -> SinkConfig {
    SinkConfig::S3(S3Config {
        bucket: bucket.to_owned(),
        endpoint: endpoint.to_owned(),
        access_key_id: "testing".to_owned(),
        secret_access_key: "testing".to_owned(),
        allow_http: true,
        prefix: "bench".to_owned(),
        ..S3Config::default()
    })
}

async fn main_async(n: u64, rows: &str) {
    let dir = tempfile::tempdir().expect("tempdir");
    let ctx = SinkContext {
        data_dir: dir.path().to_path_buf(),
        log: None,
    };
    println!(
        "| route → sink | events | payload B | events/s | payload MB/s | wall s | sink s | CPU s | events per CPU-second |"
    );
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    let local = || build_sink(&SinkConfig::S3(S3Config::default()), &ctx).expect("local s3 sink");
    if rows == "all" {
        floor(n).await;
    }
    if rows == "all" || rows == "memory" {
        let log = filled_log(n).await;
        run(
            "S3 sink, local files (zstd, fsync)",
            log,
            local(),
            20_000,
            n,
        )
        .await;
    }
    if rows == "all" || rows == "engine" {
        let log_dir = tempfile::tempdir().expect("tempdir");
        let engine = LogEngine::open(log_dir.path(), LogConfig::default()).expect("engine");
        fill(engine.as_ref(), n).await;
        let name = "S3 sink, local files, from the log engine";
        run(
            name,
            Arc::clone(&engine) as Arc<dyn Log>,
            local(),
            20_000,
            n,
        )
        .await;
        engine.close().await.expect("close");
    }
    if rows != "all" {
        return;
    }
    if let Ok(endpoint) = std::env::var("HEADWATER_TEST_S3") {
        let bucket = format!("bench-{}", std::process::id());
        let created = reqwest::Client::new()
            .put(format!("{endpoint}/{bucket}"))
            .send()
            .await
            .expect("S3 server answers");
        assert!(created.status().is_success(), "create bucket: {created:?}");
        let sink = build_sink(&s3_config(&bucket, &endpoint), &ctx).expect("s3 sink");
        let log = filled_log(n).await;
        run("S3 sink, S3 server (moto, zstd)", log, sink, 20_000, n).await;
    }
    if let Ok(url) = std::env::var("HEADWATER_TEST_OPENSEARCH") {
        let config = SinkConfig::Elasticsearch(ElasticsearchConfig {
            url,
            index: format!("bench-{}", std::process::id()),
            ..ElasticsearchConfig::default()
        });
        let sink = build_sink(&config, &ctx).expect("opensearch sink");
        run(
            "OpenSearch _bulk (gzip)",
            filled_log(n).await,
            sink,
            5_000,
            n,
        )
        .await;
    }
}

fn main() {
    let n: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(200_000);
    let rows = std::env::args().nth(2).unwrap_or_else(|| "all".to_owned());
    assert!(
        ["all", "memory", "engine"].contains(&rows.as_str()),
        "rows: all, memory or engine"
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(main_async(n, &rows));
}
