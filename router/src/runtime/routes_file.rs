//! Hot reload from the routes file: on demand (SIGHUP in the binary) and when its content
//! changes. A file that does not check keeps the old routes and logs every problem.

use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio::task::JoinHandle;

use super::{RouterHandle, load_routes};
use crate::error::RouterError;

impl RouterHandle {
    /// Reads, checks and applies the routes file at `path`. On any error the routes in effect
    /// stay as they are.
    pub async fn reload_file(&self, path: &str) -> Result<(), RouterError> {
        let routes = load_routes(path)?;
        self.reload(routes).await?;
        tracing::info!(path, "routes reloaded");
        Ok(())
    }
}

/// Polls `path` every `interval` and reloads the routes when its content changes; logs why a
/// changed file was refused. On the other ticks, and at once when a route's share of
/// partitions changes in its consumer group, it re-discovers partitions, restarting the
/// routes whose partitions changed. Ends when the router is dropped or shut down.
pub fn spawn_routes_watcher(
    handle: &Arc<RouterHandle>,
    path: String,
    interval: Duration,
) -> JoinHandle<()> {
    let weak: Weak<RouterHandle> = Arc::downgrade(handle);
    let changed = handle.assignment_changed();
    tokio::spawn(async move {
        let mut last = tokio::fs::read(&path).await.ok();
        loop {
            tokio::select! {
                () = tokio::time::sleep(interval) => {}
                () = changed.notified() => {}
            }
            let Some(handle) = weak.upgrade() else { return };
            if handle.is_shut_down() {
                return;
            }
            let now = tokio::fs::read(&path).await.ok();
            if now.is_none() || now == last {
                // Same rules: only restarts routes whose topics gained partitions.
                if let Err(e) = handle.refresh_partitions().await {
                    tracing::warn!(error = %headwater_sinks::error_chain(&e), "re-discovering partitions failed");
                }
                continue;
            }
            last = now;
            if let Err(e) = handle.reload_file(&path).await {
                tracing::error!(path = %path, error = %headwater_sinks::error_chain(&e), "routes file changed but was not applied; keeping the previous routes");
            }
        }
    })
}
