//! Append/read benchmark of the embedded log (no cargo-bench harness): throughput, latency
//! percentiles and CPU cost per record for 100 B and 1 KiB records in batches of 1, 100 and
//! 1000, fsync per append vs every 100 ms; then read throughput. Prints a Markdown table.
//!
//! `cargo run --release -p headwater-log --example log_bench [-- SECONDS_PER_ROW]`
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test (or bench) fails by panicking

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use headwater_log::batch::{self, ProducerFields};
use headwater_log::{FlushMode, FlushPolicy, Log, LogConfig, LogEngine, Record};

/// Concurrent appenders: enough in flight to keep the log busy while each waits for its fsync
/// (an interval-mode acknowledgement waits up to 100 ms, so it needs more appenders in flight).
fn concurrency(mode: FlushMode, batch: usize) -> usize {
    match (mode, batch) {
        (FlushMode::EveryAppend, _) => 32,
        (_, 1) => 1024,
        (_, 100) => 256,
        _ => 64,
    }
}

struct Row {
    path: &'static str,
    tasks: usize,
    size: usize,
    batch: usize,
    flush: &'static str,
    records_per_s: f64,
    mb_per_s: f64,
    p50_us: f64,
    p99_us: f64,
    cpu_records_per_s: f64,
}

fn cpu_seconds() -> f64 {
    use nix::sys::resource::{UsageWho, getrusage};
    use nix::sys::time::TimeValLike;
    getrusage(UsageWho::RUSAGE_SELF).map_or(0.0, |u| {
        (u.user_time().num_microseconds() + u.system_time().num_microseconds()) as f64 / 1e6
    })
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() - 1) as f64 * p) as usize] as f64
}

fn records(size: usize, n: usize) -> Vec<Record> {
    (0..n)
        .map(|i| Record {
            partition: Some(0),
            key: None,
            value: Some(Bytes::from(vec![b'a' + (i % 26) as u8; size])),
            headers: vec![],
            timestamp_ms: 1_700_000_000_000,
        })
        .collect()
}

async fn run_row(path: &'static str, size: usize, batch: usize, mode: FlushMode, secs: f64) -> Row {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = LogConfig {
        flush: FlushPolicy {
            mode,
            interval_ms: 100,
            linger_us: 0,
        },
        max_message_bytes: 8 << 20,
        segment_bytes: 512 << 20,
        ..LogConfig::default()
    };
    let engine = LogEngine::open(dir.path(), config).expect("open");
    engine.create_topic_now("bench", 1).expect("topic");
    let template = records(size, batch);
    let raw = {
        let refs: Vec<&Record> = template.iter().collect();
        batch::encode(&refs, ProducerFields::NONE)
            .expect("encode")
            .freeze()
    };
    let stop = Arc::new(AtomicBool::new(false));
    let total = Arc::new(AtomicU64::new(0));
    let cpu0 = cpu_seconds();
    let started = Instant::now();
    let mut tasks = Vec::new();
    let tasks_n = concurrency(mode, batch);
    for _ in 0..tasks_n {
        let (engine, stop, total, template, raw) = (
            engine.clone(),
            stop.clone(),
            total.clone(),
            template.clone(),
            raw.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                if path == "Log::append" {
                    engine
                        .append("bench", template.clone())
                        .await
                        .expect("append");
                } else {
                    engine
                        .append_batch("bench", 0, raw.clone())
                        .await
                        .expect("append_batch");
                }
                lat.push(t.elapsed().as_micros().min(u32::MAX as u128) as u32);
                total.fetch_add(batch as u64, Ordering::Relaxed);
            }
            lat
        }));
    }
    tokio::time::sleep(Duration::from_secs_f64(secs)).await;
    stop.store(true, Ordering::Relaxed);
    let mut lat = Vec::new();
    for t in tasks {
        lat.extend(t.await.expect("task"));
    }
    let elapsed = started.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu0;
    engine.close().await.expect("close");
    lat.sort_unstable();
    let n = total.load(Ordering::Relaxed) as f64;
    Row {
        path,
        tasks: tasks_n,
        size,
        batch,
        flush: if mode == FlushMode::EveryAppend {
            "every append"
        } else {
            "every 100 ms"
        },
        records_per_s: n / elapsed,
        mb_per_s: n * size as f64 / elapsed / 1e6,
        p50_us: percentile(&lat, 0.50),
        p99_us: percentile(&lat, 0.99),
        cpu_records_per_s: n / cpu.max(1e-9),
    }
}

