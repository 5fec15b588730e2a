//! The Kafka-protocol listener: real Kafka clients (librdkafka/kcat, kafka-python, the Java
//! client) produce to and consume from the embedded log, with consumer groups.
//!
//! `conn` frames requests and dispatches them; `request` decodes a frame; `data` answers the
//! data-plane APIs (Produce, Fetch, ListOffsets, Metadata, topic admin, InitProducerId);
//! `groups` is the classic group coordinator; `codes` maps [`headwater_log::LogError`] to Kafka error
//! codes; `tls`, `sasl` and `scram` authenticate clients (TLS/mTLS, SASL PLAIN and
//! SCRAM-SHA-256/512) as a [`principal::Principal`]; `acl` and `authorize` decide every
//! request; `stamp` sets the tenant and receive time of what tenants produce and checks it
//! against the schemas; `producers` binds producer ids to principals.

pub mod acl;
mod authorize;
pub mod cluster;
mod codes;
mod conn;
mod data;
mod groups;
pub mod metrics;
pub mod principal;
mod producers;
mod request;
pub mod sasl;
pub mod scram;
pub mod stamp;
pub mod tls;
mod versions;

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tracing::Instrument;

use headwater_log::{LogConfig, LogEngine};

pub use acl::Authorizer;
pub use cluster::{Cluster, ClusterBroker, ClusterError, RefusalKind, ReplicaState, TopicRefusal};
pub use principal::{Principal, Role};
pub use request::{DecodeError, Decoded, Head, decode_body, decode_head, decode_request};
pub use sasl::{CredentialStore, Mechanism, StaticCredentials};
pub use stamp::ProducePolicy;
pub use versions::{SASL, SUPPORTED};

/// How many Fetch responses of `Limits::fetch_max_bytes` may be read and not yet written at
/// once over all connections (responses are copied into memory, not sent from the page cache
/// as Kafka does, so a consumer that stops reading would otherwise pin its response).
pub const FETCH_RESPONSES_IN_FLIGHT: usize = 4;

/// Time a client may take to complete the TLS handshake.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// SASL on the listener: who the credentials belong to and which mechanisms are offered.
#[derive(Clone)]
pub struct SaslOptions {
    /// Checks PLAIN passwords and holds SCRAM credentials.
    pub store: Arc<dyn CredentialStore>,
    /// Mechanisms offered in SaslHandshake.
    pub mechanisms: Vec<Mechanism>,
}

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
    /// What clients may hold: connections, request bytes, idle time, fetch sizes, topics and
    /// groups.
    pub limits: Limits,
    /// TLS on every connection (`log.kafka_tls`, see [`tls::server_config`]); plaintext when
    /// `None`.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// mTLS: the subject of a verified client certificate → the principal the connection is
    /// (unless SASL names another).
    pub client_principals: BTreeMap<String, Principal>,
    /// When set, SASL is required before any request but ApiVersions, and
    /// SaslHandshake/SaslAuthenticate are advertised.
    pub sasl: Option<SaslOptions>,
    /// Decides every request (open to everyone when not enforced).
    pub authorizer: Arc<Authorizer>,
    /// Checks what tenants produce to schema-governed topics; `None` checks nothing (the
    /// tenant and receive time are stamped either way).
    pub policy: Option<Arc<dyn ProducePolicy>>,
    /// The cluster when the log is replicated (`log.cluster`); `None` serves every partition
    /// locally as its only replica.
    pub cluster: Option<Arc<dyn Cluster>>,
}

impl std::fmt::Debug for KafkaOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaOptions")
            .field("advertised_host", &self.advertised_host)
            .field("advertised_port", &self.advertised_port)
            .field("node_id", &self.node_id)
            .field("cluster_id", &self.cluster_id)
            .field("limits", &self.limits)
            .field("tls", &self.tls.is_some())
            .field("client_principals", &self.client_principals.len())
            .field(
                "sasl",
                &self
                    .sasl
                    .as_ref()
                    .map(|s| s.mechanisms.iter().map(|m| m.name()).collect::<Vec<_>>()),
            )
            .field("policy", &self.policy.is_some())
            .field("cluster", &self.cluster.is_some())
            .finish()
    }
}

