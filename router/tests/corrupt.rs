//! A batch that fails its CRC inside a sealed segment whose index files validate (so recovery
//! trusts the segment and only reads find the damage): the route skips exactly that batch's
//! offsets, reports it (error log, `headwater_router_offsets_skipped_total{reason="corrupt"}`,
//! a note in `router.dlq`), routes everything after it, and a batch spanning the damage is
//! re-sent after a crash with the same bounds and events.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails by panicking

mod support;

use std::fs::{self, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use headwater_log::batch::{BatchHeader, HEADER_LEN};
use headwater_log::{FlushMode, FlushPolicy, Log, LogConfig, LogEngine};
use headwater_sinks::Delivery;
use metrics_exporter_prometheus::PrometheusBuilder;
use support::*;

fn config() -> LogConfig {
    LogConfig {
        flush: FlushPolicy {
            mode: FlushMode::Os,
            interval_ms: 0,
            linger_us: 0,
        },
        segment_bytes: 4096,
        ..LogConfig::default()
    }
}

/// The partition's segment files, oldest first (the last one is active).
fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut logs: Vec<PathBuf> = fs::read_dir(dir.join("topics/events/0"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    logs.sort();
    logs
}

/// `(position, base offset, next offset)` of every batch in a segment file.
fn batches(path: &Path) -> Vec<(u64, i64, i64)> {
    let bytes = fs::read(path).unwrap();
    let mut out = Vec::new();
    let mut pos = 0usize;
    while let Some(h) = BatchHeader::parse(&bytes[pos..]) {
        out.push((pos as u64, h.base_offset, h.next_offset()));
        pos += h.total_len();
    }
    out
}

/// A sample of `name` whose labels contain every one of `labels`.
fn value(text: &str, name: &str, labels: &[&str]) -> Option<f64> {
    text.lines()
        .filter(|l| l.starts_with(name) && !l.starts_with('#'))
        .find(|l| labels.iter().all(|want| l.contains(want)))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

fn ids(events: impl IntoIterator<Item = headwater_schemas::Envelope>) -> Vec<String> {
    events.into_iter().map(|e| e.id).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_batch_is_skipped_reported_and_everything_after_it_routed() {
    let metrics = PrometheusBuilder::new()
        .install_recorder()
        .expect("first recorder in this test binary");
    headwater_router::metrics::describe();
    let dir = tempfile::tempdir().unwrap();
    // 40 batches of 5 events over 4 KiB segments; a clean close writes every sealed segment's
    // index files, which the next open trusts without a CRC scan.
    let all = events(200);
    let engine = LogEngine::open(dir.path(), config()).unwrap();
    engine.create_topic("events", 1).await.unwrap();
    for chunk in all.chunks(5) {
        append(engine.as_ref(), "events", chunk).await;
    }
    engine.close().await.unwrap();
    drop(engine);
    let files = segments(dir.path());
    assert!(files.len() >= 3, "expected rolls, got {}", files.len());
    // One byte flipped in the records of the third batch of the second sealed segment.
    let (pos, first, end) = batches(&files[1])[2];
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&files[1])
        .unwrap();
    let mut b = [0u8; 1];
    f.read_exact_at(&mut b, pos + HEADER_LEN as u64 + 10)
        .unwrap();
    f.write_all_at(&[b[0] ^ 0x5a], pos + HEADER_LEN as u64 + 10)
        .unwrap();
    drop(f);
    let lost: Vec<String> = ids(all[first as usize..end as usize].to_vec());
    let expected: Vec<String> = ids(all.clone())
        .into_iter()
        .filter(|id| !lost.contains(id))
        .collect();

    let engine = LogEngine::open(dir.path(), config()).unwrap();
    // The first route run blocks on its first send, a batch of 100 spanning the damage, then
    // "crashes" (the router is dropped): the batch is pending, not committed.
    let blocked = TestSink::scripted(|_, n| {
        if n == 0 {
            Action::Block
        } else {
            Action::Deliver(Delivery::all())
        }
    });
    let sinks = Sinks::with(&[("lake", Arc::clone(&blocked))]);
    let router = start(&engine, LAKE, &sinks, options()).await;
    tokio::time::timeout(Duration::from_secs(10), blocked.wait_blocked())
        .await
        .expect("a send blocked");
    drop(router);
    let sent = blocked.attempts.lock().unwrap()[0].clone();
    // 99 events and the note of the skipped range fill it (max_events 100).
    assert_eq!((sent.first_offset, sent.last_offset), (0, 103));
    assert!(
        end <= 100,
        "the damaged batch ({first}..{end}) is in the first batch"
    );
    assert_eq!(
        engine
            .committed("router.lake.pending", "events", 0)
            .await
            .unwrap(),
        Some(104)
    );

    // The next run re-sends that batch from the log, meeting the same damage.
    let sink = TestSink::ok();
    let sinks = Sinks::with(&[("lake", Arc::clone(&sink))]);
    let opts = headwater_router::RouterOptions {
        batch_max_age: Duration::from_millis(100),
        ..options()
    };
    let router = start(&engine, LAKE, &sinks, opts).await;
    eventually("the route caught up", async || {
        committed(engine.as_ref(), "router.lake", "events").await == 200
    })
    .await;
    router.shutdown().await;

    let delivered = sink.delivered.lock().unwrap().clone();
    let resent = &delivered[0];
    assert_eq!((resent.first_offset, resent.last_offset), (0, 103));
    assert_eq!(
        ids(resent.events.iter().map(|e| e.envelope.clone())),
        ids(sent.events.iter().map(|e| e.envelope.clone())),
        "the re-sent batch holds the same events"
    );
    assert_eq!(ids(sink.delivered_events()), expected);
    let mut next = 0;
    for b in &delivered {
        assert_eq!(b.first_offset, next, "batches are contiguous");
        next = b.last_offset + 1;
    }
    assert_eq!(next, 200);

    // The loss is noted once in router.dlq, counted, and nothing else is dead-lettered.
    let dlq = engine
        .read(headwater_router::DLQ_TOPIC, 0, 0, 1 << 20, Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(dlq.len(), 1, "{dlq:?}");
    let header = |key: &str| {
        dlq[0]
            .headers
            .iter()
            .find(|h| h.key == key)
            .and_then(|h| h.value.clone())
            .map(|v| String::from_utf8(v.to_vec()).unwrap())
    };
    let range = format!("events/0/{first}-{}", end - 1);
    assert_eq!(header(headwater_router::SKIPPED_HEADER), Some(range));
    assert_eq!(
        header(headwater_router::ROUTE_HEADER).as_deref(),
        Some("lake")
    );
    let error = header(headwater_schemas::headers::ERROR).unwrap();
    assert!(error.contains("crc mismatch"), "{error}");
    let text = metrics.render();
    let skipped = value(
        &text,
        headwater_router::metrics::OFFSETS_SKIPPED_TOTAL,
        &["route=\"lake\"", "reason=\"corrupt\""],
    );
    // Counted by the run that met the damage and again by the one that rebuilt the batch, as
    // every per-record metric is after a crash.
    assert_eq!(skipped, Some(2.0 * (end - first) as f64), "{text}");
    engine.close().await.unwrap();
}
