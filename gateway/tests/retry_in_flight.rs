//! A retry that arrives while the first attempt's append is still under way (the request
//! timeout answered 503, or the client gave up on it) waits for that append's outcome: it is
//! answered as a duplicate once the append succeeds, and appends the events itself when the
//! append fails. Paused time: the log's append takes a second that nobody waits for.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails by panicking

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use headwater_gateway::auth::Principal;
use headwater_gateway::config::{DedupConfig, Limits};
use headwater_gateway::decode::{Decoded, IncomingEvent, PayloadFormat};
use headwater_gateway::dedup::Dedup;
use headwater_gateway::ingest::{BatchMetrics, FieldLimits, Pipeline, RequestMeta};
use headwater_gateway::{AcceptAll, IngestError};
use headwater_log::{Log, LogError, MemoryLog};
use headwater_testing::{ForwardingLog, LogOp};

fn pipeline(log: Arc<ForwardingLog>) -> Pipeline {
    Pipeline {
        log,
        validator: Arc::new(AcceptAll {
            topic: "events".to_owned(),
        }),
        dedup: Dedup::new(&DedupConfig::default()),
        max_event_bytes: 1 << 20,
        fields: FieldLimits::from(&Limits::default()),
        dlq_topic: "events.dlq".to_owned(),
        metrics: BatchMetrics::default(),
    }
}

fn meta() -> RequestMeta {
    RequestMeta {
        principal: Principal {
            tenant: Arc::from("acme"),
            key_index: 0,
        },
        client_ip: None,
        user_agent: None,
    }
}

fn batch(ids: &[&str]) -> Vec<Decoded> {
    ids.iter()
        .map(|id| {
            Decoded::Event(IncomingEvent {
                id: Some((*id).into()),
                event_type: "ok.a".into(),
                version: None,
                source: "tv-1".into(),
                ts: None,
                payload: Bytes::from_static(br#"{"n":1}"#),
                format: PayloadFormat::Json,
                attributes: Vec::new(),
                verdict: None,
            })
        })
        .collect()
}

/// Records in every partition of `topic`.
async fn stored(log: &dyn Log, topic: &str) -> i64 {
    let mut total = 0;
    for partition in 0..log.partitions(topic).await.unwrap() as i32 {
        let offsets = log.offsets(topic, partition).await.unwrap();
        total += offsets.high_watermark - offsets.log_start;
    }
    total
}

/// Starts `batch`'s publication until its append is under way, then drops the request, as the
/// request timeout does.
async fn start_and_drop(pipeline: &Pipeline, batch: Vec<Decoded>) {
    let meta = meta();
    let mut first = std::pin::pin!(pipeline.publish(&meta, batch));
    assert!(
        futures::poll!(first.as_mut()).is_pending(),
        "the append takes a second"
    );
}

/// Publishes a batch of two events whose append takes a second, drops that request once its
/// append is under way, and publishes the batch again (the client's retry) while that append
/// is still in flight; checks the retry's answer and that each event is stored once, and
/// returns the appends made.
async fn retry_while_in_flight(log: &ForwardingLog, pipeline: &Pipeline) -> usize {
    log.set_delay(LogOp::Append, Duration::from_secs(1));
    start_and_drop(pipeline, batch(&["e1", "e2"])).await;
    let report = pipeline
        .publish(&meta(), batch(&["e1", "e2"]))
        .await
        .unwrap();
    assert_eq!((report.accepted, report.rejected), (2, 0), "{report:?}");
    assert_eq!(stored(log, "events").await, 2, "each event stored once");
    log.calls(LogOp::Append)
}

#[tokio::test(start_paused = true)]
async fn a_retry_while_the_first_append_is_in_flight_is_answered_from_it() {
    let log = Arc::new(ForwardingLog::new(Arc::new(MemoryLog::default())));
    let pipeline = pipeline(log.clone());
    assert_eq!(
        retry_while_in_flight(&log, &pipeline).await,
        1,
        "the retry must not append the batch a second time"
    );
}

#[tokio::test(start_paused = true)]
async fn a_retry_while_the_first_append_is_in_flight_appends_when_that_append_fails() {
    let log = Arc::new(ForwardingLog::new(Arc::new(MemoryLog::default())));
    let fail_once = AtomicBool::new(true);
    log.set_fault(LogOp::Append, move |_| {
        fail_once.swap(false, Ordering::SeqCst).then(|| {
            LogError::io(
                "appending",
                std::io::Error::from_raw_os_error(28), // ENOSPC: retryable
            )
        })
    });
    let pipeline = pipeline(log.clone());
    assert_eq!(
        retry_while_in_flight(&log, &pipeline).await,
        2,
        "the retry appends after the failure"
    );
    // And from now on the events are duplicates.
    let again = pipeline
        .publish(&meta(), batch(&["e1", "e2"]))
        .await
        .unwrap();
    assert_eq!(again.accepted, 2);
    assert_eq!(log.calls(LogOp::Append), 2);
}

#[tokio::test(start_paused = true)]
async fn a_failed_append_with_nobody_waiting_leaves_the_ids_free() {
    let log = Arc::new(ForwardingLog::new(Arc::new(MemoryLog::default())));
    log.set_fault(LogOp::Append, |_| {
        Some(LogError::io(
            "appending",
            std::io::Error::from_raw_os_error(28),
        ))
    });
    let pipeline = pipeline(log.clone());
    let failed = pipeline.publish(&meta(), batch(&["e1"])).await;
    assert!(
        matches!(failed, Err(IngestError::Unavailable(_))),
        "{failed:?}"
    );
    log.clear_fault(LogOp::Append);
    let report = pipeline.publish(&meta(), batch(&["e1"])).await.unwrap();
    assert_eq!(report.accepted, 1);
    assert_eq!(stored(&*log, "events").await, 1);
}
