//! The Kafka-protocol listener: real Kafka clients (librdkafka/kcat, kafka-python, the Java
//! client) produce to and consume from the embedded log, with consumer groups.
//!
//! `conn` frames requests and dispatches them; `data` answers the data-plane APIs (Produce,
//! Fetch, ListOffsets, Metadata, topic admin, InitProducerId); `groups` is the classic group
//! coordinator; `codes` maps [`crate::LogError`] to Kafka error codes.

mod codes;
mod conn;
mod data;
mod groups;
mod versions;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::engine::LogEngine;

pub use versions::SUPPORTED;

/// How the listener presents itself.
#[derive(Debug, Clone)]
pub struct KafkaOptions {
    /// Host advertised in Metadata and FindCoordinator.
    pub advertised_host: String,
    /// Port advertised in Metadata and FindCoordinator.
    pub advertised_port: i32,
    /// Node id of this broker.
    pub node_id: i32,
    /// Cluster id reported in Metadata.
    pub cluster_id: String,
    /// Largest request frame accepted; a bigger one closes the connection.
    pub max_request_bytes: usize,
    /// Most connections served at once; more are refused (closed) until one ends.
    pub max_connections: usize,
}

impl KafkaOptions {
    /// Options advertising `addr` (the bound address, or the configured advertised listener).
    pub fn advertising(addr: SocketAddr) -> Self {
        Self {
            advertised_host: addr.ip().to_string(),
            advertised_port: i32::from(addr.port()),
            node_id: 1,
            cluster_id: "headwater".to_owned(),
            max_request_bytes: 100 * 1024 * 1024,
            max_connections: 4096,
        }
    }
}

/// State shared by every connection.
pub(crate) struct Broker {
    pub(crate) engine: Arc<LogEngine>,
    pub(crate) options: KafkaOptions,
    pub(crate) groups: groups::Coordinator,
    next_producer_id: AtomicI64,
}

impl Broker {
    /// A producer id unique across restarts: the start time in ms, then a counter.
    pub(crate) fn allocate_producer_id(&self) -> i64 {
        self.next_producer_id.fetch_add(1, Ordering::Relaxed)
    }
}

/// Serves the Kafka protocol on `listener` until `shutdown` flips to true.
pub async fn serve(
    engine: Arc<LogEngine>,
    listener: TcpListener,
    options: KafkaOptions,
    mut shutdown: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let start_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_millis() as i64);
    let broker = Arc::new(Broker {
        groups: groups::Coordinator::new(engine.clone()),
        engine,
        options,
        next_producer_id: AtomicI64::new(start_ms << 10),
    });
    let reaper = tokio::spawn(groups::reap_expired_members(Arc::downgrade(&broker)));
    let permits = Arc::new(tokio::sync::Semaphore::new(broker.options.max_connections));
    tracing::info!(addr = %listener.local_addr()?, "kafka protocol listening");
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(error) => {
                    tracing::warn!(%error, "kafka accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.changed() => break,
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            tracing::warn!(%peer, "kafka connection refused: too many connections");
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let broker = broker.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            if let Err(error) = conn::serve_connection(broker, stream, peer, shutdown).await {
                tracing::debug!(%peer, %error, "kafka connection closed");
            }
            drop(permit);
        });
    }
    reaper.abort();
    Ok(())
}
