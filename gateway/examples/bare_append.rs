//! The bare log append the gateway's cost is compared with: `BATCHES` calls of
//! `Log::append` on the embedded log, each 100 records of a 200-byte value keyed by one of 50
//! sources and no headers (50 batches built before, cloned for each call as `log_bench`
//! does), `APPENDERS` at once (default 16), fsync every 100 ms (the `interval` policy, the
//! default until `every_append` replaced it: kept so the figures stay comparable). scripts/bench-instructions runs it under callgrind at two sizes and divides the
//! difference in instructions by the difference in records: the cost per record of the append
//! alone, start-up left out.
//!
//! `cargo run --release -p headwater-gateway --example bare_append [-- BATCHES [APPENDERS]]`
//! (default 1000 batches)
#![allow(clippy::unwrap_used, clippy::expect_used)] // a bench fails by panicking

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use headwater_log::{FlushMode, FlushPolicy, Log, LogConfig, LogEngine, Record};

const BATCH: usize = 100;

fn batch(n: u64) -> Vec<Record> {
    (0..BATCH as u64)
        .map(|i| {
            let value =
                format!(r#"{{"title_id":"title-{n:08}-{i:04}","position_ms":{i},"pad":""}}"#);
            let value = format!("{value:<200}");
            Record {
                partition: None,
                key: Some(Bytes::from(format!("tv-{:04}", (n + i) % 50))),
                value: Some(Bytes::from(value)),
                headers: Vec::new(),
                timestamp_ms: 1_700_000_000_000,
            }
        })
        .collect()
}

fn main() {
    let batches: u64 = std::env::args()
        .nth(1)
        .map(|s| s.parse().expect("BATCHES is a number"))
        .unwrap_or(1000);
    let appenders: usize = std::env::args()
        .nth(2)
        .map(|s| s.parse().expect("APPENDERS is a number"))
        .unwrap_or(16);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = LogConfig {
            flush: FlushPolicy {
                mode: FlushMode::Interval,
                interval_ms: 100,
                linger_us: 0,
            },
            ..LogConfig::default()
        };
        let engine = LogEngine::open(dir.path(), config).expect("open");
        let next = Arc::new(AtomicU64::new(0));
        let templates: Arc<Vec<Vec<Record>>> = Arc::new((0..50).map(batch).collect());
        let tasks: Vec<_> = (0..appenders)
            .map(|_| {
                let (engine, next) = (engine.clone(), next.clone());
                let templates = templates.clone();
                tokio::spawn(async move {
                    loop {
                        let n = next.fetch_add(1, Ordering::Relaxed);
                        if n >= batches {
                            break;
                        }
                        let records = templates[(n % 50) as usize].clone();
                        engine.append("events", records).await.expect("append");
                    }
                })
            })
            .collect();
        for appender in tasks {
            appender.await.expect("appender");
        }
        engine.close().await.expect("close");
        println!("{} records appended", batches * BATCH as u64);
    });
}