async fn read_bench(secs: f64) -> String {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = LogConfig {
        flush: FlushPolicy {
            mode: FlushMode::Os,
            interval_ms: 100,
            linger_us: 0,
        },
        segment_bytes: 512 << 20,
        max_message_bytes: 8 << 20,
        ..LogConfig::default()
    };
    let engine = LogEngine::open(dir.path(), config).expect("open");
    engine.create_topic_now("read", 1).expect("topic");
    let template = records(100, 1000);
    let deadline = Instant::now() + Duration::from_secs_f64(secs);
    while Instant::now() < deadline {
        engine
            .append("read", template.clone())
            .await
            .expect("append");
    }
    engine.flush().await.expect("flush");
    let hw = engine
        .partition_offsets("read", 0)
        .expect("offsets")
        .high_watermark;
    // Raw stored bytes (what a Kafka Fetch hands out).
    let started = Instant::now();
    let (mut offset, mut bytes) = (0i64, 0usize);
    while offset < hw {
        let f = engine
            .read_raw("read", 0, offset, 1 << 20)
            .expect("read_raw");
        let last = batch::split_batches(f.records.clone())
            .last()
            .expect("a batch")
            .0;
        offset = last.next_offset();
        bytes += f.records.len();
    }
    let raw_s = started.elapsed().as_secs_f64();
    // Decoded records through the Log trait.
    let started = Instant::now();
    let mut offset = 0i64;
    while offset < hw {
        let r = engine
            .read("read", 0, offset, 1 << 20, Duration::ZERO)
            .await
            .expect("read");
        offset = r.last().expect("records").offset + 1;
    }
    let dec_s = started.elapsed().as_secs_f64();
    engine.close().await.expect("close");
    format!(
        "| read_raw (stored batches, 1 MiB reads) | {hw} | {:.0} | {:.0} |\n| Log::read (decoded records) | {hw} | {:.0} | {:.0} |\n",
        hw as f64 / raw_s,
        bytes as f64 / raw_s / 1e6,
        hw as f64 / dec_s,
        bytes as f64 / dec_s / 1e6,
    )
}

fn main() {
    let secs: f64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(3.0);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        println!(
            "log_bench: 1 partition, {secs} s per row, {} cores, tokio with 2 workers",
            std::thread::available_parallelism().map_or(0, |n| n.get())
        );
        println!();
        println!("| path | appenders | record | batch | fsync | records/s | MB/s | p50 µs | p99 µs | records per CPU-second |");
        println!("| --- | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: |");
        let mut rows = Vec::new();
        for mode in [FlushMode::EveryAppend, FlushMode::Interval] {
            for size in [100, 1024] {
                for batch in [1, 100, 1000] {
                    rows.push(("Log::append", size, batch, mode));
                }
            }
        }
        rows.push(("append_batch (raw)", 100, 1000, FlushMode::Interval));
        rows.push(("append_batch (raw)", 100, 1000, FlushMode::EveryAppend));
        for (path, size, batch, mode) in rows {
            let r = run_row(path, size, batch, mode, secs).await;
            println!(
                "| {} | {} | {} B | {} | {} | {:.0} | {:.1} | {:.0} | {:.0} | {:.0} |",
                r.path, r.tasks, r.size, r.batch, r.flush, r.records_per_s, r.mb_per_s, r.p50_us, r.p99_us, r.cpu_records_per_s
            );
        }
        println!();
        println!("| read | records | records/s | MB/s |");
        println!("| --- | ---: | ---: | ---: |");
        print!("{}", read_bench(secs).await);
    });
}
