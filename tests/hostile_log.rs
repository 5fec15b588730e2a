//! Hostile input to the embedded log through the Kafka port of the real `headwater serve`:
//! Produce requests carrying compression bombs (lz4, gzip, zstd; 4 MB or less on the wire, 100
//! MiB to 1 GiB inflated, no credentials needed on loopback) are refused while the server's
//! peak RSS stays bounded, and normal compressed produces still work; gzip batches within the
//! limits are read by the router, one batch per read, into the lake.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails by panicking

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::kafka_wire::{CORRUPT_MESSAGE, MESSAGE_TOO_LARGE, Wire};
use common::record_batch::{
    GZIP, LZ4, ZSTD, batch, record_parts, small_batch, write_record, zeros_batch,
};
use common::{Headwater, Listener, peak_rss_bytes};
use headwater_testing::eventually_within;

const BIN: &str = env!("CARGO_BIN_EXE_headwater");

/// Peak RSS `headwater serve` may reach under the bombs. Measured with the debug binary (x86-64,
/// 2 CPUs): 50 MiB after start-up, 135-165 MiB after the bombs; 3.7 GiB before the inflation
/// limit (four 1 GiB lz4 bombs inflated at once).
const BOMBS_PEAK_RSS: u64 = 256 << 20;

/// Peak RSS while the router reads 64 gzip batches of 4 MiB (256 MiB of records in 1 MiB of
/// stored bytes, so nearly every batch in one router read before the read cap). Measured:
/// 175-195 MiB; 349 MiB before the read cap.
const ROUTER_PEAK_RSS: u64 = 256 << 20;

/// A `headwater serve` on ports of its own choosing, with its data in a temporary directory.
struct Serve {
    process: Headwater,
    kafka: SocketAddr,
    data: tempfile::TempDir,
}

fn serve() -> Serve {
    let data = tempfile::tempdir().unwrap();
    let mut command = Command::new(BIN);
    command
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--kafka-listen",
            "127.0.0.1:0",
        ])
        .arg("--data-dir")
        .arg(data.path())
        // Routed batches go to the lake as soon as they are a few records old.
        .env("HEADWATER_ROUTER__BATCH_MAX_AGE_MS", "200")
        .current_dir(env!("CARGO_MANIFEST_DIR"));
    let mut process = Headwater::spawn("serve", command);
    let kafka = process.addr(Listener::Kafka);
    Serve {
        process,
        kafka,
        data,
    }
}

impl Serve {
    fn peak_rss(&mut self) -> u64 {
        assert!(
            self.process.child.try_wait().unwrap().is_none(),
            "headwater serve exited; its stderr:\n{}",
            self.process.stderr()
        );
        peak_rss_bytes(self.process.child.id())
    }
}

/// Sends a Produce v3 request (acks=1) of `records` to `topic`/`partition` on a fresh
/// connection and returns the partition's `(error_code, base_offset)`.
fn produce(kafka: SocketAddr, topic: &str, partition: i32, records: &[u8]) -> (i16, i64) {
    let mut wire = Wire::connect_within(kafka, Duration::from_secs(120));
    wire.produce(topic, partition, records)
        .expect("a Produce answer")
}

#[test]
fn kafka_produce_compression_bombs_are_refused_in_bounded_memory() {
    let mut server = serve();
    let kafka = server.kafka;
    let started = server.peak_rss();
    let (error, base) = produce(kafka, "bombs", 0, &small_batch(LZ4, 10));
    assert_eq!((error, base), (0, 0), "a normal lz4 produce");

    // From four connections at once: 1 GiB of zeros in about 4 MB of lz4, over
    // max_message_bytes as sent (refused before it is inflated), and 200 MiB in 800 KB, under
    // it (refused once past the inflation limit).
    let big_bomb = zeros_batch(LZ4, 1 << 30);
    assert!(big_bomb.len() < 8 << 20, "{} bytes", big_bomb.len());
    let lz4_bomb = zeros_batch(LZ4, 200 << 20);
    assert!(lz4_bomb.len() < 1 << 20, "{} bytes", lz4_bomb.len());
    let answers: Vec<(i16, i16)> = std::thread::scope(|s| {
        let senders: Vec<_> = (0..4)
            .map(|_| {
                s.spawn(|| {
                    let big = produce(kafka, "bombs", 0, &big_bomb).0;
                    (big, produce(kafka, "bombs", 0, &lz4_bomb).0)
                })
            })
            .collect();
        senders.into_iter().map(|t| t.join().unwrap()).collect()
    });
    for (big, bomb) in answers {
        assert_eq!(big, MESSAGE_TOO_LARGE, "the 4 MB lz4 batch is refused");
        assert_eq!(bomb, CORRUPT_MESSAGE, "the lz4 bomb is refused");
    }
    // 100 MiB of zeros in gzip and zstd: under the old 128 MiB cap these were stored.
    for codec in [GZIP, ZSTD] {
        let bomb = zeros_batch(codec, 100 << 20);
        assert!(bomb.len() < 1 << 20, "{} bytes", bomb.len());
        let (error, _) = produce(kafka, "bombs", 0, &bomb);
        assert_eq!(error, CORRUPT_MESSAGE, "the codec {codec} bomb is refused");
    }

    // Normal compressed produces still work, right after.
    for (i, codec) in [GZIP, LZ4, ZSTD].into_iter().enumerate() {
        let (error, base) = produce(kafka, "bombs", 0, &small_batch(codec, 10));
        assert_eq!((error, base), (0, 10 + 10 * i as i64), "codec {codec}");
    }
    let peak = server.peak_rss();
    eprintln!(
        "peak RSS of headwater serve: {} MiB after start-up, {} MiB after the bombs (bound {} MiB)",
        started >> 20,
        peak >> 20,
        BOMBS_PEAK_RSS >> 20
    );
    assert!(
        peak < BOMBS_PEAK_RSS,
        "peak RSS {} MiB over {} MiB",
        peak >> 20,
        BOMBS_PEAK_RSS >> 20
    );
}

