//! The router's metrics as Prometheus renders them: events in/out/filtered per route and sink,
//! a failing sink's health at 0 and its route's lag growing while a healthy route flows.
//! The clock is paused, so "100 ms later" is exact whatever the machine's load.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails by panicking

mod support;

use std::sync::Arc;
use std::time::Duration;

use metrics_exporter_prometheus::PrometheusBuilder;
use support::*;

fn value(text: &str, name: &str, labels: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(name) && l.contains(labels) && !l.starts_with('#'))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[tokio::test(start_paused = true)]
async fn metrics_show_flow_filtering_health_and_lag() {
    let handle = PrometheusBuilder::new()
        .install_recorder()
        .expect("first recorder in this test binary");
    headwater_router::metrics::describe();
    let log = log_with(1).await;
    append(log.as_ref(), "events", &events(30)).await;
    let broken = TestSink::scripted(|_, _| Action::Fail);
    let sinks = Sinks::with(&[("down", Arc::clone(&broken))]);
    let yaml = "\
routes:
  - name: down
    source: {topics: [events]}
    batch: {max_age_ms: 50}
    sinks: [{type: test}]
  - name: up
    source: {topics: [events]}
    filter: {field: payload.i, lt: 10}
    batch: {max_age_ms: 50}
    sinks: [{type: test, name: lake}]
";
    let router = start(&log, yaml, &sinks, options()).await;
    eventually("up caught up", async || {
        committed(log.as_ref(), "router.up", "events").await == 30
    })
    .await;
    // Ten more (all filtered out by `up`) while `down` keeps failing: its lag must grow.
    append(log.as_ref(), "events", &events(40)[30..]).await;
    eventually("up caught up again", async || {
        committed(log.as_ref(), "router.up", "events").await == 40
    })
    .await;
    // 100 virtual ms in which every task runs: `down` retries at least twice (retry_max 40 ms).
    tokio::time::sleep(Duration::from_millis(100)).await;
    let text = handle.render();
    let up = r#"route="up""#;
    let down = r#"route="down""#;
    assert_eq!(
        value(&text, "headwater_router_events_in_total", up),
        Some(40.0),
        "{text}"
    );
    assert_eq!(
        value(&text, "headwater_router_events_filtered_total", up),
        Some(30.0)
    );
    assert_eq!(
        value(
            &text,
            "headwater_router_events_out_total{",
            r#"sink="lake""#
        ),
        Some(10.0)
    );
    assert_eq!(
        value(&text, "headwater_router_sink_up{", r#"sink="lake""#),
        Some(1.0)
    );
    assert_eq!(
        value(&text, "headwater_router_consumer_lag{", up),
        Some(0.0)
    );
    assert_eq!(value(&text, "headwater_router_sink_up{", down), Some(0.0));
    assert_eq!(
        value(&text, "headwater_router_consumer_lag{", down),
        Some(40.0),
        "the failing route's lag follows the log while it retries"
    );
    assert!(value(&text, "headwater_router_events_failed_total{", down).unwrap_or(0.0) >= 30.0);
    assert!(
        text.contains("headwater_router_batch_latency_seconds"),
        "{text}"
    );
    // The down route cannot deliver: dropping the handle aborts its task (as a crash would).
    drop(router);
}
