//! Running the parts: `headwater serve` composes the gateway with the embedded log tier.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use headwater_gateway::{
    AppState, Collector, CollectorParts, OpsState, Readiness, ReadinessFuture, SchemaRegistry,
    ServeOptions,
};
use headwater_log::{Log, LogEngine, error_chain};
use headwater_schemas::LoadOptions;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::config::Config;

/// Ready when the log tier would take an append now and, on a log node of a cluster, the node
/// has joined every group and caught up with its leaders.
struct LogReadiness {
    log: Arc<dyn Log>,
    cluster: Option<Arc<crate::cluster::KafkaCluster>>,
}

impl Readiness for LogReadiness {
    fn check(&self) -> ReadinessFuture<'_> {
        Box::pin(async move {
            self.log
                .check_writable()
                .await
                .map_err(|e| error_chain(&e))?;
            match &self.cluster {
                Some(cluster) => cluster.readiness(),
                None => Ok(()),
            }
        })
    }
}

/// The embedded log, opened (and recovered) on a blocking thread.
async fn open_log(config: &Config) -> anyhow::Result<Arc<LogEngine>> {
    let log_dir = config.data_dir.join("log");
    let log_config = config.log.clone();
    let dir = log_dir.clone();
    tokio::task::spawn_blocking(move || LogEngine::open(&dir, log_config))
        .await
        .context("log recovery panicked")?
        .with_context(|| format!("opening the log in {}", log_dir.display()))
}

