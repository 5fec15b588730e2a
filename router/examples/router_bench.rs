//! Router throughput on one core: events from a `MemoryLog` through a route to a sink that only
//! counts, so the figure is the router's own cost (read, envelope, route, batch, commit).
//! Run: `cargo run --release -p headwater-router --example router_bench [events]`.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark fails by panicking

#[path = "common/mod.rs"]
mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use headwater_log::{Log, MemoryLog, Record};
use headwater_router::{Router, RouterOptions, RouterParts, check_routes};
use headwater_sinks::{Batch, Delivery, Sink, SinkError};

#[derive(Default)]
struct CountingSink {
    events: AtomicU64,
    nanos: AtomicU64,
}

#[async_trait]
impl Sink for CountingSink {
    fn kind(&self) -> &'static str {
        "count"
    }
    async fn send(&self, batch: Batch) -> Result<Delivery, SinkError> {
        let t = Instant::now();
        self.events
            .fetch_add(batch.events.len() as u64, Ordering::Relaxed);
        drop(batch);
        self.nanos
            .fetch_add(t.elapsed().as_nanos() as u64, Ordering::Relaxed);
        Ok(Delivery::all())
    }
    async fn flush(&self) -> Result<(), SinkError> {
        Ok(())
    }
    async fn healthcheck(&self) -> Result<(), SinkError> {
        Ok(())
    }
}

fn record(i: u64) -> Record {
    let payload = format!(
        r#"{{"title_id":"title-{:06}","position_ms":{},"bitrate_kbps":4300,"cdn":"edge-{}","device":{{"model":"tv-x","os":"linux"}}}}"#,
        i % 100_000,
        i * 250,
        i % 17
    );
    common::record(i, payload)
}

async fn run(name: &str, routes: &str, n: u64) {
    let log = Arc::new(MemoryLog::default());
    log.create_topic("events", 1).await.expect("topic");
    let mut bytes = 0u64;
    for chunk in (0..n).collect::<Vec<_>>().chunks(10_000) {
        let records: Vec<Record> = chunk.iter().map(|i| record(*i)).collect();
        bytes += records
            .iter()
            .map(|r| r.value.as_ref().map_or(0, |v| v.len()) as u64)
            .sum::<u64>();
        log.append("events", records).await.expect("append");
    }
    let sink = Arc::new(CountingSink::default());
    let s = Arc::clone(&sink);
    let started = Instant::now();
    let router = Router::start(RouterParts {
        log: Arc::clone(&log) as Arc<dyn Log>,
        routes: check_routes(routes).expect("routes"),
        sink_factory: Arc::new(move |_| Ok(Arc::clone(&s) as Arc<dyn Sink>)),
        options: RouterOptions {
            batch_max_age: Duration::from_millis(200),
            ..RouterOptions::default()
        },
    })
    .await
    .expect("start");
    while log
        .committed("router.bench", "events", 0)
        .await
        .ok()
        .flatten()
        != Some(n as i64)
    {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let secs = started.elapsed().as_secs_f64();
    router.shutdown().await;
    let sink_secs = sink.nanos.load(Ordering::Relaxed) as f64 / 1e9;
    println!(
        "{name}: {n} events ({:.0} B avg payload) in {secs:.3} s: {:.0} events/s, {:.1} MB/s of payload; {} out; sink time {sink_secs:.3} s",
        bytes as f64 / n as f64,
        n as f64 / secs,
        bytes as f64 / secs / 1e6,
        sink.events.load(Ordering::Relaxed),
    );
}

fn main() {
    let n: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(200_000);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let head =
        "routes:\n  - name: bench\n    source: {topics: [events]}\n    sinks: [{type: count}]\n";
    rt.block_on(run("pass-through", head, n));
    let shaped = format!(
        "{head}    filter: {{field: payload.position_ms, ge: 0}}\n    projection: {{include: [title_id, position_ms, device.model]}}\n"
    );
    rt.block_on(run("filter+projection", &shaped, n));
}
