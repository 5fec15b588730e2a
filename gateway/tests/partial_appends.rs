//! A 503 after the write happened (issue 14, class 14): what the log durably wrote before a
//! failure, or after the request timed out, is recorded in the dedup, so the client's retry of
//! the whole batch appends only what was not written.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails by panicking

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::TestGateway;
use headwater_gateway::GatewayConfig;
use headwater_log::{LogError, MemoryLog, partition_for_key};
use headwater_testing::{Call, ForwardingLog, LogOp};

/// Partitions of a topic of the default log config.
const PARTITIONS: u32 = 4;

async fn post(gw: &TestGateway, body: &str) -> (u16, String) {
    let response = reqwest::Client::new()
        .post(gw.url("/v1/events"))
        .header("content-type", "application/json")
        .body(body.to_owned())
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.text().await.unwrap())
}

fn event(id: &str, event_type: &str, source: &str) -> String {
    format!(r#"{{"id":"{id}","type":"{event_type}","source":"{source}","payload":{{"n":1}}}}"#)
}

/// Two sources whose records land on different partitions, the lower partition first.
fn sources_on_two_partitions() -> ((String, i32), (String, i32)) {
    let on = |s: &str| (s.to_owned(), partition_for_key(s.as_bytes(), PARTITIONS));
    let first = on("s0");
    let second = (1..100)
        .map(|i| on(&format!("s{i}")))
        .find(|(_, p)| *p > first.1)
        .or_else(|| {
            (1..100)
                .map(|i| on(&format!("s{i}")))
                .find(|(_, p)| *p < first.1)
        })
        .unwrap();
    if first.1 < second.1 {
        (first, second)
    } else {
        (second, first)
    }
}

#[tokio::test]
async fn a_retry_after_one_partition_failed_appends_only_that_partitions_events() {
    let memory = Arc::new(MemoryLog::default());
    let dir = tempfile::tempdir().unwrap();
    let gw = TestGateway::start_with(GatewayConfig::default(), memory.clone(), None, dir).await;
    let ((low, _), (high, high_partition)) = sources_on_two_partitions();
    let body = format!(
        "[{},{},{}]",
        event("a1", "ok.a", &low),
        event("a2", "ok.a", &low),
        event("b1", "ok.a", &high)
    );
    memory.set_failing_partition(Some(("events", high_partition)));
    let (status, answer) = post(&gw, &body).await;
    assert_eq!(status, 503, "{answer}");
    assert_eq!(
        gw.records("events").await.len(),
        2,
        "the lower partition's events were written before the failure"
    );

    memory.set_failing_partition(None);
    let (status, answer) = post(&gw, &body).await;
    assert_eq!(status, 200, "{answer}");
    let records = gw.records("events").await;
    assert_eq!(
        records.len(),
        3,
        "the retry appends only the failed partition's event: {records:?}"
    );
    let ids: Vec<String> = records
        .iter()
        .filter_map(|r| common::header(r, "hw.id"))
        .collect();
    let mut sorted = ids.clone();
    sorted.sort();
    assert_eq!(sorted, ["a1", "a2", "b1"], "{ids:?}");
    gw.stop().await;
}

#[tokio::test]
async fn a_retry_after_one_topic_failed_appends_only_that_topics_events() {
    let log = Arc::new(ForwardingLog::new(Arc::new(MemoryLog::default())));
    let dir = tempfile::tempdir().unwrap();
    let gw = TestGateway::start_with(GatewayConfig::default(), log.clone(), None, dir).await;
    // `ok.a` goes to `events`, `bad.x` is dead-lettered to `events.dlq`, which fails.
    log.set_fault(LogOp::Append, |call: &Call<'_>| {
        (call.topic == Some("events.dlq")).then(|| {
            LogError::io(
                "appending to events.dlq",
                std::io::Error::from_raw_os_error(28),
            )
        })
    });
    let body = format!(
        "[{},{}]",
        event("v1", "ok.a", "s"),
        event("d1", "bad.x", "s")
    );
    let (status, answer) = post(&gw, &body).await;
    assert_eq!(status, 503, "{answer}");
    assert_eq!(gw.records("events").await.len(), 1);

    log.clear_fault(LogOp::Append);
    let (status, answer) = post(&gw, &body).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        gw.records("events").await.len(),
        1,
        "the retry must not append the written event again"
    );
    assert_eq!(gw.records("events.dlq").await.len(), 1);
    gw.stop().await;
}

#[tokio::test]
async fn an_append_past_the_request_timeout_completes_and_the_retry_appends_nothing() {
    let log = Arc::new(ForwardingLog::new(Arc::new(MemoryLog::default())));
    let dir = tempfile::tempdir().unwrap();
    let mut config = GatewayConfig::default();
    config.limits.request_timeout_ms = 300;
    let gw = TestGateway::start_with(config, log.clone(), None, dir).await;
    log.set_delay(LogOp::Append, Duration::from_millis(1500));
    let body = format!("[{}]", event("t1", "ok.a", "s"));
    let (status, answer) = post(&gw, &body).await;
    assert_eq!(status, 503, "the request timed out: {answer}");

    // The append was under way when the request was dropped: it completes.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while gw.records("events").await.is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the append in flight was dropped with the request"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    log.set_delay(LogOp::Append, Duration::ZERO);
    let (status, answer) = post(&gw, &body).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        gw.records("events").await.len(),
        1,
        "the retry must not append the event again"
    );
    gw.stop().await;
}