impl KafkaOptions {
    /// Options advertising `addr` (the bound address, or the configured advertised listener),
    /// with no authentication, an authorizer that enforces nothing and the default limits.
    pub fn advertising(addr: SocketAddr) -> Self {
        Self {
            advertised_host: addr.ip().to_string(),
            advertised_port: i32::from(addr.port()),
            node_id: 1,
            cluster_id: "headwater".to_owned(),
            limits: Limits::default(),
            tls: None,
            client_principals: BTreeMap::new(),
            sasl: None,
            authorizer: Arc::new(Authorizer::open()),
            policy: None,
            cluster: None,
        }
    }
}

/// What one listener lets its clients hold. Every limit bounds memory or files a client can
/// make the broker commit; the defaults are `log.*`'s (see [`Limits::from_config`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Largest request frame; a bigger one closes the connection (Kafka's
    /// `socket.request.max.bytes`). Default 100 MiB. A frame's buffer grows as its bytes
    /// arrive, so a declared length commits no memory by itself.
    pub max_request_bytes: usize,
    /// Bytes of request frames over 16 KiB being read or handled at once over all connections
    /// (Kafka's `queued.max.request.bytes`): a connection whose next frame does not fit waits,
    /// unread, until others are done; smaller frames never wait. At least `max_request_bytes`.
    /// Default 256 MiB.
    pub queued_max_request_bytes: usize,
    /// Connections served at once; more are closed on accept. Default 4096.
    pub max_connections: usize,
    /// Connections served at once from one IP address; more are closed on accept. Default 256.
    pub max_connections_per_ip: usize,
    /// A connection that sends no request for this long is closed (Kafka's
    /// `connections.max.idle.ms`). Default 10 minutes.
    pub idle_timeout: Duration,
    /// Most record bytes in a Fetch response (Kafka's broker `fetch.max.bytes`); only the
    /// first batch of a response may exceed it, so that consumers make progress. Default
    /// 50 MiB. Responses read and not yet written hold at most
    /// [`FETCH_RESPONSES_IN_FLIGHT`] times this over all connections; a Fetch waits for room
    /// before it reads.
    pub fetch_max_bytes: usize,
    /// Most topics: creation beyond (CreateTopics, or on first use) is refused. Default 1000.
    pub max_topics: usize,
    /// Most partitions of a topic created here. Default 256.
    pub max_partitions_per_topic: u32,
    /// Most consumer groups the coordinator holds. Default 10,000.
    pub max_groups: usize,
    /// Most members of a group, pending member ids included (Kafka's `group.max.size`).
    /// Default 1000.
    pub group_max_size: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self::from_config(&LogConfig::default())
    }
}

impl Limits {
    /// The limits `log.*` configures.
    pub fn from_config(config: &LogConfig) -> Self {
        let size = |n: u64| usize::try_from(n).unwrap_or(usize::MAX);
        Self {
            max_request_bytes: size(config.kafka_max_request_bytes.into()),
            queued_max_request_bytes: size(config.kafka_queued_max_request_bytes),
            max_connections: size(config.kafka_max_connections.into()),
            max_connections_per_ip: size(config.kafka_max_connections_per_ip.into()),
            idle_timeout: Duration::from_millis(config.kafka_idle_timeout_ms),
            fetch_max_bytes: size(config.fetch_max_bytes.into()),
            max_topics: size(config.max_topics.into()),
            max_partitions_per_topic: config.max_partitions_per_topic,
            max_groups: size(config.max_groups.into()),
            group_max_size: size(config.group_max_size.into()),
        }
    }
}