/// A running Kafka-protocol listener.
struct KafkaListener {
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

/// Binds `log.kafka_listen` and serves the Kafka protocol until `stop` flips; `schemas` check
/// what tenants produce (required when the listener authenticates clients).
async fn start_kafka(
    config: &Config,
    engine: Arc<LogEngine>,
    schemas: Option<Arc<SchemaRegistry>>,
    cluster: Option<Arc<crate::cluster::KafkaCluster>>,
    stop: watch::Receiver<bool>,
) -> anyhow::Result<KafkaListener> {
    let listener = TcpListener::bind(&config.log.kafka_listen)
        .await
        .with_context(|| format!("binding log.kafka_listen {}", config.log.kafka_listen))?;
    let bound = listener.local_addr()?;
    let advertised = match &config.log.advertised_listener {
        Some(addr) => addr
            .parse::<SocketAddr>()
            .with_context(|| format!("log.advertised_listener `{addr}` is not host:port"))?,
        None if bound.ip().is_unspecified() => anyhow::bail!(
            "log.kafka_listen {bound} binds every interface: set log.advertised_listener to the \
             address Kafka clients should connect to"
        ),
        None => bound,
    };
    let security = crate::kafka_security::build(config, bound, schemas)?;
    tracing::info!(kafka = %bound, %advertised, "kafka protocol listening");
    let mut options = headwater_kafka::KafkaOptions::advertising(advertised);
    options.limits = headwater_kafka::Limits::from_config(&config.log);
    if config.log.kafka_tls.enabled() {
        let tls = headwater_kafka::tls::server_config(&config.log.kafka_tls);
        options.tls = Some(tls.context("log.kafka_tls")?);
    }
    options.sasl = security.sasl;
    options.client_principals = security.client_principals;
    options.authorizer = security.authorizer;
    options.policy = security.policy;
    if let Some(cluster) = cluster {
        options.node_id = cluster.broker_id();
        options.cluster = Some(cluster);
    }
    let task = tokio::spawn(headwater_kafka::serve(engine, listener, options, stop));
    Ok(KafkaListener { task })
}

impl KafkaListener {
    async fn stopped(self) -> anyhow::Result<()> {
        self.task
            .await
            .context("kafka listener panicked")?
            .context("kafka listener")
    }
}

/// SIGTERM/SIGINT flips the returned channel, so every listener stops together; the sender
/// lets a part that ended on its own (a listener that could not bind) stop the others.
fn shutdown_channel() -> (Arc<watch::Sender<bool>>, watch::Receiver<bool>) {
    let (tx, rx) = watch::channel(false);
    let tx = Arc::new(tx);
    let on_signal = tx.clone();
    tokio::spawn(async move {
        shutdown_signal().await;
        let _ = on_signal.send(true);
    });
    (tx, rx)
}

async fn stopped(mut rx: watch::Receiver<bool>) {
    while !*rx.borrow() {
        if rx.changed().await.is_err() {
            return;
        }
    }
}

/// `headwater serve`: everything in one process.
pub(crate) async fn serve(mut config: Config) -> anyhow::Result<()> {
    // One process, every partition its only replica: `log.cluster` is for `log-node`.
    config.log.cluster = None;
    // The recorder first: the log registers its partitions' metric handles when it opens.
    let metrics = headwater_gateway::metrics::install();
    let engine = open_log(&config).await?;
    let log: Arc<dyn Log> = engine.clone();
    let (stop, shutdown) = shutdown_channel();
    let schemas = load_schemas(&config).await?;
    let kafka = start_kafka(
        &config,
        engine.clone(),
        Some(schemas.clone()),
        None,
        shutdown.clone(),
    )
    .await?;
    let router = crate::routing::start_router(&config, log.clone()).await?;
    tracing::info!(
        kafka = %config.log.kafka_listen,
        data_dir = %config.data_dir.display(),
        routes = %config.router.routes,
        "headwater serving ingest on HTTP/gRPC, the Kafka protocol and the router"
    );
    let served = run_collectors(&config, log, metrics, schemas, shutdown).await;
    // Ingest has drained (or never started: its port did not bind), so the Kafka listener
    // stops too; the router flushes open batches and commits, then the log closes.
    let _ = stop.send(true);
    router.shutdown().await;
    let kafka_stopped = kafka.stopped().await;
    let closed = engine.close().await;
    served?;
    kafka_stopped?;
    closed.context("flushing the log on shutdown")?;
    tracing::info!("stopped: log flushed");
    Ok(())
}

/// The log brokers of `log.client` (Headwater log nodes or Apache Kafka), waited for up to
/// the request timeout so a typo in the address shows at start.
async fn remote_log(config: &Config) -> anyhow::Result<Arc<dyn Log>> {
    let client = &config.log.client;
    let log = headwater_kafka_client::KafkaLog::new(client.clone()).context("log.client")?;
    if let Err(error) = log.check_writable().await {
        tracing::warn!(brokers = %client.brokers, error = %error_chain(&error), "log brokers not reachable yet; retrying in the background");
    }
    Ok(Arc::new(log))
}

/// `headwater gateway`: the collectors alone, appending to the brokers of `log.client`.
pub(crate) async fn gateway(config: Config) -> anyhow::Result<()> {
    let metrics = headwater_gateway::metrics::install();
    let log = remote_log(&config).await?;
    let (_, shutdown) = shutdown_channel();
    tracing::info!(brokers = %config.log.client.brokers, "headwater gateway serving ingest on HTTP/gRPC");
    let schemas = load_schemas(&config).await?;
    let served = run_collectors(&config, log.clone(), metrics, schemas, shutdown).await;
    let flushed = log.flush().await;
    served?;
    flushed.context("flushing the producer on shutdown")?;
    tracing::info!("stopped: every accepted event acknowledged by the brokers");
    Ok(())
}

/// `headwater router`: the router alone, reading the brokers of `log.client`; replicas split
/// each route's partitions through consumer groups. `/healthz`, `/readyz` and `/metrics` on
/// the HTTP port.
pub(crate) async fn router(config: Config) -> anyhow::Result<()> {
    let metrics = headwater_gateway::metrics::install();
    let log = remote_log(&config).await?;
    let (_, shutdown) = shutdown_channel();
    let router = crate::routing::start_router(&config, log.clone()).await?;
    tracing::info!(brokers = %config.log.client.brokers, routes = %config.router.routes, "headwater router running");
    let served = serve_ops(&config, metrics, log.clone(), None, shutdown).await;
    router.shutdown().await;
    let flushed = log.flush().await;
    served?;
    flushed.context("flushing dead letters on shutdown")?;
    tracing::info!("stopped: open batches delivered and committed");
    Ok(())
}

/// The collectors over `log` on `gateway.listen` until `shutdown` flips; then they drain.
async fn run_collectors(
    config: &Config,
    log: Arc<dyn Log>,
    metrics: headwater_gateway::metrics::PrometheusHandle,
    schemas: Arc<SchemaRegistry>,
    shutdown: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    if let Some(request_type) = &config.gateway.otlp_request_type {
        anyhow::ensure!(
            headwater_gateway::validate::Validate::knows_type(schemas.as_ref(), request_type),
            "gateway.otlp_request_type: no schema in {} registers the type `{request_type}` \
             (the shipped one is `otel.logs`)",
            config.schemas.dir
        );
    }
    let collector = Collector::new(CollectorParts {
        config: config.gateway.clone(),
        log: log.clone(),
        validator: schemas.clone(),
        dlq_topic: config.schemas.dlq_topic.clone(),
    });
    let state = AppState {
        metrics,
        readiness: Arc::new(LogReadiness { log, cluster: None }),
        collector: Arc::new(collector),
        schemas: Some(schemas),
    };
    let app = headwater_gateway::app(state, &config.gateway);
    let listener = TcpListener::bind(&config.gateway.listen)
        .await
        .with_context(|| format!("binding gateway.listen {}", config.gateway.listen))?;
    tracing::info!(addr = %listener.local_addr()?, "ingest listening");
    let options = serve_options(config)?.with_connections(&config.gateway);
    headwater_gateway::serve(listener, app, stopped(shutdown), options)
        .await
        .context("serving HTTP")
}

/// `headwater log-node`: the log tier alone, serving the Kafka protocol, with `/healthz`,
/// `/readyz` and `/metrics` on the HTTP port.
pub(crate) async fn log_node(mut config: Config) -> anyhow::Result<()> {
    let metrics = headwater_gateway::metrics::install();
    // In a cluster a missing topic is created through the cluster's metadata (replicated,
    // placed over the nodes), never by this node's engine alone.
    let auto_create = config.log.auto_create_topics;
    if config.log.cluster.is_some() {
        config.log.auto_create_topics = false;
    }
    let engine = open_log(&config).await?;
    let cluster = crate::cluster::start(&config, engine.clone(), auto_create).await?;
    let (_, shutdown) = shutdown_channel();
    // Tenants' records are checked against the schemas when the listener authenticates.
    let schemas = if crate::kafka_security::authenticates(&config) {
        Some(load_schemas(&config).await?)
    } else {
        None
    };
    let kafka = start_kafka(
        &config,
        engine.clone(),
        schemas,
        cluster.clone(),
        shutdown.clone(),
    )
    .await?;
    tracing::info!(kafka = %config.log.kafka_listen, "log node serving");
    // The Kafka listener stops on the same signal; without it (ops failed) it would not.
    serve_ops(&config, metrics, engine.clone(), cluster.clone(), shutdown).await?;
    let kafka_stopped = kafka.stopped().await;
    if let Some(cluster) = &cluster {
        cluster.shutdown().await;
    }
    let closed = engine.close().await;
    kafka_stopped?;
    closed.context("flushing the log on shutdown")?;
    tracing::info!("stopped: log flushed");
    Ok(())
}

/// `/healthz`, `/readyz` (from `log`, and `cluster` on a log node of one) and `/metrics` on
/// `gateway.listen`, for the parts that take no events over HTTP, until `shutdown` flips;
/// `/metrics` behind `gateway.auth.ops_keys` when any is set, as on the gateway.
async fn serve_ops(
    config: &Config,
    metrics: headwater_gateway::metrics::PrometheusHandle,
    log: Arc<dyn Log>,
    cluster: Option<Arc<crate::cluster::KafkaCluster>>,
    shutdown: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let ops = headwater_gateway::ops_app_with_auth(
        OpsState {
            metrics,
            readiness: Arc::new(LogReadiness { log, cluster }),
        },
        &config.gateway.auth,
    );
    let listener = TcpListener::bind(&config.gateway.listen)
        .await
        .with_context(|| format!("binding gateway.listen {}", config.gateway.listen))?;
    tracing::info!(ops = %listener.local_addr()?, "probes and metrics listening");
    // Probes and scrapes only: served on the shared runtime, without connection threads.
    let mut gateway = config.gateway.clone();
    gateway.connections.io_threads = headwater_gateway::IoThreads::Count(0);
    let options = serve_options(config)?.with_connections(&gateway);
    headwater_gateway::serve(listener, ops, stopped(shutdown), options)
        .await
        .context("serving HTTP")
}

/// How `gateway.listen` serves connections: the header read timeout, the grace period and TLS
/// (the caller adds the caps, idle timeout and threads of `gateway.connections`).
fn serve_options(config: &Config) -> anyhow::Result<ServeOptions> {
    let tls = if config.gateway.tls.enabled() {
        Some(headwater_gateway::tls::server_config(&config.gateway.tls).context("gateway.tls")?)
    } else {
        None
    };
    Ok(ServeOptions {
        header_read_timeout: Duration::from_millis(config.gateway.header_read_timeout_ms),
        grace: Duration::from_millis(config.gateway.shutdown_grace_ms),
        tls,
    })
}

/// How often the schema directory is checked for changes.
const SCHEMA_POLL: Duration = Duration::from_secs(2);

/// Loads the schema directory (or explains every problem), and keeps it current: reloaded
/// when its files change and on SIGHUP.
async fn load_schemas(config: &Config) -> anyhow::Result<Arc<SchemaRegistry>> {
    let schemas = Arc::new(read_schemas(config).await?);
    schemas.clone().watch(SCHEMA_POLL);
    tokio::spawn(reload_on_sighup(schemas.clone()));
    Ok(schemas)
}

/// Loads the schema directory, or explains every problem.
async fn read_schemas(config: &Config) -> anyhow::Result<SchemaRegistry> {
    let dir = PathBuf::from(&config.schemas.dir);
    let options = LoadOptions::from(&config.schemas);
    let loaded = {
        let dir = dir.clone();
        tokio::task::spawn_blocking(move || SchemaRegistry::load(&dir, options))
            .await
            .context("loading schemas panicked")?
    };
    match loaded {
        Ok(registry) => {
            tracing::info!(dir = %dir.display(), schemas = registry.snapshot().len(), "schemas loaded");
            Ok(registry)
        }
        Err(problems) => {
            let list: Vec<String> = problems.iter().map(ToString::to_string).collect();
            anyhow::bail!(
                "schemas.dir {} does not load ({} problem(s)):\n  {}",
                dir.display(),
                list.len(),
                list.join("\n  ")
            )
        }
    }
}

/// Reloads the schemas on every SIGHUP.
async fn reload_on_sighup(schemas: Arc<SchemaRegistry>) {
    let Ok(mut hangups) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
    else {
        tracing::error!("cannot listen for SIGHUP; schemas reload on file change only");
        return;
    };
    while hangups.recv().await.is_some() {
        tracing::info!("SIGHUP: reloading schemas");
        let schemas = schemas.clone();
        let _ = tokio::task::spawn_blocking(move || schemas.reload()).await;
    }
}

/// Resolves on SIGTERM or SIGINT.
async fn shutdown_signal() {
    let interrupt = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::error!(%error, "cannot listen for SIGINT");
            std::future::pending::<()>().await;
        }
    };
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::error!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        () = interrupt => tracing::info!("SIGINT: shutting down"),
        () = terminate => tracing::info!("SIGTERM: shutting down"),
    }
}
