//! Router runtime against a `MemoryLog` and scripted sinks: filter/projection/sampling,
//! isolation, dead letters, idle batches, several sinks, shutdown and reload.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails by panicking

mod support;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use headwater_log::{Log, Record};
use headwater_router::rules::unit_hash;
use headwater_router::{DLQ_TOPIC, check_routes};
use headwater_schemas::headers::dlq_reason;
use headwater_sinks::Delivery;
use serde_json::json;
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filter_projection_and_sampling_apply_as_written() {
    let log = log_with(2).await;
    let mut envs = events(300);
    for (i, e) in envs.iter_mut().enumerate() {
        if i % 3 == 0 {
            e.event_type = "playback.stop".into();
        }
    }
    append(log.as_ref(), "events", &envs).await;
    let yaml = "\
routes:
  - name: starts
    source: {topics: [events], types: [playback.start]}
    filter: {field: payload.i, ge: 100}
    projection: {include: [i, extra.k], rename: {extra.k: k}}
    batch: {max_age_ms: 100}
    sinks: [{type: test}]
  - name: sampled
    source: {topics: [events]}
    sample: {rate: 0.3, by: id}
    batch: {max_age_ms: 100}
    sinks: [{type: test}]
";
    let sinks = Sinks::default();
    let router = start(&log, yaml, &sinks, options()).await;
    eventually("both routes caught up", async || {
        committed(log.as_ref(), "router.starts", "events").await == 300
            && committed(log.as_ref(), "router.sampled", "events").await == 300
    })
    .await;
    let starts = sinks.get("starts").delivered_events();
    let want: BTreeSet<usize> = (100..300).filter(|i| i % 3 != 0).collect();
    let got: BTreeSet<usize> = starts
        .iter()
        .map(|e| {
            let p: serde_json::Value = serde_json::from_slice(&e.payload).unwrap();
            assert_eq!(p.as_object().unwrap().len(), 3, "{p}");
            assert_eq!(p["extra"], json!({}), "renaming leaves the parent");
            assert_eq!(p["k"], json!(p["i"].as_u64().unwrap() % 3));
            p["i"].as_u64().unwrap() as usize
        })
        .collect();
    assert_eq!(got, want);
    let sampled: BTreeSet<String> = sinks
        .get("sampled")
        .delivered_events()
        .into_iter()
        .map(|e| e.id)
        .collect();
    let want: BTreeSet<String> = envs
        .iter()
        .filter(|e| unit_hash(e.id.as_bytes()) < 0.3)
        .map(|e| e.id.clone())
        .collect();
    assert_eq!(sampled, want);
    assert!((50..130).contains(&sampled.len()), "{}", sampled.len());
    router.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_sink_delays_only_its_own_route() {
    let log = log_with(2).await;
    append(log.as_ref(), "events", &events(200)).await;
    let broken = TestSink::scripted(|_, _| Action::Fail);
    let sinks = Sinks::with(&[("down", Arc::clone(&broken))]);
    let yaml = "\
routes:
  - name: down
    source: {topics: [events]}
    sinks: [{type: test}]
  - name: up
    source: {topics: [events]}
    sinks: [{type: test}]
";
    let opts = headwater_router::RouterOptions {
        batch_max_age: Duration::from_millis(100),
        ..options()
    };
    let router = start(&log, yaml, &sinks, opts).await;
    eventually("the healthy route delivered everything", async || {
        committed(log.as_ref(), "router.up", "events").await == 200
    })
    .await;
    append(log.as_ref(), "events", &events(10)).await;
    eventually("the healthy route keeps flowing", async || {
        committed(log.as_ref(), "router.up", "events").await == 210
    })
    .await;
    assert_eq!(committed(log.as_ref(), "router.down", "events").await, 0);
    assert!(
        broken.attempts.lock().unwrap().len() > 2,
        "the failed batch is retried"
    );
    // The destination comes back: nothing was lost.
    broken.set_script(|_, _| Action::Deliver(Delivery::all()));
    eventually("the broken route caught up", async || {
        committed(log.as_ref(), "router.down", "events").await == 210
    })
    .await;
    let ids: BTreeSet<String> = broken
        .delivered_events()
        .into_iter()
        .map(|e| e.id)
        .collect();
    assert_eq!(ids.len(), 200, "ev-00000..ev-00199 (the last 10 reuse ids)");
    router.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejected_and_undecodable_events_land_in_the_dlq_with_reasons() {
    let log = log_with(1).await;
    append(log.as_ref(), "events", &events(20)).await;
    log.append(
        "events",
        vec![Record {
            value: Some(bytes::Bytes::from_static(b"no envelope")),
            ..Record::default()
        }],
    )
    .await
    .unwrap();
    // First answer: events 0 and 1 to retry, every 5th refused; then all delivered.
    let sink = TestSink::scripted(|b, n| {
        if n == 0 {
            let rejected = (0..b.events.len())
                .filter(|i| b.events[*i].offset % 5 == 0)
                .map(|i| (i, format!("mapping conflict at {}", b.events[i].offset)))
                .collect();
            Action::Deliver(Delivery {
                retry: vec![1, 2],
                rejected,
            })
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
    eventually("committed", async || {
        committed(log.as_ref(), "router.lake", "events").await == 21
    })
    .await;
    let attempts = sink.attempts.lock().unwrap().clone();
    assert_eq!(
        attempts[1].events.len(),
        2,
        "only the retry items are re-sent"
    );
    assert_eq!((attempts[1].first_offset, attempts[1].last_offset), (0, 20));
    let dlq = read_all(&log, DLQ_TOPIC).await;
    let reasons: Vec<String> = dlq
        .iter()
        .filter_map(|r| {
            dlq_reason(
                r.headers
                    .iter()
                    .map(|h| (h.key.as_ref(), h.value.clone().unwrap_or_default())),
            )
        })
        .collect();
    assert_eq!(
        dlq.len(),
        5,
        "offsets 0, 5, 10, 15 refused + 1 undecodable: {reasons:?}"
    );
    assert!(
        reasons.iter().any(|r| r == "mapping conflict at 5"),
        "{reasons:?}"
    );
    assert!(
        reasons.iter().any(|r| r.contains("missing header")),
        "{reasons:?}"
    );
    for r in &dlq {
        let route = r.headers.iter().find(|h| h.key == "hw.route");
        assert_eq!(route.and_then(|h| h.value.as_deref()), Some(&b"lake"[..]));
    }
    assert_eq!(sink.delivered_events().len(), 16);
    router.shutdown().await;
}

// Paused clock: the batch's age is measured in virtual time, exactly.
#[tokio::test(start_paused = true)]
async fn an_idle_partition_closes_its_batch_on_age() {
    let log = log_with(1).await;
    let sinks = Sinks::default();
    let yaml = "routes:\n  - name: lake\n    source: {topics: [events]}\n    batch: {max_events: 1000, max_age_ms: 300}\n    sinks: [{type: test}]\n";
    let router = start(&log, yaml, &sinks, options()).await;
    append(log.as_ref(), "events", &events(10)).await;
    let t0 = tokio::time::Instant::now();
    eventually("the batch closed", async || {
        committed(log.as_ref(), "router.lake", "events").await == 10
    })
    .await;
    let waited = t0.elapsed();
    assert!(waited >= Duration::from_millis(300), "{waited:?}");
    assert!(waited < Duration::from_millis(400), "{waited:?}");
    let delivered = sinks.get("lake").delivered.lock().unwrap().clone();
    assert_eq!(delivered.len(), 1);
    assert_eq!(
        (delivered[0].first_offset, delivered[0].last_offset),
        (0, 9)
    );
    router.shutdown().await;
}

// Paused clock: the sleep below is 59 s of virtual time, in which every task runs until it
// waits; the batch (60 s age) must still be open after it, whatever the machine's load.
#[tokio::test(start_paused = true)]
async fn shutdown_delivers_the_open_batch_commits_and_flushes() {
    let log = log_with(1).await;
    let sinks = Sinks::default();
    let router = start(&log, LAKE, &sinks, options()).await;
    append(log.as_ref(), "events", &events(10)).await;
    tokio::time::sleep(Duration::from_secs(59)).await;
    let sink = sinks.get("lake");
    assert!(
        sink.delivered.lock().unwrap().is_empty(),
        "batch still open 59 s after its first event (60 s age)"
    );
    router.shutdown().await;
    assert_eq!(sink.delivered_events().len(), 10);
    assert_eq!(
        log.committed("router.lake", "events", 0).await.unwrap(),
        Some(10)
    );
    assert_eq!(sink.flushes.load(Ordering::SeqCst), 1);
}

// Paused clock: see `settle`.
#[tokio::test(start_paused = true)]
async fn reload_restarts_only_changed_routes() {
    let log = log_with(1).await;
    let sinks = Sinks::default();
    let two = "routes:\n  - {name: a, source: {topics: [events]}, sinks: [{type: test}]}\n  - {name: b, source: {topics: [events]}, sinks: [{type: test}]}\n";
    let router = start(&log, two, &sinks, options()).await;
    assert_eq!(*sinks.built.lock().unwrap(), ["a", "b"]);
    let changed = "routes:\n  - {name: a, source: {topics: [events]}, sinks: [{type: test}]}\n  - {name: b, source: {topics: [events], types: [x]}, sinks: [{type: test}]}\n  - {name: c, source: {topics: [events]}, sinks: [{type: test}]}\n";
    router.reload(check_routes(changed).unwrap()).await.unwrap();
    assert_eq!(*sinks.built.lock().unwrap(), ["a", "b", "b", "c"]);
    assert_eq!(
        sinks.get("b").flushes.load(Ordering::SeqCst),
        1,
        "old b stopped"
    );
    assert_eq!(
        sinks.get("a").flushes.load(Ordering::SeqCst),
        0,
        "a untouched"
    );
    assert_eq!(router.routes().routes.len(), 3);
    append(log.as_ref(), "events", &events(5)).await;
    settle().await; // every route's task has taken the 5 events into its open batch
    router.shutdown().await;
    for (g, want) in [("router.a", 5), ("router.b", 5), ("router.c", 5)] {
        assert_eq!(committed(log.as_ref(), g, "events").await, want, "{g}");
    }
}

// Paused clock: the watcher's file reads run on blocking threads, which hold the virtual
// clock still until they finish, so 200 virtual ms are 10 ticks of the 20 ms watcher.
#[tokio::test(start_paused = true)]
async fn the_routes_file_is_watched_and_a_broken_one_keeps_the_old_routes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("routes.yaml");
    std::fs::write(&path, LAKE).unwrap();
    let path = path.to_str().unwrap().to_owned();
    let log = log_with(1).await;
    let sinks = Sinks::default();
    let router = Arc::new(start(&log, LAKE, &sinks, options()).await);
    let watcher =
        headwater_router::spawn_routes_watcher(&router, path.clone(), Duration::from_millis(20));
    settle().await; // the watcher has read the file it starts from
    std::fs::write(&path, "routes:\n  - name: lake\n    sinks: []\n").unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let routes = router.routes();
    assert_eq!(routes.routes.len(), 1, "old routes kept");
    assert_eq!(routes.routes[0].name.as_ref(), "lake", "old routes kept");
    assert_eq!(routes.routes[0].sinks.len(), 1, "old routes kept");
    assert!(router.reload_file(&path).await.is_err());
    let two = format!(
        "{LAKE}  - {{name: more, source: {{topics: [events]}}, sinks: [{{type: test}}]}}\n"
    );
    std::fs::write(&path, two).unwrap();
    eventually("the new file applied", async || {
        router.routes().routes.len() == 2
    })
    .await;
    router.shutdown().await;
    assert!(
        router.reload_file(&path).await.is_err(),
        "no reload after shutdown"
    );
    watcher.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_route_with_two_sinks_commits_only_when_both_confirmed() {
    let log = log_with(1).await;
    append(log.as_ref(), "events", &events(50)).await;
    let flaky = TestSink::scripted(|_, n| {
        if n < 3 {
            Action::Fail
        } else {
            Action::Deliver(Delivery::all())
        }
    });
    let sinks = Sinks::with(&[("lake", Arc::clone(&flaky))]);
    let steady = TestSink::ok();
    let s2 = Arc::clone(&steady);
    let factory_sinks = sinks.clone();
    let factory: headwater_router::SinkFactory = Arc::new(move |spec| {
        if spec.label == "test#2" {
            Ok(Arc::clone(&s2) as Arc<dyn headwater_sinks::Sink>)
        } else {
            (factory_sinks.factory())(spec)
        }
    });
    let yaml = "routes:\n  - name: lake\n    source: {topics: [events]}\n    batch: {max_age_ms: 100}\n    sinks: [{type: test}, {type: test}]\n";
    let router = headwater_router::Router::start(headwater_router::RouterParts {
        log: Arc::clone(&log) as Arc<dyn Log>,
        routes: check_routes(yaml).unwrap(),
        sink_factory: factory,
        options: options(),
    })
    .await
    .unwrap();
    eventually("steady sink delivered", async || {
        steady.delivered_events().len() == 50
    })
    .await;
    eventually("committed once the flaky sink confirmed", async || {
        committed(log.as_ref(), "router.lake", "events").await == 50
    })
    .await;
    assert_eq!(flaky.delivered_events().len(), 50);
    assert_eq!(
        flaky.attempts.lock().unwrap().len(),
        4,
        "3 failures then success"
    );
    assert_eq!(
        steady.attempts.lock().unwrap().len(),
        1,
        "the steady sink is not re-sent to"
    );
    router.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dead_letter_topic_is_created_when_the_log_does_not_auto_create() {
    let config = headwater_log::LogConfig {
        auto_create_topics: false,
        ..headwater_log::LogConfig::default()
    };
    let log = Arc::new(headwater_log::MemoryLog::new(config));
    log.create_topic("events", 1).await.unwrap();
    let router = start(&log, LAKE, &Sinks::default(), options()).await;
    assert!(
        log.list_topics()
            .await
            .unwrap()
            .contains(&DLQ_TOPIC.to_owned())
    );
    router.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_picks_up_a_topic_that_gained_partitions() {
    let log = Arc::new(headwater_log::MemoryLog::default());
    log.create_topic("events", 1).await.unwrap();
    let sinks = Sinks::default();
    let yaml = "routes:\n  - {name: lake, source: {topics: [events, later]}, batch: {max_age_ms: 50}, sinks: [{type: test}]}\n";
    let router = start(&log, yaml, &sinks, options()).await;
    // `later` was auto-created with the default partition count; recreate it bigger.
    log.delete_topic("later").await.unwrap();
    log.create_topic("later", 6).await.unwrap();
    router.refresh_partitions().await.unwrap();
    assert_eq!(
        sinks.built.lock().unwrap().len(),
        2,
        "restarted for the new partitions"
    );
    let mut e = event(1, "x", json!({}));
    e.source = "s".into();
    let mut rec = record(&e);
    rec.partition = Some(5);
    log.append("later", vec![rec]).await.unwrap();
    eventually("partition 5 routed", async || {
        log.committed("router.lake", "later", 5).await.unwrap() == Some(1)
    })
    .await;
    router.reload((*router.routes()).clone()).await.unwrap();
    assert_eq!(
        sinks.built.lock().unwrap().len(),
        2,
        "nothing changed: untouched"
    );
    router.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undecodable_records_fill_batches_as_events_do() {
    let log = log_with(1).await;
    let broken: Vec<Record> = (0..250)
        .map(|i| Record {
            value: Some(bytes::Bytes::from(format!("no envelope {i}"))),
            ..Record::default()
        })
        .collect();
    log.append("events", broken).await.unwrap();
    let sinks = Sinks::with(&[("lake", TestSink::ok())]);
    // A batch is due only after an hour: only `max_events` (100) can close one.
    let opts = headwater_router::RouterOptions {
        batch_max_age: Duration::from_secs(3600),
        ..options()
    };
    let router = start(&log, LAKE, &sinks, opts).await;
    eventually("two full batches of dead letters committed", async || {
        committed(log.as_ref(), "router.lake", "events").await == 200
    })
    .await;
    assert_eq!(read_all(&log, DLQ_TOPIC).await.len(), 200);
    // The last 50 wait in the open batch, which a graceful stop delivers.
    router.shutdown().await;
    assert_eq!(committed(log.as_ref(), "router.lake", "events").await, 250);
    assert_eq!(read_all(&log, DLQ_TOPIC).await.len(), 250);
}