/// Lake objects of partition 0 of `events`: `(first, last, events)` per object.
fn lake_objects(lake: &Path) -> Vec<(i64, i64, usize)> {
    let mut out = Vec::new();
    let mut dirs: Vec<PathBuf> = vec![lake.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
                continue;
            }
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            let Some(range) = name
                .strip_prefix("events-0-")
                .and_then(|n| n.strip_suffix(".ndjson.zst"))
            else {
                continue;
            };
            let (first, last) = range.split_once('-').unwrap();
            let body = zstd::decode_all(&std::fs::read(&path).unwrap()[..]).unwrap();
            let lines = body
                .split(|&b| b == b'\n')
                .filter(|l| !l.is_empty())
                .count();
            out.push((first.parse().unwrap(), last.parse().unwrap(), lines));
        }
    }
    out.sort_unstable();
    out
}

/// A stored gzip batch within the limits is read by the router without a crash: 64 batches
/// of 100 events with 40 KiB payloads (4 MiB of records each, 256 MiB in all) take about 1 MiB
/// of stored bytes, one router read; the router decodes them a batch at a time and routes
/// every event to the lake.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn router_reads_large_gzip_batches_one_at_a_time() {
    let mut server = serve();
    let kafka = server.kafka;
    let pad = "a".repeat(40 * 1024);
    let (batches, per_batch) = (64, 100);
    // All in one Produce request, so they become readable at once and the router's first read
    // of 1 MiB of stored bytes covers every one of them.
    let mut records = Vec::new();
    for b in 0..batches {
        let one = batch(GZIP, per_batch, |w| {
            for i in 0..per_batch {
                let n = b * per_batch + i;
                let value = format!("{{\"n\":{n},\"pad\":\"{pad}\"}}");
                let id = format!("hostile-{n}");
                let now = "1700000000000";
                let headers: [(&str, &[u8]); 8] = [
                    ("hw.id", id.as_bytes()),
                    ("hw.type", b"test.bulk"),
                    ("hw.version", b"1"),
                    ("hw.source", b"device-1"),
                    ("hw.ts", now.as_bytes()),
                    ("hw.received_at", now.as_bytes()),
                    ("hw.tenant", b"acme"),
                    ("hw.format", b"json"),
                ];
                let parts = record_parts(i64::from(i), b"device-1", value.len(), &headers);
                write_record(w, &parts, &mut |w| w.write_all(value.as_bytes()).unwrap());
            }
        });
        records.extend_from_slice(&one);
    }
    // About 1 MiB stored: the router's first 1 MiB read covers nearly all of them.
    assert!(records.len() < 1100 << 10, "{} bytes", records.len());
    let (error, base) = tokio::task::spawn_blocking(move || produce(kafka, "events", 0, &records))
        .await
        .unwrap();
    assert_eq!((error, base), (0, 0), "the batches are stored");
    let total = (batches * per_batch) as usize;
    let lake = server.data.path().join("lake");
    eventually_within(
        "the router to route every event",
        Duration::from_secs(120),
        async || {
            let objects = lake_objects(&lake);
            objects.iter().map(|o| o.2).sum::<usize>() >= total
        },
    )
    .await;
    let objects = lake_objects(&lake);
    assert_eq!(objects.first().map(|o| o.0), Some(0));
    assert_eq!(objects.last().map(|o| o.1), Some(total as i64 - 1));
    assert_eq!(objects.iter().map(|o| o.2).sum::<usize>(), total);
    let peak = server.peak_rss();
    eprintln!(
        "peak RSS of headwater serve while routing 256 MiB of gzip batches: {} MiB (bound {} MiB)",
        peak >> 20,
        ROUTER_PEAK_RSS >> 20
    );
    assert!(
        peak < ROUTER_PEAK_RSS,
        "peak RSS {} MiB over {} MiB",
        peak >> 20,
        ROUTER_PEAK_RSS >> 20
    );
}
