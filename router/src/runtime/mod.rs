//! The router at run time: [`Router::start`] starts one consumer task per (route, topic
//! partition); [`RouterHandle`] reloads routes (restarting only the changed ones) and shuts
//! down gracefully.

mod batch;
mod deliver;
mod members;
mod routes_file;
mod task;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;
use headwater_log::Log;
use headwater_sinks::{BuildError, Sink, error_chain};
use tokio::sync::{Mutex, Notify, watch};
use tokio::task::JoinHandle;
use tracing::Instrument;

use crate::config::RouterConfig;
use crate::error::RouterError;
use crate::metrics::{SinkMetrics, TASKS};
use crate::rules::{Route, Routes, SinkSpec, check_routes};

pub use batch::{ORIGIN_HEADER, ROUTE_HEADER, SINK_HEADER, SKIPPED_HEADER};
pub use routes_file::spawn_routes_watcher;

/// The router's dead-letter topic: events a sink refused for good, records whose envelope
/// could not be rebuilt, and notes of offset ranges the log could not read back (corrupt), with
/// `hw.error`, `hw.route`, `hw.sink`, `hw.origin` and `hw.skipped` headers.
pub const DLQ_TOPIC: &str = "router.dlq";

/// Builds a sink from its spec in routes.yaml; `Err` says why it cannot (the binary's factory
/// is `headwater_sinks::SinkConfig::from_entry` + `headwater_sinks::build`).
pub type SinkFactory = Arc<dyn Fn(&SinkSpec) -> Result<Arc<dyn Sink>, BuildError> + Send + Sync>;

/// Run-time settings (see [`RouterConfig`] for the configured ones).
#[derive(Debug, Clone)]
pub struct RouterOptions {
    /// Events per batch unless the route overrides it.
    pub batch_max_events: usize,
    /// Payload bytes per batch unless the route overrides it.
    pub batch_max_bytes: usize,
    /// Age at which an open batch is sent, unless the route overrides it.
    pub batch_max_age: Duration,
    /// Longest a read waits for new records; bounds how late an idle batch closes.
    pub poll_wait: Duration,
    /// Bytes asked of each log read.
    pub read_max_bytes: usize,
    /// First re-send delay after a failure.
    pub retry_initial: Duration,
    /// Longest re-send delay.
    pub retry_max: Duration,
    /// How long shutdown (and stopping a route on reload) waits for open batches.
    pub shutdown_timeout: Duration,
    /// Dead-letter topic.
    pub dlq_topic: String,
}

impl Default for RouterOptions {
    fn default() -> Self {
        Self::from_config(&RouterConfig::default())
    }
}

impl RouterOptions {
    /// Options from the configuration; the rest at their defaults (poll 1 s, reads of 1 MiB).
    pub fn from_config(c: &RouterConfig) -> Self {
        Self {
            batch_max_events: c.batch_max_events,
            batch_max_bytes: c.batch_max_bytes,
            batch_max_age: Duration::from_millis(c.batch_max_age_ms),
            poll_wait: Duration::from_secs(1),
            read_max_bytes: 1024 * 1024,
            retry_initial: Duration::from_millis(c.retry_initial_ms),
            retry_max: Duration::from_millis(c.retry_max_ms),
            shutdown_timeout: Duration::from_millis(c.shutdown_timeout_ms),
            dlq_topic: DLQ_TOPIC.to_owned(),
        }
    }
}

/// What [`Router::start`] needs.
pub struct RouterParts {
    /// The log read from, committed to, and dead-lettered into.
    pub log: Arc<dyn Log>,
    /// The routes to run.
    pub routes: Routes,
    /// Turns each route's sink specs into sinks.
    pub sink_factory: SinkFactory,
    /// Run-time settings.
    pub options: RouterOptions,
}

/// Reads and checks a routes file.
pub fn load_routes(path: &str) -> Result<Routes, RouterError> {
    let text = std::fs::read_to_string(path).map_err(|source| RouterError::ReadRoutes {
        path: path.to_owned(),
        source,
    })?;
    check_routes(&text).map_err(|problems| RouterError::InvalidRoutes {
        path: path.to_owned(),
        problems,
    })
}

/// A sink of a route with its metric handles.
#[derive(Clone)]
pub(crate) struct RouteSink {
    pub(crate) sink: Arc<dyn Sink>,
    pub(crate) label: String,
    pub(crate) metrics: SinkMetrics,
}

/// What the consumer tasks share.
pub(crate) struct Shared {
    pub(crate) log: Arc<dyn Log>,
    pub(crate) options: RouterOptions,
}