/// State shared by every connection.
pub(crate) struct Broker {
    pub(crate) engine: Arc<LogEngine>,
    pub(crate) options: KafkaOptions,
    pub(crate) groups: groups::Coordinator,
    pub(crate) producers: producers::Producers,
    /// Bytes of request frames being read or handled (`Limits::queued_max_request_bytes`).
    pub(crate) request_bytes: tokio::sync::Semaphore,
    /// Record bytes of Fetch responses read and not yet written
    /// ([`FETCH_RESPONSES_IN_FLIGHT`] × `Limits::fetch_max_bytes`).
    pub(crate) fetch_bytes: Arc<tokio::sync::Semaphore>,
    /// Held while a topic is counted and created, so concurrent creations stay within
    /// `Limits::max_topics`.
    pub(crate) topic_admin: Mutex<()>,
    /// Topic auto-creations sent to the cluster's metadata and not answered yet (at most
    /// [`MAX_PENDING_CREATIONS`]; a Metadata request may name thousands of new topics).
    pub(crate) pending_creations: Arc<tokio::sync::Semaphore>,
}

/// Most topic auto-creations a broker of a cluster has waiting on the metadata leader; past
/// that a missing topic is answered LEADER_NOT_AVAILABLE without asking (the client asks again).
pub(crate) const MAX_PENDING_CREATIONS: usize = 64;

impl Broker {
    pub(crate) fn new(engine: Arc<LogEngine>, options: KafkaOptions) -> Self {
        let queued = options
            .limits
            .queued_max_request_bytes
            .max(options.limits.max_request_bytes)
            .min(tokio::sync::Semaphore::MAX_PERMITS);
        let fetching = options
            .limits
            .fetch_max_bytes
            .saturating_mul(FETCH_RESPONSES_IN_FLIGHT)
            .min(tokio::sync::Semaphore::MAX_PERMITS);
        Self {
            groups: groups::Coordinator::new(engine.clone(), &options.limits)
                .with_cluster(options.cluster.clone()),
            engine,
            options,
            producers: producers::Producers::default(),
            request_bytes: tokio::sync::Semaphore::new(queued),
            fetch_bytes: Arc::new(tokio::sync::Semaphore::new(fetching)),
            topic_admin: Mutex::new(()),
            pending_creations: Arc::new(tokio::sync::Semaphore::new(MAX_PENDING_CREATIONS)),
        }
    }
}

/// Open connections per client IP address, each held by a [`PeerSlot`].
struct PerIp {
    open: Mutex<HashMap<IpAddr, usize>>,
    max: usize,
}

/// One connection counted for its IP address, and in the open-connections gauge, until
/// dropped (however its task ends).
struct PeerSlot {
    table: Arc<PerIp>,
    ip: IpAddr,
}

impl PerIp {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, usize>> {
        self.open.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A slot for one more connection from `ip`, unless it already has `max`.
    fn admit(table: &Arc<Self>, ip: IpAddr) -> Option<PeerSlot> {
        let mut open = table.lock();
        let count = open.entry(ip).or_insert(0);
        if *count >= table.max {
            return None;
        }
        *count += 1;
        ::metrics::gauge!(metrics::KAFKA_CONNECTIONS).increment(1.0);
        Some(PeerSlot {
            table: Arc::clone(table),
            ip,
        })
    }
}

impl Drop for PeerSlot {
    fn drop(&mut self) {
        ::metrics::gauge!(metrics::KAFKA_CONNECTIONS).decrement(1.0);
        let mut open = self.table.lock();
        if let Some(count) = open.get_mut(&self.ip) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.ip);
            }
        }
    }
}

/// Why a connection was closed on accept.
#[derive(Debug, Clone, Copy)]
enum Refusal {
    Total,
    PerIp,
}

impl Refusal {
    fn label(self) -> &'static str {
        match self {
            Self::Total => "max_connections",
            Self::PerIp => "max_connections_per_ip",
        }
    }
}

/// Refusals are counted always and logged at warn at most once a minute, with how many
/// there were since: a flood of connections must not flood the log.
struct RefusalLog {
    last: Option<Instant>,
    since: u64,
}

impl RefusalLog {
    const EVERY: Duration = Duration::from_secs(60);

