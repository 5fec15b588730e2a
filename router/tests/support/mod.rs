//! Test support: a scriptable sink, event appends to a `MemoryLog`, and a router start helper.

#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use headwater_log::{Header, Log, MemoryLog, Record};
use headwater_router::{
    Router, RouterHandle, RouterOptions, RouterParts, SinkFactory, SinkSpec, check_routes,
};
use headwater_schemas::{Envelope, PayloadFormat};
use headwater_sinks::{Batch, Delivery, SinkError};
pub(crate) use headwater_testing::eventually;

/// What the scripted sink does with one send.
pub(crate) enum Action {
    /// Confirm, with this delivery report.
    Deliver(Delivery),
    /// Fail the whole batch (retryable).
    Fail,
    /// Never answer (a hung destination, or a crash in the middle of a send).
    Block,
    /// Panic (a bug in a sink).
    Panic,
}

type Script = Box<dyn FnMut(&Batch, usize) -> Action + Send>;

/// A sink that records confirmed batches and does what its script says.
pub(crate) struct TestSink {
    script: Mutex<Script>,
    /// Batches confirmed (fully or partly), in order.
    pub delivered: Mutex<Vec<Batch>>,
    /// Every batch handed to `send`, confirmed or not.
    pub attempts: Mutex<Vec<Batch>>,
    /// Calls to `flush`.
    pub flushes: AtomicUsize,
    blocked: tokio::sync::Notify,
}

impl TestSink {
    /// A sink that confirms everything.
    pub(crate) fn ok() -> Arc<Self> {
        Self::scripted(|_, _| Action::Deliver(Delivery::all()))
    }

    /// A sink following `script(batch, attempt number from 0)`.
    pub(crate) fn scripted(
        script: impl FnMut(&Batch, usize) -> Action + Send + 'static,
    ) -> Arc<Self> {
        Arc::new(Self {
            script: Mutex::new(Box::new(script)),
            delivered: Mutex::new(Vec::new()),
            attempts: Mutex::new(Vec::new()),
            flushes: AtomicUsize::new(0),
            blocked: tokio::sync::Notify::new(),
        })
    }

    /// Replaces the script.
    pub(crate) fn set_script(&self, script: impl FnMut(&Batch, usize) -> Action + Send + 'static) {
        *self.script.lock().unwrap() = Box::new(script);
    }

    /// Waits until a send blocks.
    pub(crate) async fn wait_blocked(&self) {
        self.blocked.notified().await;
    }

    /// Ids of every delivered event (minus those the sink rejected or asked to retry).
    pub(crate) fn delivered_events(&self) -> Vec<Envelope> {
        self.delivered
            .lock()
            .unwrap()
            .iter()
            .flat_map(|b| b.events.iter().map(|e| e.envelope.clone()))
            .collect()
    }
}

#[async_trait]
impl headwater_sinks::Sink for TestSink {
    fn kind(&self) -> &'static str {
        "test"
    }

    async fn send(&self, batch: Batch) -> Result<Delivery, SinkError> {
        let action = {
            let mut attempts = self.attempts.lock().unwrap();
            let n = attempts.len();
            attempts.push(batch.clone());
            (self.script.lock().unwrap())(&batch, n)
        };
        match action {
            Action::Deliver(d) => {
                let mut kept = batch.clone();
                kept.events = batch
                    .events
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| {
                        !d.retry.contains(i) && !d.rejected.iter().any(|(r, _)| r == i)
                    })
                    .map(|(_, e)| e.clone())
                    .collect();
                self.delivered.lock().unwrap().push(kept);
                Ok(d)
            }
            Action::Fail => Err(SinkError::Unavailable {
                sink: "test",
                reason: "scripted failure".into(),
                retry_after: None,
            }),
            Action::Panic => panic!("scripted sink panic"),
            Action::Block => {
                self.blocked.notify_one();
                std::future::pending().await
            }
        }
    }

    async fn flush(&self) -> Result<(), SinkError> {
        self.flushes.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    async fn healthcheck(&self) -> Result<(), SinkError> {
        Ok(())
    }
}

/// Sinks by route name, and how many times the factory built one.
#[derive(Default, Clone)]
pub(crate) struct Sinks {
    pub by_route: Arc<Mutex<HashMap<String, Arc<TestSink>>>>,
    pub built: Arc<Mutex<Vec<String>>>,
}

impl Sinks {
    pub(crate) fn with(pairs: &[(&str, Arc<TestSink>)]) -> Self {
        let s = Self::default();
        for (r, sink) in pairs {
            s.by_route
                .lock()
                .unwrap()
                .insert((*r).to_owned(), Arc::clone(sink));
        }
        s
    }

