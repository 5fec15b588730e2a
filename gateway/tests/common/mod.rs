//! A gateway served on 127.0.0.1:0 over a real log engine in a temp dir, for black-box tests.

#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use headwater_gateway::decode::IncomingEvent;
use headwater_gateway::{
    AppState, Collector, CollectorParts, GatewayConfig, Invalid, SchemaRegistry, ServeOptions,
    Validate, Verdict,
};
use headwater_log::{Log, LogConfig, LogEngine, StoredRecord};
use headwater_schemas::{LoadOptions, Rejection, RejectionKind};
use tokio::sync::oneshot;

/// Accepts types starting with `ok.` into `events`; rejects every other type.
pub(crate) struct OkTypes;

impl Validate for OkTypes {
    fn validate(&self, event: &IncomingEvent) -> Result<Verdict, Invalid> {
        if event.event_type.starts_with("ok.") {
            Ok(Verdict {
                topic: "events".into(),
                version: event.version.unwrap_or(1),
            })
        } else {
            Err(Invalid::Schema(Rejection {
                kind: RejectionKind::UnknownType,
                reason: format!("unknown event type `{}`", event.event_type),
            }))
        }
    }

    fn knows_type(&self, event_type: &str) -> bool {
        event_type.starts_with("ok.")
    }
}

pub(crate) struct Ready;

impl headwater_gateway::Readiness for Ready {
    fn check(&self) -> headwater_gateway::ReadinessFuture<'_> {
        Box::pin(async { Ok(()) })
    }
}

pub(crate) struct TestGateway {
    pub base: String,
    pub addr: std::net::SocketAddr,
    pub engine: Option<Arc<LogEngine>>,
    pub log: Arc<dyn Log>,
    pub dir: tempfile::TempDir,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl TestGateway {
    /// Starts over a fresh log engine.
    pub(crate) async fn start(config: GatewayConfig) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let engine = LogEngine::open(dir.path(), LogConfig::default()).unwrap();
        Self::start_with(config, engine.clone(), Some(engine), dir).await
    }

    /// Starts over a fresh log engine, validating with the schemas shipped in schemas/events.
    pub(crate) async fn start_with_shipped_schemas(config: GatewayConfig) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let engine = LogEngine::open(dir.path(), LogConfig::default()).unwrap();
        let shipped = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../schemas/events");
        let registry = Arc::new(SchemaRegistry::load(&shipped, LoadOptions::default()).unwrap());
        Self::start_full(config, engine.clone(), Some(engine), dir, Some(registry)).await
    }

    /// Starts over any `Log`.
    pub(crate) async fn start_with(
        config: GatewayConfig,
        log: Arc<dyn Log>,
        engine: Option<Arc<LogEngine>>,
        dir: tempfile::TempDir,
    ) -> Self {
        Self::start_full(config, log, engine, dir, None).await
    }

    /// Starts over any `Log`, with the schema registry when given, else [`OkTypes`].
    pub(crate) async fn start_full(
        config: GatewayConfig,
        log: Arc<dyn Log>,
        engine: Option<Arc<LogEngine>>,
        dir: tempfile::TempDir,
        schemas: Option<Arc<SchemaRegistry>>,
    ) -> Self {
        let validator: Arc<dyn Validate> = match &schemas {
            Some(registry) => registry.clone(),
            None => Arc::new(OkTypes),
        };
        let collector = Collector::new(CollectorParts {
            config: config.clone(),
            log: log.clone(),
            validator,
            dlq_topic: "events.dlq".to_owned(),
        });
        let state = AppState {
            metrics: headwater_gateway::metrics::install(),
            readiness: Arc::new(Ready),
            collector: Arc::new(collector),
            schemas,
        };
        let router = headwater_gateway::app(state, &config);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let tls = config
            .tls
            .enabled()
            .then(|| headwater_gateway::tls::server_config(&config.tls).unwrap());
        let options = ServeOptions {
            header_read_timeout: Duration::from_millis(config.header_read_timeout_ms),
            grace: Duration::from_secs(5),
            tls,
        };
        let task = tokio::spawn(headwater_gateway::serve(
            listener,
            router,
            async move {
                let _ = stopped.await;
            },
            options.with_connections(&config),
        ));
        Self {
            base: format!("http://{addr}"),
            addr,
            engine,
            log,
            dir,
            stop: Some(stop),
            task: Some(task),
        }
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Every record of a topic, all partitions, in partition then offset order.
    pub(crate) async fn records(&self, topic: &str) -> Vec<StoredRecord> {
        let Ok(partitions) = self.log.partitions(topic).await else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for p in 0..partitions as i32 {
            let mut offset = self.log.offsets(topic, p).await.unwrap().log_start;
            loop {
                let hw = self.log.offsets(topic, p).await.unwrap().high_watermark;
                if offset >= hw {
                    break;
                }
                let batch = self
                    .log
                    .read(topic, p, offset, 1 << 20, Duration::from_millis(10))
                    .await
                    .unwrap();
                offset = batch.last().map_or(hw, |r| r.offset + 1);
                out.extend(batch);
            }
        }
        out
    }

    pub(crate) async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.unwrap().unwrap();
        }
    }
}

/// The value of a header of a stored record, as text.
pub(crate) fn header(record: &StoredRecord, name: &str) -> Option<String> {
    record
        .headers
        .iter()
        .rev()
        .find(|h| h.key == name)
        .and_then(|h| h.value.as_ref())
        .map(|v| String::from_utf8_lossy(v).into_owned())
}
