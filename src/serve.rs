//! Running the parts: `headwater serve` composes the gateway with the embedded log tier.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use headwater_gateway::{AppState, Readiness, ReadinessFuture};
use tokio::net::TcpListener;

use crate::config::Config;

/// Readiness until the log engine is wired in: the data directory takes a synced write.
struct DataDirProbe {
    dir: PathBuf,
}

impl Readiness for DataDirProbe {
    fn check(&self) -> ReadinessFuture<'_> {
        let dir = self.dir.clone();
        Box::pin(async move {
            tokio::task::spawn_blocking(move || probe_write(&dir))
                .await
                .map_err(|e| format!("readiness probe panicked: {e}"))?
        })
    }
}

fn probe_write(dir: &std::path::Path) -> Result<(), String> {
    use std::io::Write;
    let path = dir.join(".readyz-probe");
    let result = std::fs::File::create(&path)
        .and_then(|mut file| {
            file.write_all(b"ok")?;
            file.sync_all()
        })
        .map_err(|e| format!("data dir {} is not writable: {e}", dir.display()));
    let _ = std::fs::remove_file(&path);
    result
}

/// `headwater serve`: everything in one process.
pub async fn serve(config: Config) -> anyhow::Result<()> {
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating data dir {}", config.data_dir.display()))?;
    let state = AppState {
        metrics: headwater_gateway::metrics::install(),
        readiness: Arc::new(DataDirProbe {
            dir: config.data_dir.clone(),
        }),
    };
    let router = headwater_gateway::app(state, &config.gateway);
    let listener = TcpListener::bind(&config.gateway.listen)
        .await
        .with_context(|| format!("binding gateway.listen {}", config.gateway.listen))?;
    tracing::info!(
        addr = %listener.local_addr()?,
        data_dir = %config.data_dir.display(),
        "headwater serving /healthz, /readyz and /metrics"
    );
    tracing::warn!(
        "this build has no ingest, log engine or router yet: POST /v1/events answers 501"
    );
    let grace = Duration::from_millis(config.gateway.shutdown_grace_ms);
    headwater_gateway::serve(listener, router, shutdown_signal(), grace).await?;
    tracing::info!("stopped");
    Ok(())
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
