//! Read-ahead within a partition: while a batch is being sent, the task reads the records that
//! follow, so a partition's drain does not stop for every sink round trip; what it read ahead is
//! routed only after that delivery, in order.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails by panicking

mod support;

use std::sync::Arc;

use headwater_log::{Log, MemoryLog};
use headwater_sinks::Delivery;
use headwater_testing::{ForwardingLog, LogOp};
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_next_records_are_read_while_a_batch_is_sent_and_routed_after_it() {
    // Counts reads: the task only reads `events` (no batch is pending at its start).
    let log = Arc::new(ForwardingLog::new(Arc::new(MemoryLog::default())));
    log.create_topic("events", 1).await.unwrap();
    append(log.as_ref(), "events", &events(100)).await;
    // The first send hangs until the test lets it go; the others are confirmed.
    let sink = TestSink::scripted(|_, n| {
        if n == 0 {
            Action::Block
        } else {
            Action::Deliver(Delivery::all())
        }
    });
    let sinks = Sinks::with(&[("lake", Arc::clone(&sink))]);
    let opts = || headwater_router::RouterOptions {
        batch_max_events: 10,
        // A few records per read, so the first batch leaves records after it to read.
        read_max_bytes: 2048,
        ..options()
    };
    let router = start(&log, LAKE, &sinks, opts()).await;
    sink.wait_blocked().await;
    eventually(
        "the records after the first read are read while its batch hangs in the sink",
        async || log.calls(LogOp::Read) >= 2,
    )
    .await;
    // Nothing read ahead was routed or committed while the first batch is unconfirmed.
    assert_eq!(sink.attempts.lock().unwrap().len(), 1);
    assert_eq!(committed(log.as_ref(), "router.lake", "events").await, 0);
    router.shutdown().await;

    // A new router re-sends the unconfirmed batch and routes everything once, in order.
    sink.set_script(|_, _| Action::Deliver(Delivery::all()));
    let router = start(&log, LAKE, &sinks, opts()).await;
    eventually("everything routed", async || {
        committed(log.as_ref(), "router.lake", "events").await == 100
    })
    .await;
    let ids: Vec<String> = sink.delivered_events().into_iter().map(|e| e.id).collect();
    let expected: Vec<String> = events(100).into_iter().map(|e| e.id).collect();
    assert_eq!(ids, expected);
    router.shutdown().await;
}