/// The running tasks of one route. Dropping it aborts them (a crash: nothing flushed).
struct RouteTasks {
    route: Arc<Route>,
    partitions: Vec<(Arc<str>, i32)>,
    sinks: Arc<[RouteSink]>,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for RouteTasks {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// The router (see [`Router::start`]).
pub struct Router;

impl Router {
    /// Builds every route's sinks, discovers each source topic's partitions through
    /// [`Log::partitions`], and starts one consumer task per (route, partition).
    pub async fn start(parts: RouterParts) -> Result<RouterHandle, RouterError> {
        let handle = RouterHandle {
            shared: Arc::new(Shared {
                log: parts.log,
                options: parts.options,
            }),
            factory: parts.sink_factory,
            routes: ArcSwap::from_pointee(Routes::default()),
            running: Mutex::new(HashMap::new()),
            closed: AtomicBool::new(false),
            members: members::Members::default(),
        };
        handle.ensure_dlq().await;
        handle.reload(parts.routes).await?;
        Ok(handle)
    }
}

/// A running router. Dropping it without [`RouterHandle::shutdown`] aborts every task, as a
/// crash would: open batches are re-sent, with the same bounds, on the next start.
pub struct RouterHandle {
    shared: Arc<Shared>,
    factory: SinkFactory,
    routes: ArcSwap<Routes>,
    running: Mutex<HashMap<Arc<str>, RouteTasks>>,
    closed: AtomicBool,
    /// Each route's consumer-group membership, when the log is shared between processes.
    members: members::Members,
}

impl RouterHandle {
    /// The routes in effect.
    pub fn routes(&self) -> Arc<Routes> {
        self.routes.load_full()
    }

    /// Swaps in new routes: new routes start, removed ones stop gracefully, changed ones
    /// restart, unchanged ones keep running untouched — unless a topic they read gained
    /// partitions: then they restart to read them too. Sinks and partitions of the new routes are resolved first:
    /// if any fails, nothing changes and the error is returned.
    pub async fn reload(&self, routes: Routes) -> Result<(), RouterError> {
        let mut running = self.running.lock().await;
        self.apply(&mut running, routes).await
    }

    /// Re-discovers partitions of the routes in effect, restarting those whose topics gained
    /// some (a reload with the current routes, taken under the reload lock).
    pub async fn refresh_partitions(&self) -> Result<(), RouterError> {
        let mut running = self.running.lock().await;
        let routes = (*self.routes.load_full()).clone();
        self.apply(&mut running, routes).await
    }

    async fn apply(
        &self,
        running: &mut HashMap<Arc<str>, RouteTasks>,
        routes: Routes,
    ) -> Result<(), RouterError> {
        if self.is_shut_down() {
            return Err(RouterError::ShuttingDown);
        }
        let mut starting = Vec::new();
        for route in &routes.routes {
            let same = match running.get(&route.name) {
                Some(rt) if rt.route.definition == route.definition => {
                    self.discover(route).await? == rt.partitions
                }
                _ => false,
            };
            if !same {
                starting.push(self.prepare(route).await?);
            }
        }
        let keep: Vec<&Arc<str>> = routes
            .routes
            .iter()
            .filter(|r| !starting.iter().any(|(s, _, _)| s.name == r.name))
            .map(|r| &r.name)
            .collect();
        let stopping: Vec<RouteTasks> = {
            let names: Vec<Arc<str>> = running
                .keys()
                .filter(|n| !keep.contains(n))
                .cloned()
                .collect();
            names.iter().filter_map(|n| running.remove(n)).collect()
        };
        let timeout = self.shared.options.shutdown_timeout;
        futures::future::join_all(stopping.into_iter().map(|rt| stop_route(rt, timeout))).await;
        for (route, sinks, partitions) in starting {
            let rt = self.spawn(route, sinks, &partitions);
            running.insert(Arc::clone(&rt.route.name), rt);
        }
        self.members.retain(|name| running.contains_key(name));
        // Revoked partitions' tasks have stopped (above): the group may move them now.
        self.members.release_settled();
        self.routes.store(Arc::new(routes));
        Ok(())
    }

    /// Stops reading, delivers and commits every open batch, flushes the sinks. Batches not
    /// delivered within the shutdown timeout are abandoned (re-sent on the next start).
    pub async fn shutdown(&self) {
        let mut running = self.running.lock().await;
        self.closed.store(true, Ordering::SeqCst);
        let timeout = self.shared.options.shutdown_timeout;
        let all: Vec<RouteTasks> = running.drain().map(|(_, rt)| rt).collect();
        futures::future::join_all(all.into_iter().map(|rt| stop_route(rt, timeout))).await;
        // Offsets are committed: now the partitions may move to the other replicas.
        self.members.retain(|_| false);
    }

    /// Notified when a route's share of partitions changes (a replica joined or left).
    pub fn assignment_changed(&self) -> Arc<Notify> {
        self.members.changed()
    }

    /// Makes sure the dead-letter topic exists (creating it with one partition when the log
    /// does not auto-create topics), so a refused event never waits on a missing topic.
    async fn ensure_dlq(&self) {
        let (log, dlq) = (&self.shared.log, &self.shared.options.dlq_topic);
        if log.partitions(dlq).await.is_ok() {
            return;
        }
        if let Err(e) = log.create_topic(dlq, 1).await {
            tracing::warn!(topic = %dlq, error = %e, "cannot create the dead-letter topic; dead letters will wait for it");
        }
    }

    /// Whether [`RouterHandle::shutdown`] was called.
    pub fn is_shut_down(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    async fn prepare(
        &self,
        route: &Arc<Route>,
    ) -> Result<(Arc<Route>, Arc<[RouteSink]>, Vec<(Arc<str>, i32)>), RouterError> {
        let mut sinks = Vec::with_capacity(route.sinks.len());
        for spec in &route.sinks {
            let sink = (self.factory)(spec).map_err(|source| RouterError::SinkFactory {
                route: route.name.to_string(),
                sink: spec.label.clone(),
                source,
            })?;
            sinks.push(RouteSink {
                sink,
                label: spec.label.clone(),
                metrics: SinkMetrics::new(&route.name, &spec.label),
            });
        }
        let partitions = self.discover(route).await?;
        Ok((Arc::clone(route), sinks.into(), partitions))
    }

    /// Every (topic, partition) a route reads: its share from the route's consumer group
    /// when the log is shared between processes, else all of them from [`Log::partitions`].
    async fn discover(&self, route: &Route) -> Result<Vec<(Arc<str>, i32)>, RouterError> {
        if let Some(owned) = self.members.owned(&self.shared.log, route).await? {
            return Ok(owned);
        }
        let mut partitions = Vec::new();
        for topic in &route.source.topics {
            let n =
                self.shared.log.partitions(topic).await.map_err(|e| {
                    RouterError::log(format!("discovering partitions of `{topic}`"), e)
                })?;
            let topic: Arc<str> = Arc::from(topic.as_str());
            partitions.extend((0..n as i32).map(|p| (Arc::clone(&topic), p)));
        }
        Ok(partitions)
    }

    fn spawn(
        &self,
        route: Arc<Route>,
        sinks: Arc<[RouteSink]>,
        partitions: &[(Arc<str>, i32)],
    ) -> RouteTasks {
        let (stop, _) = watch::channel(false);
        let tasks = partitions
            .iter()
            .map(|(topic, partition)| {
                let task = task::PartitionTask::new(task::TaskParts {
                    shared: Arc::clone(&self.shared),
                    route: Arc::clone(&route),
                    sinks: Arc::clone(&sinks),
                    topic: Arc::clone(topic),
                    partition: *partition,
                    stop: stop.subscribe(),
                });
                let span = tracing::info_span!(
                    "route_consumer",
                    route = %route.name,
                    topic = %topic,
                    partition = *partition
                );
                tokio::spawn(task::supervise(task).instrument(span))
            })
            .collect::<Vec<_>>();
        metrics::gauge!(TASKS, "route" => route.name.to_string()).set(tasks.len() as f64);
        tracing::info!(route = %route.name, tasks = tasks.len(), "route started");
        RouteTasks {
            route,
            partitions: partitions.to_vec(),
            sinks,
            stop,
            tasks,
        }
    }
}

/// Asks a route's tasks to finish, waits up to `timeout`, aborts the rest, flushes its sinks.
async fn stop_route(mut rt: RouteTasks, timeout: Duration) {
    let _ = rt.stop.send(true);
    let tasks = std::mem::take(&mut rt.tasks);
    let aborts: Vec<_> = tasks.iter().map(JoinHandle::abort_handle).collect();
    let joined = tokio::time::timeout(timeout, futures::future::join_all(tasks)).await;
    if joined.is_err() {
        tracing::warn!(route = %rt.route.name, "open batches not delivered before the shutdown timeout; they will be re-sent");
        aborts.iter().for_each(tokio::task::AbortHandle::abort);
    }
    for s in rt.sinks.iter() {
        match tokio::time::timeout(timeout, s.sink.flush()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::warn!(route = %rt.route.name, sink = %s.label, error = %error_chain(&e), "sink flush failed")
            }
            Err(_) => {
                tracing::warn!(route = %rt.route.name, sink = %s.label, "sink flush timed out")
            }
        }
    }
    metrics::gauge!(TASKS, "route" => rt.route.name.to_string()).set(0.0);
    tracing::info!(route = %rt.route.name, "route stopped");
}
