//! The Kafka-protocol listener: real Kafka clients (librdkafka/kcat, kafka-python, the Java
//! client) produce to and consume from the embedded log, with consumer groups.
//!
//! `conn` frames requests and dispatches them; `request` decodes a frame; `data` answers the
//! data-plane APIs (Produce, Fetch, ListOffsets, Metadata, topic admin, InitProducerId);
//! `groups` is the classic group coordinator; `codes` maps [`headwater_log::LogError`] to Kafka error
//! codes; `tls` and `sasl` secure the listener (TLS/mTLS, SASL/PLAIN).

mod codes;
mod conn;
mod data;
mod groups;
pub mod metrics;
mod request;
pub mod sasl;
pub mod tls;
mod versions;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use headwater_log::LogEngine;

pub use request::{DecodeError, Decoded, Head, decode_body, decode_head, decode_request};
pub use sasl::{SaslAuthenticator, StaticCredentials};
pub use versions::{SASL, SUPPORTED};

/// Time a client may take to complete the TLS handshake.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// How the listener presents itself and whom it serves.
#[derive(Clone)]
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
    /// TLS on every connection (`log.kafka_tls`, see [`tls::server_config`]); plaintext when
    /// `None`.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// When set, SASL/PLAIN checked by this authenticator is required before any request
    /// but ApiVersions, and SaslHandshake/SaslAuthenticate are advertised.
    pub sasl: Option<Arc<dyn SaslAuthenticator>>,
}

impl std::fmt::Debug for KafkaOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaOptions")
            .field("advertised_host", &self.advertised_host)
            .field("advertised_port", &self.advertised_port)
            .field("node_id", &self.node_id)
            .field("cluster_id", &self.cluster_id)
            .field("max_request_bytes", &self.max_request_bytes)
            .field("max_connections", &self.max_connections)
            .field("tls", &self.tls.is_some())
            .field("sasl", &self.sasl.is_some())
            .finish()
    }
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
            tls: None,
            sasl: None,
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
    metrics::describe();
    let start_ms = headwater_log::now_ms().max(1);
    let broker = Arc::new(Broker {
        groups: groups::Coordinator::new(engine.clone()),
        engine,
        options,
        next_producer_id: AtomicI64::new(start_ms << 10),
    });
    let reaper = tokio::spawn(groups::reap_expired_members(Arc::downgrade(&broker)));
    let permits = Arc::new(tokio::sync::Semaphore::new(broker.options.max_connections));
    tracing::info!(
        addr = %listener.local_addr()?,
        tls = broker.options.tls.is_some(),
        sasl = broker.options.sasl.is_some(),
        "kafka protocol listening"
    );
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
            if let Err(error) = serve_accepted(broker, stream, peer, shutdown).await {
                tracing::debug!(%peer, %error, "kafka connection closed");
            }
            drop(permit);
        });
    }
    reaper.abort();
    Ok(())
}

/// Serves one accepted connection, after the TLS handshake when TLS is on.
async fn serve_accepted(
    broker: Arc<Broker>,
    stream: TcpStream,
    peer: SocketAddr,
    shutdown: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let Some(tls) = broker.options.tls.clone() else {
        return conn::serve_connection(broker, stream, peer, shutdown).await;
    };
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let handshake = tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await;
    let error = match handshake {
        Ok(Ok(tls)) => return conn::serve_connection(broker, tls, peer, shutdown).await,
        Ok(Err(error)) => {
            std::io::Error::new(error.kind(), format!("TLS handshake failed: {error}"))
        }
        Err(_) => std::io::Error::new(std::io::ErrorKind::TimedOut, "TLS handshake timed out"),
    };
    ::metrics::counter!(crate::metrics::KAFKA_AUTH_FAILURES_TOTAL, "stage" => "tls").increment(1);
    Err(error)
}