    /// A factory handing out the sink registered for the spec's route (a fresh `ok` one if none).
    pub(crate) fn factory(&self) -> SinkFactory {
        let me = self.clone();
        Arc::new(move |spec: &SinkSpec| {
            me.built.lock().unwrap().push(spec.route.to_string());
            let mut map = me.by_route.lock().unwrap();
            let sink = map
                .entry(spec.route.to_string())
                .or_insert_with(TestSink::ok)
                .clone();
            Ok(sink as Arc<dyn headwater_sinks::Sink>)
        })
    }

    pub(crate) fn get(&self, route: &str) -> Arc<TestSink> {
        Arc::clone(&self.by_route.lock().unwrap()[route])
    }
}

/// Fast options for tests.
pub(crate) fn options() -> RouterOptions {
    RouterOptions {
        batch_max_events: 100,
        batch_max_bytes: 8 * 1024 * 1024,
        batch_max_age: Duration::from_secs(60),
        poll_wait: Duration::from_millis(50),
        read_max_bytes: 64 * 1024,
        retry_initial: Duration::from_millis(5),
        retry_max: Duration::from_millis(40),
        shutdown_timeout: Duration::from_secs(5),
        dlq_topic: headwater_router::DLQ_TOPIC.to_owned(),
    }
}

/// An event like the gateway stores it.
pub(crate) fn event(i: usize, event_type: &str, payload: serde_json::Value) -> Envelope {
    Envelope {
        id: format!("ev-{i:05}"),
        event_type: event_type.to_owned(),
        version: 1,
        source: format!("tv-{}", i % 7),
        ts: 1_700_000_000_000 + i as i64,
        received_at: 1_700_000_000_000 + i as i64,
        tenant: "acme".into(),
        payload: Bytes::from(payload.to_string()),
        payload_format: PayloadFormat::Json,
    }
}

/// The log record of an envelope (key = source, value = payload, headers = envelope).
pub(crate) fn record(env: &Envelope) -> Record {
    Record {
        partition: None,
        key: Some(Bytes::from(env.source.clone())),
        value: Some(env.payload.clone()),
        headers: env.to_headers().into_iter().map(Header::from).collect(),
        timestamp_ms: -1,
    }
}

/// Appends `envs` to `topic`.
pub(crate) async fn append(log: &dyn Log, topic: &str, envs: &[Envelope]) {
    log.append(topic, envs.iter().map(record).collect())
        .await
        .unwrap();
}

/// Starts a router over `log` with `routes_yaml`.
pub(crate) async fn start<L: Log>(
    log: &Arc<L>,
    routes_yaml: &str,
    sinks: &Sinks,
    options: RouterOptions,
) -> RouterHandle {
    let routes = check_routes(routes_yaml).unwrap_or_else(|p| panic!("{p:?}"));
    Router::start(RouterParts {
        log: Arc::clone(log) as Arc<dyn Log>,
        routes,
        sink_factory: sinks.factory(),
        options,
    })
    .await
    .unwrap()
}

/// Sum over partitions of `group`'s committed offsets.
pub(crate) async fn committed(log: &dyn Log, group: &str, topic: &str) -> i64 {
    let n = log.partitions(topic).await.unwrap();
    let mut sum = 0;
    for p in 0..n as i32 {
        sum += log.committed(group, topic, p).await.unwrap().unwrap_or(0);
    }
    sum
}

/// With a paused clock (`#[tokio::test(start_paused = true)]`): returns once every task has run
/// until it waits (on a timer, a channel or a blocking thread), since the runtime moves a paused
/// clock only when no task can run. Without a paused clock it proves nothing.
pub(crate) async fn settle() {
    tokio::time::sleep(Duration::from_millis(1)).await;
}

/// One route, `lake`, reading `events` into a test sink.
pub(crate) const LAKE: &str =
    "routes:\n  - name: lake\n    source: {topics: [events]}\n    sinks: [{type: test}]\n";

pub(crate) async fn read_all(log: &MemoryLog, topic: &str) -> Vec<headwater_log::StoredRecord> {
    let mut out = Vec::new();
    for p in 0..log.partitions(topic).await.unwrap() as i32 {
        out.extend(
            log.read(topic, p, 0, 1 << 20, Duration::ZERO)
                .await
                .unwrap(),
        );
    }
    out
}

pub(crate) async fn log_with(partitions: u32) -> Arc<MemoryLog> {
    let log = Arc::new(MemoryLog::default());
    log.create_topic("events", partitions).await.unwrap();
    log
}

pub(crate) fn events(n: usize) -> Vec<headwater_schemas::Envelope> {
    (0..n)
        .map(|i| {
            event(
                i,
                "playback.start",
                serde_json::json!({"i": i, "title": "t", "extra": {"k": i % 3}}),
            )
        })
        .collect()
}
