//! Throughput of the S3 sink's hot path: NDJSON + zstd encoding of ~200-byte events, the same
//! bytes compressed alone (the floor), and whole sends through `S3Sink` to a local directory.
//!
//! `cargo run --release -p headwater-sinks --example s3_bench -- [events] [batch]`
#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark fails by panicking

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use headwater_schemas::Envelope;
use headwater_sinks::s3::encode_body;
use headwater_sinks::{Batch, Compression, OutEvent, S3Config, S3Sink, Sink, SinkContext};

fn events(n: usize) -> Vec<OutEvent> {
    (0..n)
        .map(|i| {
            let payload = format!(
                r#"{{"title_id":"title-{:06}","session":"{:016x}","position_ms":{},"bitrate_kbps":{},"cdn":"edge-{}","player":"tv-app/7.{}","buffering":false}}"#,
                i % 50_000,
                (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15),
                i * 250,
                3000 + i % 5000,
                i % 40,
                i % 9
            );
            OutEvent {
                topic: Arc::from("events"),
                partition: 0,
                offset: i as i64,
                key: Some(Bytes::from(format!("device-{}", i % 10_000))),
                envelope: Envelope {
                    id: format!("01J{i:023}"),
                    event_type: "playback.heartbeat".to_owned(),
                    version: 1,
                    source: format!("device-{}", i % 10_000),
                    ts: 1_700_000_000_000 + i as i64,
                    received_at: 1_700_000_000_100 + i as i64,
                    tenant: "acme".to_owned(),
                    payload: Bytes::from(payload),
                    ..Envelope::default()
                },
            }
        })
        .collect()
}

fn report(what: &str, events: usize, bytes: usize, started: Instant) {
    let secs = started.elapsed().as_secs_f64();
    println!(
        "{what:<34} {:>10.0} events/s {:>8.1} MB/s (uncompressed NDJSON)",
        events as f64 / secs,
        bytes as f64 / secs / 1e6
    );
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let total = args.first().copied().unwrap_or(1_000_000);
    let batch_size = args.get(1).copied().unwrap_or(20_000);
    let all = events(total);
    let payload_bytes: usize = all.iter().map(|e| e.envelope.payload.len()).sum();
    println!(
        "{total} events, {} bytes of payload on average, batches of {batch_size}",
        payload_bytes / total.max(1)
    );

    // 1. NDJSON only (serde of the envelope).
    let started = Instant::now();
    let mut ndjson = Vec::new();
    for e in &all {
        serde_json::to_writer(&mut ndjson, &e.envelope)?;
        ndjson.push(b'\n');
    }
    let raw = ndjson.len();
    report("serialize NDJSON", total, raw, started);

    // 2. The floor: compressing the same bytes, batch by batch.
    let started = Instant::now();
    let mut compressed = 0;
    let line = raw / total.max(1);
    for chunk in ndjson.chunks((batch_size * line).max(1)) {
        compressed += zstd::bulk::compress(chunk, 3)?.len();
    }
    report("zstd(3) of the same bytes", total, raw, started);
    println!("  ratio {:.2}", raw as f64 / compressed as f64);

    // 3. What the sink does per batch: serialize + compress.
    let started = Instant::now();
    for chunk in all.chunks(batch_size) {
        encode_body(chunk, Compression::Zstd, 0)?;
    }
    report("encode_body (NDJSON + zstd)", total, raw, started);

    // 4. Whole sends to a local directory, on a one-thread runtime.
    let dir = tempfile::tempdir()?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .max_blocking_threads(1)
        .build()?;
    let sink = S3Sink::new(
        &S3Config::default(),
        &SinkContext {
            data_dir: dir.path().to_path_buf(),
            log: None,
        },
    )?;
    let batches: Vec<Batch> = all
        .chunks(batch_size)
        .map(|chunk| Batch {
            route: Arc::from("lake"),
            topic: Arc::from("events"),
            partition: 0,
            first_offset: chunk.first().map_or(0, |e| e.offset),
            last_offset: chunk.last().map_or(0, |e| e.offset),
            events: chunk.to_vec(),
        })
        .collect();
    let started = Instant::now();
    runtime.block_on(async {
        for batch in batches {
            sink.send(batch).await?;
        }
        Ok::<_, headwater_sinks::SinkError>(())
    })?;
    report("S3Sink::send to local files", total, raw, started);
    Ok(())
}
