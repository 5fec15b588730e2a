//! The gateway under log-tier faults and overload: 503 with Retry-After for what a retry can
//! fix, 500 without it for what it cannot, a record too large for its topic rejected alone,
//! nothing acknowledged that is not durable, and recovery once the fault clears.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails by panicking

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::TestGateway;
use headwater_gateway::GatewayConfig;
use headwater_gateway::config::Limits;
use headwater_log::{LogConfig, LogEngine, LogError, MemoryLog, StoredRecord, TopicConfig};
use headwater_testing::{Call, ForwardingLog, LogOp};
use serde_json::Value;

/// Linux's ENOSPC, which [`LogError::io`] classifies as disk full.
const ENOSPC: i32 = 28;

/// The append fails with "disk full", which a retry can fix once space returns.
fn disk_full(_: &Call<'_>) -> Option<LogError> {
    Some(LogError::io(
        "appending",
        std::io::Error::from_raw_os_error(ENOSPC),
    ))
}

/// The log refuses the append for good, which no retry can fix.
fn refused(call: &Call<'_>) -> Option<LogError> {
    Some(LogError::Refused {
        context: format!("appending to `{}`", call.topic.unwrap_or_default()),
        source: "TOPIC_AUTHORIZATION_FAILED".into(),
    })
}

async fn post(gw: &TestGateway, body: String) -> (u16, Option<String>, String) {
    let response = reqwest::Client::new()
        .post(gw.url("/v1/events"))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let retry = response
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_owned());
    (status, retry, response.text().await.unwrap())
}

fn batch(id: &str) -> String {
    format!(r#"[{{"id":"{id}","type":"ok.a","source":"s","payload":{{"n":1}}}}]"#)
}

/// A gateway with default settings over a [`ForwardingLog`] to memory that is not failing yet.
async fn faulty_gateway() -> (Arc<ForwardingLog>, TestGateway) {
    let log = Arc::new(ForwardingLog::new(Arc::new(MemoryLog::default())));
    let dir = tempfile::tempdir().unwrap();
    let gw = TestGateway::start_with(GatewayConfig::default(), log.clone(), None, dir).await;
    (log, gw)
}

#[tokio::test]
async fn a_full_disk_answers_503_and_nothing_is_acknowledged_until_space_returns() {
    let (log, gw) = faulty_gateway().await;
    log.set_fault(LogOp::Append, disk_full);
    let (status, retry, body) = post(&gw, batch("x1")).await;
    assert_eq!(status, 503, "{body}");
    assert!(
        log.calls(LogOp::Append) > 0,
        "the 503 must come from the failed append"
    );
    assert_eq!(retry.as_deref(), Some("1"));
    assert!(body.contains("log tier unavailable"), "{body}");
    assert!(gw.records("events").await.is_empty());
    // Space returns: the client's retry of the same id is appended, once.
    log.clear_fault(LogOp::Append);
    let (status, _, body) = post(&gw, batch("x1")).await;
    assert_eq!(status, 200, "{body}");
    let (status, _, _) = post(&gw, batch("x1")).await;
    assert_eq!(status, 200);
    assert_eq!(gw.records("events").await.len(), 1);
    gw.stop().await;
}

#[tokio::test]
async fn a_permanent_log_error_answers_500_without_retry_after() {
    let (log, gw) = faulty_gateway().await;
    log.set_fault(LogOp::Append, refused);
    let (status, retry, body) = post(&gw, batch("p1")).await;
    assert_eq!(status, 500, "{body}");
    assert!(
        log.calls(LogOp::Append) > 0,
        "the 500 must come from the refused append"
    );
    assert_eq!(retry, None, "a permanent failure must not invite a retry");
    assert!(body.contains("log tier refused the append"), "{body}");
    assert!(body.contains("TOPIC_AUTHORIZATION_FAILED"), "{body}");
    assert!(gw.records("events").await.is_empty());
    gw.stop().await;
}

#[tokio::test]
async fn a_record_too_large_for_its_topic_is_rejected_alone() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = LogConfig::default();
    config.topics.insert(
        "events".to_owned(),
        TopicConfig {
            max_message_bytes: Some(2048),
            ..TopicConfig::default()
        },
    );
    let engine = LogEngine::open(dir.path(), config).unwrap();
    let gw =
        TestGateway::start_with(GatewayConfig::default(), engine.clone(), Some(engine), dir).await;
    let big = "x".repeat(4096);
    let events: Vec<String> = (0..5)
        .map(|i| {
            let text = if i == 3 { big.as_str() } else { "small" };
            format!(r#"{{"id":"e{i}","type":"ok.a","source":"s","payload":{{"text":"{text}"}}}}"#)
        })
        .collect();
    let (status, retry, body) = post(&gw, format!("[{}]", events.join(","))).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(retry, None);
    let report: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(report["accepted"], 4, "{body}");
    assert_eq!(report["rejected"], 1, "{body}");
    assert_eq!(report["errors"][0]["index"], 3, "{body}");
    let reason = report["errors"][0]["reason"].as_str().unwrap();
    assert!(reason.contains("topic `events`"), "{reason}");
    assert!(
        reason.contains("exceeds the limit of 2048 bytes"),
        "{reason}"
    );
    // The others are durable, once each and in order; the retry of the batch adds nothing.
    let ids = |records: Vec<StoredRecord>| -> Vec<String> {
        records
            .iter()
            .filter_map(|r| common::header(r, "hw.id"))
            .collect()
    };
    assert_eq!(ids(gw.records("events").await), ["e0", "e1", "e2", "e4"]);
    let (status, _, body) = post(&gw, format!("[{}]", events.join(","))).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(gw.records("events").await.len(), 4);
    gw.stop().await;
}

#[tokio::test]
async fn requests_over_the_concurrency_limit_are_shed_with_503() {
    // Each append takes 800 ms, so the first request still holds the one slot when the others
    // arrive.
    let log = Arc::new(ForwardingLog::new(Arc::new(MemoryLog::default())));
    log.set_delay(LogOp::Append, Duration::from_millis(800));
    let config = GatewayConfig {
        limits: Limits {
            max_concurrent_requests: 1,
            ..Limits::default()
        },
        ..GatewayConfig::default()
    };
    let gw = TestGateway::start_with(config, log, None, tempfile::tempdir().unwrap()).await;
    let answers =
        futures::future::join_all((0..4).map(|i| post(&gw, batch(&format!("c{i}"))))).await;
    let statuses: Vec<u16> = answers.iter().map(|a| a.0).collect();
    assert!(statuses.contains(&200), "{statuses:?}");
    assert!(statuses.contains(&503), "{statuses:?}");
    for answer in answers.iter().filter(|a| a.0 == 503) {
        assert_eq!(answer.1.as_deref(), Some("1"));
        assert!(answer.2.contains("overloaded"), "{}", answer.2);
    }
    let accepted = statuses.iter().filter(|s| **s == 200).count();
    assert_eq!(gw.records("events").await.len(), accepted);
    gw.stop().await;
}