    fn note(&mut self, refusal: Refusal, peer: SocketAddr) {
        ::metrics::counter!(metrics::KAFKA_CONNECTIONS_REFUSED_TOTAL, "reason" => refusal.label())
            .increment(1);
        self.since += 1;
        let now = Instant::now();
        if self
            .last
            .is_none_or(|last| now.duration_since(last) >= Self::EVERY)
        {
            tracing::warn!(%peer, limit = refusal.label(), refused = self.since,
                "kafka connections refused: over the limit (this one, and the count since the last warning)");
            self.last = Some(now);
            self.since = 0;
        } else {
            tracing::debug!(%peer, limit = refusal.label(), "kafka connection refused");
        }
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
    let broker = Arc::new(Broker::new(engine, options));
    let reaper = tokio::spawn(groups::reap_expired_members(Arc::downgrade(&broker)));
    let limits = &broker.options.limits;
    let permits = Arc::new(tokio::sync::Semaphore::new(limits.max_connections));
    let per_ip = Arc::new(PerIp {
        open: Mutex::new(HashMap::new()),
        max: limits.max_connections_per_ip,
    });
    let mut refusals = RefusalLog {
        last: None,
        since: 0,
    };
    tracing::info!(
        addr = %listener.local_addr()?,
        tls = broker.options.tls.is_some(),
        sasl = broker.options.sasl.is_some(),
        acls = broker.options.authorizer.enforced(),
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
            refusals.note(Refusal::Total, peer);
            drop(stream);
            continue;
        };
        let Some(slot) = PerIp::admit(&per_ip, peer.ip()) else {
            refusals.note(Refusal::PerIp, peer);
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let broker = broker.clone();
        let shutdown = shutdown.clone();
        let span = tracing::debug_span!("kafka_connection", %peer);
        tokio::spawn(
            async move {
                if let Err(error) = serve_accepted(broker, stream, peer, shutdown).await {
                    tracing::debug!(%error, "kafka connection closed");
                }
                drop((permit, slot));
            }
            .instrument(span),
        );
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
        let principal = Principal::anonymous();
        return conn::serve_connection(broker, stream, peer, principal, shutdown).await;
    };
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let handshake = tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await;
    let error = match handshake {
        Ok(Ok(tls)) => {
            let subject = headwater_tls::peer_subject(tls.get_ref().1);
            let principal = subject
                .as_ref()
                .and_then(|s| broker.options.client_principals.get(s))
                .cloned()
                .unwrap_or_else(Principal::anonymous);
            if subject.is_some() {
                tracing::debug!(%peer, subject, %principal, "kafka client certificate");
            }
            return conn::serve_connection(broker, tls, peer, principal, shutdown).await;
        }
        Ok(Err(error)) => {
            std::io::Error::new(error.kind(), format!("TLS handshake failed: {error}"))
        }
        Err(_) => std::io::Error::new(std::io::ErrorKind::TimedOut, "TLS handshake timed out"),
    };
    ::metrics::counter!(crate::metrics::KAFKA_AUTH_FAILURES_TOTAL, "stage" => "tls").increment(1);
    Err(error)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_gets_its_slots_back_when_connections_end() {
        let table = Arc::new(PerIp {
            open: Mutex::new(HashMap::new()),
            max: 2,
        });
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        let first = PerIp::admit(&table, a).unwrap();
        let _second = PerIp::admit(&table, a).unwrap();
        assert!(
            PerIp::admit(&table, a).is_none(),
            "a third from one address"
        );
        let other = PerIp::admit(&table, b).unwrap();
        drop(first);
        assert!(
            PerIp::admit(&table, a).is_some(),
            "room again once one ended"
        );
        drop(other);
        assert!(
            !table.lock().contains_key(&b),
            "an address without connections is forgotten"
        );
    }

    #[test]
    fn limits_follow_the_log_configuration() {
        let config = LogConfig {
            kafka_max_connections_per_ip: 3,
            kafka_idle_timeout_ms: 1500,
            fetch_max_bytes: 4096,
            ..LogConfig::default()
        };
        let limits = Limits::from_config(&config);
        assert_eq!(limits.max_connections_per_ip, 3);
        assert_eq!(limits.idle_timeout, Duration::from_millis(1500));
        assert_eq!(limits.fetch_max_bytes, 4096);
        assert_eq!(Limits::default().max_request_bytes, 100 * 1024 * 1024);
    }
}
