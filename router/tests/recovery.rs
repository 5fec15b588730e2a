//! At-least-once with exact batch bounds: a crash between the pending commit and the commit
//! (memory log and the embedded engine reopened), and a sink that panics.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails by panicking

mod support;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use headwater_log::Log;
use headwater_sinks::Delivery;
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_between_pending_and_commit_resends_the_identical_batch() {
    let log = log_with(2).await;
    let all = events(1000);
    append(log.as_ref(), "events", &all).await;
    // The 4th send blocks forever: the router recorded the batch end, then "crashes".
    let first = TestSink::scripted(|_, n| {
        if n == 3 {
            Action::Block
        } else {
            Action::Deliver(Delivery::all())
        }
    });
    let sinks = Sinks::with(&[("lake", Arc::clone(&first))]);
    let router = start(&log, LAKE, &sinks, options()).await;
    tokio::time::timeout(Duration::from_secs(10), first.wait_blocked())
        .await
        .expect("a send blocked");
    let blocked = first.attempts.lock().unwrap()[3].clone();
    let p = blocked.partition;
    let pending = log
        .committed("router.lake.pending", "events", p)
        .await
        .unwrap();
    let done = log.committed("router.lake", "events", p).await.unwrap();
    assert_eq!(
        pending,
        Some(blocked.last_offset + 1),
        "end recorded before the send"
    );
    assert_eq!(done.unwrap_or(0), blocked.first_offset, "not committed yet");
    drop(router); // crash: no shutdown, no flush, no commit
    // Aborting a task takes effect at its next await: until every task of the crashed router
    // has stopped, the other partition's may still deliver and commit. A real crash stops
    // them all at once; wait for that before "restarting".
    drop(sinks);
    eventually("the crashed router's tasks stopped", async || {
        Arc::strong_count(&first) == 1
    })
    .await;

    // Restart with other batch limits: the unfinished batch must still come back unchanged.
    let second = TestSink::ok();
    let sinks = Sinks::with(&[("lake", Arc::clone(&second))]);
    let opts = headwater_router::RouterOptions {
        batch_max_events: 1000,
        batch_max_age: Duration::from_millis(100),
        ..options()
    };
    let router = start(&log, LAKE, &sinks, opts).await;
    eventually("every offset committed", async || {
        committed(log.as_ref(), "router.lake", "events").await == 1000
    })
    .await;
    let resent = second
        .delivered
        .lock()
        .unwrap()
        .iter()
        .find(|b| b.partition == p)
        .cloned()
        .expect("a batch for the crashed partition");
    assert_eq!(
        resent, blocked,
        "re-sent batch is identical, bounds and events"
    );

    let mut ids: Vec<String> = first.delivered_events().into_iter().map(|e| e.id).collect();
    ids.extend(second.delivered_events().into_iter().map(|e| e.id));
    let unique: BTreeSet<String> = ids.iter().cloned().collect();
    let expected: BTreeSet<String> = all.iter().map(|e| e.id.clone()).collect();
    assert_eq!(unique, expected, "every event delivered, no gap");
    // A batch confirmed but not yet committed at the crash (the other partition's task may
    // be there) comes again, identical; nothing else is delivered twice.
    let before = first.delivered.lock().unwrap().clone();
    let after = second.delivered.lock().unwrap().clone();
    let mut twice = 0;
    for b in &after {
        if let Some(old) = before.iter().find(|o| {
            (o.partition, o.first_offset, o.last_offset)
                == (b.partition, b.first_offset, b.last_offset)
        }) {
            assert_eq!(old, b, "a re-sent batch is identical");
            twice += b.events.len();
        }
    }
    assert_eq!(
        ids.len(),
        1000 + twice,
        "only whole re-sent batches are duplicated"
    );
    // Batches of a partition tile its offsets with no gap or overlap.
    for part in 0..2 {
        let mut next = 0;
        for b in before
            .iter()
            .chain(after.iter())
            .filter(|b| b.partition == part)
        {
            if b.first_offset < next {
                assert!(
                    before.contains(b),
                    "only a confirmed, uncommitted batch may repeat"
                );
                continue;
            }
            assert_eq!(b.first_offset, next, "partition {part}");
            next = b.last_offset + 1;
        }
        assert_eq!(
            next,
            log.offsets("events", part).await.unwrap().high_watermark
        );
    }
    router.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_embedded_engine_keeps_pending_and_committed_offsets_across_a_restart() {
    use headwater_log::{LogConfig, LogEngine};
    let dir = tempfile::tempdir().unwrap();
    let engine = LogEngine::open(dir.path(), LogConfig::default()).unwrap();
    engine.create_topic("events", 1).await.unwrap();
    let all = events(250);
    append(engine.as_ref(), "events", &all).await;
    let first = TestSink::scripted(|_, n| {
        if n == 1 {
            Action::Block
        } else {
            Action::Deliver(Delivery::all())
        }
    });
    let sinks = Sinks::with(&[("lake", Arc::clone(&first))]);
    let router = start(&engine, LAKE, &sinks, options()).await;
    tokio::time::timeout(Duration::from_secs(10), first.wait_blocked())
        .await
        .expect("a send blocked");
    drop(router);
    engine.close().await.unwrap();
    drop(engine);

    let engine = LogEngine::open(dir.path(), LogConfig::default()).unwrap();
    assert_eq!(
        engine.committed("router.lake", "events", 0).await.unwrap(),
        Some(100)
    );
    assert_eq!(
        engine
            .committed("router.lake.pending", "events", 0)
            .await
            .unwrap(),
        Some(200)
    );
    let second = TestSink::ok();
    let sinks = Sinks::with(&[("lake", Arc::clone(&second))]);
    let opts = headwater_router::RouterOptions {
        batch_max_age: Duration::from_millis(100),
        ..options()
    };
    let router = start(&engine, LAKE, &sinks, opts).await;
    eventually("caught up", async || {
        committed(engine.as_ref(), "router.lake", "events").await == 250
    })
    .await;
    let bounds: Vec<(i64, i64)> = second
        .delivered
        .lock()
        .unwrap()
        .iter()
        .map(|b| (b.first_offset, b.last_offset))
        .collect();
    assert_eq!(bounds, [(100, 199), (200, 249)]);
    router.shutdown().await;
    engine.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_sink_restarts_its_task_and_resends_the_same_batch() {
    let log = log_with(1).await;
    append(log.as_ref(), "events", &events(150)).await;
    let sink = TestSink::scripted(|_, n| {
        if n == 1 {
            Action::Panic
        } else {
            Action::Deliver(Delivery::all())
        }
    });
    let sinks = Sinks::with(&[("lake", Arc::clone(&sink))]);
    let opts = headwater_router::RouterOptions {
        batch_max_age: Duration::from_millis(100),
        ..options()
    };
    let router = start(&log, LAKE, &sinks, opts).await;
    eventually("caught up after the panic", async || {
        committed(log.as_ref(), "router.lake", "events").await == 150
    })
    .await;
    let attempts = sink.attempts.lock().unwrap().clone();
    assert_eq!(
        attempts[1], attempts[2],
        "the batch that panicked is re-sent unchanged"
    );
    let ids: BTreeSet<String> = sink.delivered_events().into_iter().map(|e| e.id).collect();
    assert_eq!(ids.len(), 150);
    router.shutdown().await;
}
