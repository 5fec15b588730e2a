//! Wiring the router into the binary: the sink factory (routes.yaml entries → sinks, with the
//! deployment defaults of `sinks:`), start-up, hot reload, and `headwater routes check`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use headwater_log::Log;
use headwater_router::{Router, RouterHandle, RouterOptions, RouterParts, SinkFactory, SinkSpec};
use headwater_sinks::{ConfigError, SinkConfig, SinkContext, SinksConfig, error_chain};

use crate::config::Config;

/// How often routes.yaml is checked for changes.
const ROUTES_POLL: Duration = Duration::from_secs(2);

/// A routes.yaml sink entry as a sink configuration: the entry deep-merged over the
/// deployment defaults of its kind, named after the router's label unless it has a `name`.
fn sink_config(spec: &SinkSpec, defaults: &SinksConfig) -> Result<SinkConfig, ConfigError> {
    Ok(SinkConfig::from_entry(&spec.spec, defaults)?.named(&spec.label))
}

/// Builds sinks for the router's routes.
pub(crate) fn sink_factory(config: &Config, log: Option<Arc<dyn Log>>) -> SinkFactory {
    let defaults = config.sinks.clone();
    let ctx = SinkContext {
        data_dir: PathBuf::from(&config.data_dir),
        log,
    };
    Arc::new(move |spec: &SinkSpec| {
        let entry = sink_config(spec, &defaults)?;
        headwater_sinks::build(&entry, &ctx)
    })
}

/// Starts the router over `log` with the configured routes; reloads them when the file
/// changes or on SIGHUP (a broken file keeps the old routes and logs why).
pub(crate) async fn start_router(
    config: &Config,
    log: Arc<dyn Log>,
) -> anyhow::Result<Arc<RouterHandle>> {
    headwater_sinks::metrics::describe();
    headwater_router::metrics::describe();
    let path = config.router.routes.clone();
    let routes =
        headwater_router::load_routes(&path).with_context(|| format!("router.routes {path}"))?;
    let handle = Router::start(RouterParts {
        log: log.clone(),
        routes,
        sink_factory: sink_factory(config, Some(log)),
        options: RouterOptions::from_config(&config.router),
    })
    .await
    .context("starting the router")?;
    let handle = Arc::new(handle);
    headwater_router::spawn_routes_watcher(&handle, path.clone(), ROUTES_POLL);
    tokio::spawn(reload_on_sighup(handle.clone(), path));
    Ok(handle)
}

async fn reload_on_sighup(handle: Arc<RouterHandle>, path: String) {
    let Ok(mut hangups) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
    else {
        return;
    };
    while hangups.recv().await.is_some() {
        if handle.is_shut_down() {
            return;
        }
        if let Err(error) = handle.reload_file(&path).await {
            let error = error_chain(&error);
            tracing::error!(%error, path, "SIGHUP: routes not reloaded; keeping the previous routes");
        }
    }
}

/// `headwater routes check FILE`: every problem with line and column, sink entries included.
pub(crate) fn check_file(config: &Config, file: &std::path::Path) -> Result<String, Vec<String>> {
    let text =
        std::fs::read_to_string(file).map_err(|e| vec![format!("{}: {e}", file.display())])?;
    let defaults = config.sinks.clone();
    let check_sink = move |spec: &SinkSpec| -> Result<(), String> {
        sink_config(spec, &defaults)
            .and_then(|entry| entry.check())
            .map_err(|e| error_chain(&e))
    };
    match headwater_router::check_routes_with(&text, &check_sink) {
        Ok(routes) => Ok(format!(
            "{}: {} route(s), no problems",
            file.display(),
            routes.routes.len()
        )),
        Err(problems) => Err(problems
            .iter()
            .map(|p| format!("{}:{p}", file.display()))
            .collect()),
    }
}
