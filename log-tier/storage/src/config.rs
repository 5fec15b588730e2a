//! Configuration of the log tier: listener, topic defaults and per-topic overrides.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// When an append counts as durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FlushMode {
    /// fsync before every acknowledgement (concurrent appenders share one fsync).
    EveryAppend,
    /// fsync at most every `interval_ms`; acknowledgements wait for the next fsync.
    Interval,
    /// fsync every `interval_ms` in the background; acknowledged once written to the OS page
    /// cache and readable at once, as Kafka does with `flush.ms`: an acknowledged append
    /// survives a killed process, and a machine crash loses at most the last `interval_ms`.
    Background,
    /// Never fsync explicitly; acknowledged once written to the OS page cache.
    Os,
}

/// Flush policy of a topic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FlushPolicy {
    /// Flush mode. Default `every_append` (group commit).
    pub mode: FlushMode,
    /// Interval between fsyncs for `interval` and `background` modes, in milliseconds.
    /// Default 100.
    pub interval_ms: u64,
    /// `every_append`: an fsync starts at least this long, in microseconds, after the one
    /// before it started, so the appends of that time share it: fewer fsyncs (each costs CPU)
    /// for at most this much more latency, and only while fsyncs follow each other that
    /// closely. Default 0: an fsync starts as soon as the one before it ends.
    pub linger_us: u64,
}

impl Default for FlushPolicy {
    fn default() -> Self {
        Self {
            mode: FlushMode::EveryAppend,
            interval_ms: 100,
            linger_us: 0,
        }
    }
}

/// Settings of one topic; every field falls back to the log-wide default.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TopicConfig {
    /// Number of partitions.
    pub partitions: Option<u32>,
    /// Delete segments older than this, in milliseconds.
    pub retention_ms: Option<u64>,
    /// Delete oldest segments while a partition holds more than this many bytes.
    pub retention_bytes: Option<u64>,
    /// Roll a new segment at this size, in bytes.
    pub segment_bytes: Option<u64>,
    /// Roll a new segment after this age, in milliseconds.
    pub segment_ms: Option<u64>,
    /// Flush policy.
    pub flush: Option<FlushPolicy>,
    /// Largest record batch accepted, in bytes.
    pub max_message_bytes: Option<u32>,
}

/// TLS on the Kafka listener (`log.kafka_tls`); off unless `cert_file` is set.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KafkaTlsConfig {
    /// PEM certificate chain; TLS is on when set. Default none (plaintext).
    pub cert_file: Option<String>,
    /// PEM private key of the certificate. Default none.
    pub key_file: Option<String>,
    /// PEM CA bundle that client certificates must chain to; when set, every client must
    /// present a valid certificate (mTLS). Default none.
    pub client_ca_file: Option<String>,
    /// Client certificate subject (its common name, or the whole subject when it has none) →
    /// principal name: a tenant of `gateway.auth.keys` or a name in `log.principals`. A
    /// connection with a mapped certificate is that principal without SASL. Default empty.
    pub client_principals: BTreeMap<String, String>,
}

impl KafkaTlsConfig {
    /// Whether TLS is configured.
    pub fn enabled(&self) -> bool {
        self.cert_file.is_some()
    }
}

/// SASL on the Kafka listener (`log.kafka_sasl`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KafkaSaslConfig {
    /// Require SASL before any request but ApiVersions. PLAIN: the user name is a tenant and
    /// the password one of its API keys (`gateway.auth.keys`), or a name in `log.principals`
    /// with its `plain_sha256`; SCRAM: a name in `log.principals` with a stored credential.
    /// Default false.
    pub enabled: bool,
    /// Mechanisms offered, of `SCRAM-SHA-256`, `SCRAM-SHA-512` and `PLAIN`. Default all three.
    pub mechanisms: Vec<String>,
    /// Allow PLAIN on a listener that is neither TLS nor loopback (the password crosses the
    /// network in clear). Default false: such a listener refuses to start.
    pub allow_plaintext_plain: bool,
}

impl Default for KafkaSaslConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            mechanisms: SASL_MECHANISMS.iter().map(|m| (*m).to_owned()).collect(),
            allow_plaintext_plain: false,
        }
    }
}

/// The SASL mechanisms the Kafka listener can serve.
pub const SASL_MECHANISMS: &[&str] = &["SCRAM-SHA-256", "SCRAM-SHA-512", "PLAIN"];

/// What a principal is to the Kafka listener's authorizer (`log.principals[].role`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PrincipalRole {
    /// A tenant: produces its own events to schema-governed topics; the broker stamps
    /// `hw.tenant` with its name and validates what it produces.
    Tenant,
    /// A Headwater service (a gateway, a router) or another trusted program: every resource,
    /// narrowed by deny ACLs.
    Service,
    /// An operator: a super user, never refused.
    Operator,
}

/// A named principal of the Kafka listener (`log.principals`), with its credentials. Only
/// salted or hashed forms are stored, never a password. Its `Debug` redacts the SCRAM
/// credentials (their stored and server keys let a thief pose as the broker and try
/// passwords offline); `plain_sha256` is a digest like the API key digests and shows.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrincipalConfig {
    /// The principal's name (`User:<name>` in ACLs); for a tenant, the tenant.
    pub name: String,
    /// Tenant, service or operator.
    pub role: PrincipalRole,
    /// SCRAM-SHA-256 credential as printed by `headwater scram-credential`. Default none.
    #[serde(default)]
    pub scram_sha256: Option<String>,
    /// SCRAM-SHA-512 credential as printed by `headwater scram-credential`. Default none.
    #[serde(default)]
    pub scram_sha512: Option<String>,
    /// Hex SHA-256 of the PLAIN password (`printf %s PASSWORD | sha256sum`). Default none.
    #[serde(default)]
    pub plain_sha256: Option<String>,
}

impl std::fmt::Debug for PrincipalConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use crate::client_config::RedactedStr;
        f.debug_struct("PrincipalConfig")
            .field("name", &self.name)
            .field("role", &self.role)
            .field(
                "scram_sha256",
                &self.scram_sha256.as_deref().map(RedactedStr),
            )
            .field(
                "scram_sha512",
                &self.scram_sha512.as_deref().map(RedactedStr),
            )
            .field("plain_sha256", &self.plain_sha256)
            .finish()
    }
}

/// The log tier's configuration (`log:` in headwater.yaml).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// Kafka-protocol listener address. Default `127.0.0.1:9092`.
    pub kafka_listen: String,
    /// Address advertised to Kafka clients in Metadata; defaults to `kafka_listen`.
    pub advertised_listener: Option<String>,
    /// TLS on the Kafka listener. Default off.
    pub kafka_tls: KafkaTlsConfig,
    /// SASL (SCRAM-SHA-256/512, PLAIN) on the Kafka listener. Default off.
    pub kafka_sasl: KafkaSaslConfig,
    /// Named principals of the Kafka listener (services, operators, tenants with SCRAM
    /// credentials). Default none.
    pub principals: Vec<PrincipalConfig>,
    /// ACLs of the Kafka listener (Kafka's model), on top of the built-in rules of each
    /// principal's role; enforced when the listener authenticates clients. Default none.
    pub acls: Vec<crate::security::AclEntry>,
    /// Create a topic on first use with the defaults below. Default true.
    pub auto_create_topics: bool,
    /// Partitions of an auto-created topic. Default 4.
    pub default_partitions: u32,
    /// Segment roll size in bytes. Default 128 MiB.
    pub segment_bytes: u64,
    /// Segment roll age in milliseconds. Default 1 day.
    pub segment_ms: u64,
    /// Bytes of zeros kept written ahead of the log end in each active segment (topped up
    /// on a blocking thread 256 KiB at a time), so an append overwrites blocks the file
    /// already has and its fsync writes the data alone, not the file's size and block map
    /// too: on ext4 about 60% of the time (median) of an fsync that extends the file. The
    /// tail is cut off when the segment rolls or the log closes, and by recovery after a
    /// crash. 0 turns it off; `os` flush mode never fills. At most `segment_bytes` is
    /// filled. Default ([`DEFAULT_PREALLOCATE_BYTES`]): 4 MiB where a topic's flush mode is
    /// `every_append`, whose fsyncs are on every acknowledgement's path; none in `interval`
    /// and `background`, whose one fsync an interval pays the file's size once, while the
    /// zeros cost a second write of every byte (to the page cache and, by the next fsync,
    /// to the disk).
    pub preallocate_bytes: Option<u64>,
    /// Retention by age in milliseconds. Default 7 days.
    pub retention_ms: u64,
    /// Retention by size per partition in bytes; none by default.
    pub retention_bytes: Option<u64>,
    /// Default flush policy. Default: an fsync before each acknowledgement, shared by the
    /// appends waiting at once (`every_append`).
    pub flush: FlushPolicy,
    /// Largest record batch accepted, in bytes. Default 1 MiB.
    pub max_message_bytes: u32,
    /// Per-topic overrides, by topic name.
    pub topics: BTreeMap<String, TopicConfig>,
    /// Bytes of log between two sparse index entries. Default 4096.
    pub index_interval_bytes: u64,
    /// How often retention runs, in milliseconds. Default 60000 (1 minute).
    pub retention_check_interval_ms: u64,
    /// Forget an idempotent producer's sequences after it has been idle this long, in
    /// milliseconds (Kafka's `producer.id.expiration.ms`). Default 86400000 (1 day).
    pub producer_expiry_ms: u64,
    /// Most segment files open at once over every partition. The least recently used idle
    /// ones are closed past it (fsynced first when they hold unsynced bytes) and reopened on
    /// demand, so the number of partitions is not bounded by the process's file limit.
    /// Default none: half the process's soft `RLIMIT_NOFILE` at start-up, at least 64.
    pub max_open_files: Option<u32>,
    /// Kafka-listener connections served at once; more are closed on accept. Default 4096.
    pub kafka_max_connections: u32,
    /// Kafka-listener connections served at once from one IP address. Default 256.
    pub kafka_max_connections_per_ip: u32,
    /// A Kafka connection that sends no request for this long is closed, in milliseconds
    /// (Kafka's `connections.max.idle.ms`). Default 600000 (10 minutes).
    pub kafka_idle_timeout_ms: u64,
    /// Largest Kafka request frame, in bytes (Kafka's `socket.request.max.bytes`); a bigger
    /// one closes the connection. Default 104857600 (100 MiB).
    pub kafka_max_request_bytes: u32,
    /// Bytes of Kafka request frames being read or handled at once over every connection
    /// (Kafka's `queued.max.request.bytes`); a connection waits, unread, for room. At least
    /// `kafka_max_request_bytes`. Default 268435456 (256 MiB).
    pub kafka_queued_max_request_bytes: u64,
    /// Most record bytes in one Fetch response, in bytes (Kafka's broker `fetch.max.bytes`);
    /// a client's larger, zero or negative `max_bytes` gets this. Default 52428800 (50 MiB).
    pub fetch_max_bytes: u32,
    /// Most topics; CreateTopics and auto-creation beyond it are refused. Default 1000.
    pub max_topics: u32,
    /// Most partitions of one topic (CreateTopics, `default_partitions`, per-topic
    /// `partitions`). Default 256.
    pub max_partitions_per_topic: u32,
    /// Most consumer groups the Kafka listener's coordinator holds. Default 10000.
    pub max_groups: u32,
    /// Most members (joined or with a pending member id) of one consumer group (Kafka's
    /// `group.max.size`). Default 1000.
    pub group_max_size: u32,
    /// How `headwater gateway` and `headwater router` reach the log tier (Headwater log nodes
    /// or an Apache Kafka cluster); unused by `serve` and `log-node`.
    pub client: crate::client_config::KafkaClientConfig,
    /// A replicated log tier: `headwater log-node` joins it as `node_id`. Default none (one
    /// node, every partition its only replica; `headwater serve` ignores it).
    pub cluster: Option<ClusterConfig>,
}

/// A cluster of log nodes (`log.cluster`): every topic of `log.topics` is replicated on every
/// node, one Raft group per partition (docs/design/replication.md).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// The cluster's id: a peer of another cluster is refused. Default `headwater`.
    #[serde(default = "default_cluster_id")]
    pub id: String,
    /// This node's id (`headwater log-node --node-id`), one of `nodes`.
    #[serde(default)]
    pub node_id: Option<u64>,
    /// Every log node, this one included.
    pub nodes: Vec<ClusterNodeConfig>,
    /// The address this node binds for replication, `ip:port`. Default: its own
    /// `nodes[].replication`. Set it when peers reach this node by another address (a
    /// Kubernetes pod binds `0.0.0.0:9093` while peers dial its DNS name; the replication tests
    /// put a TCP fault proxy on every link). Loopback only without `tls`.
    #[serde(default)]
    pub listen: Option<String>,
    /// Mutual TLS between log nodes. Without it peers are known by their hello alone, so every
    /// replication address must be on loopback. Default none.
    #[serde(default)]
    pub tls: Option<ClusterTlsConfig>,
    /// How long, in milliseconds, a follower waits without hearing its leader before it stands
    /// for election: a random time between the two (`[min, max]`), after the leader's lease (which
    /// is `max`). Default `[300, 500]`: elections 0.8–1.0 s after a leader falls silent.
    /// Shorter fails over faster but risks needless elections on a loaded machine; `min` must be
    /// at least 300 (three heartbeats of 100 ms) and below `max`.
    #[serde(default = "default_election_timeout_ms")]
    pub election_timeout_ms: [u64; 2],
}

fn default_election_timeout_ms() -> [u64; 2] {
    [300, 500]
}

/// Mutual TLS on the replication port (`log.cluster.tls`): every node presents its certificate
/// and accepts only peers whose certificate chains to `ca_file`; a dialling node also checks
/// the peer's certificate against the host it dialled (its `nodes[].replication` host: a DNS
/// name or an IP address in the certificate's subject alternative names). Any holder of a
/// certificate of that CA can join as a node, as with Kafka's inter-broker mTLS: give the CA to
/// log nodes only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterTlsConfig {
    /// PEM certificate chain this node presents, as server and as client.
    pub cert_file: String,
    /// PEM private key of the certificate.
    pub key_file: String,
    /// PEM CA bundle peers' certificates must chain to.
    pub ca_file: String,
}

fn default_cluster_id() -> String {
    "headwater".to_owned()
}

/// One log node of `log.cluster.nodes`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterNodeConfig {
    /// Its id (1 or more, unique).
    pub id: u64,
    /// Its replication address, `host:port` (the node binds it unless `listen` is set; peers
    /// dial it, resolving the host at every dial). Without `log.cluster.tls` it must be a
    /// loopback `ip:port`.
    pub replication: String,
    /// The Kafka address clients are given for it in Metadata, `host:port`.
    pub kafka: String,
}

impl ClusterConfig {
    /// What is wrong with a replication address (`None`: nothing): `ip:port` on loopback
    /// without TLS; with TLS any `ip:port`, or `host:port` where a host name may be dialled.
    fn check_address(&self, addr: &str, may_be_a_name: bool) -> Option<String> {
        let shape = if may_be_a_name && self.tls.is_some() {
            "host:port"
        } else {
            "a socket address (ip:port)"
        };
        match addr.parse::<std::net::SocketAddr>() {
            Ok(ip) if !ip.ip().is_loopback() && self.tls.is_none() => Some(format!(
                "{ip} is not a loopback address: without log.cluster.tls peers are not \
                 authenticated, so the replication port may only be on loopback (set \
                 log.cluster.tls: cert_file, key_file and ca_file, for mutual TLS)"
            )),
            Ok(_) => None,
            Err(_) if may_be_a_name && self.tls.is_some() => {
                let host_and_port = addr.rsplit_once(':').filter(|(host, port)| {
                    !host.is_empty()
                        && !host.contains(char::is_whitespace)
                        && port.parse::<u16>().is_ok()
                });
                match host_and_port {
                    Some(_) => None,
                    None => Some(format!("`{addr}` is not {shape}")),
                }
            }
            Err(_) => Some(format!("`{addr}` is not {shape}")),
        }
    }

    /// Problems with the cluster's description, as `(path, message)`.
    fn validate(&self) -> Vec<(String, String)> {
        let mut errors = Vec::new();
        let mut err = |path: String, message: String| errors.push((path, message));
        if self.nodes.is_empty() {
            err(
                "log.cluster.nodes".to_owned(),
                "at least one node".to_owned(),
            );
        }
        let mut ids = std::collections::BTreeSet::new();
        for (i, node) in self.nodes.iter().enumerate() {
            let at = format!("log.cluster.nodes[{i}]");
            if node.id == 0 || !ids.insert(node.id) {
                err(
                    format!("{at}.id"),
                    format!("{} is 0 or not unique", node.id),
                );
            }
            if node.id > i32::MAX as u64 {
                err(
                    format!("{at}.id"),
                    format!(
                        "{} is above {} (it is the node's Kafka broker id, an int32)",
                        node.id,
                        i32::MAX
                    ),
                );
            }
            if let Some(message) = self.check_address(&node.replication, true) {
                err(format!("{at}.replication"), message);
            }
            let port = node.kafka.rsplit_once(':').map(|(_, p)| p.parse::<u16>());
            if !matches!(port, Some(Ok(_))) {
                err(
                    format!("{at}.kafka"),
                    format!("`{}` is not host:port", node.kafka),
                );
            }
        }
        if let Some(listen) = &self.listen
            && let Some(message) = self.check_address(listen, false)
        {
            err("log.cluster.listen".to_owned(), message);
        }
        let [min, max] = self.election_timeout_ms;
        if min < 300 || min >= max {
            err(
                "log.cluster.election_timeout_ms".to_owned(),
                format!("[{min}, {max}]: min at least 300 (three heartbeats) and below max"),
            );
        }
        if let Some(id) = self.node_id
            && !ids.contains(&id)
        {
            err(
                "log.cluster.node_id".to_owned(),
                format!("{id} is not one of log.cluster.nodes"),
            );
        }
        errors
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            kafka_listen: "127.0.0.1:9092".to_owned(),
            advertised_listener: None,
            kafka_tls: KafkaTlsConfig::default(),
            kafka_sasl: KafkaSaslConfig::default(),
            principals: Vec::new(),
            acls: Vec::new(),
            auto_create_topics: true,
            default_partitions: 4,
            segment_bytes: 128 * 1024 * 1024,
            segment_ms: 24 * 3600 * 1000,
            preallocate_bytes: None,
            retention_ms: 7 * 24 * 3600 * 1000,
            retention_bytes: None,
            flush: FlushPolicy::default(),
            max_message_bytes: 1024 * 1024,
            topics: BTreeMap::new(),
            index_interval_bytes: 4096,
            retention_check_interval_ms: 60_000,
            producer_expiry_ms: 24 * 3600 * 1000,
            max_open_files: None,
            kafka_max_connections: 4096,
            kafka_max_connections_per_ip: 256,
            kafka_idle_timeout_ms: 600_000,
            kafka_max_request_bytes: 100 * 1024 * 1024,
            kafka_queued_max_request_bytes: 256 * 1024 * 1024,
            fetch_max_bytes: 50 * 1024 * 1024,
            max_topics: 1000,
            max_partitions_per_topic: 256,
            max_groups: 10_000,
            group_max_size: 1000,
            client: crate::client_config::KafkaClientConfig::default(),
            cluster: None,
        }
    }
}

impl KafkaTlsConfig {
    /// Checks that the files come in working combinations.
    fn validate(&self) -> Vec<(String, String)> {
        let mut errors = Vec::new();
        if self.cert_file.is_some() != self.key_file.is_some() {
            errors.push((
                "log.kafka_tls".to_owned(),
                "cert_file and key_file go together".to_owned(),
            ));
        }
        if self.client_ca_file.is_some() && !self.enabled() {
            errors.push((
                "log.kafka_tls.client_ca_file".to_owned(),
                "needs log.kafka_tls.cert_file and key_file".to_owned(),
            ));
        }
        if !self.client_principals.is_empty() && self.client_ca_file.is_none() {
            errors.push((
                "log.kafka_tls.client_principals".to_owned(),
                "needs log.kafka_tls.client_ca_file: only verified certificates map to \
                 principals"
                    .to_owned(),
            ));
        }
        errors
    }
}

impl LogConfig {
    /// Checks `log.principals` and `log.kafka_sasl.mechanisms`.
    fn validate_principals(&self) -> Vec<(String, String)> {
        let mut errors = Vec::new();
        if self.kafka_sasl.mechanisms.is_empty() {
            errors.push((
                "log.kafka_sasl.mechanisms".to_owned(),
                format!("name at least one of {}", SASL_MECHANISMS.join(", ")),
            ));
        }
        for (i, mechanism) in self.kafka_sasl.mechanisms.iter().enumerate() {
            if !SASL_MECHANISMS.contains(&mechanism.as_str()) {
                errors.push((
                    format!("log.kafka_sasl.mechanisms[{i}]"),
                    format!("`{mechanism}` is not one of {}", SASL_MECHANISMS.join(", ")),
                ));
            }
        }
        let mut seen = std::collections::BTreeSet::new();
        for (i, principal) in self.principals.iter().enumerate() {
            let key = |field: &str| format!("log.principals[{i}].{field}");
            let name = &principal.name;
            if name.is_empty() || name.chars().any(|c| c.is_control() || c == ',' || c == '=') {
                errors.push((
                    key("name"),
                    "must be non-empty, without control characters, `,` or `=`".to_owned(),
                ));
            } else if name == "ANONYMOUS" {
                errors.push((key("name"), "ANONYMOUS is reserved".to_owned()));
            } else if !seen.insert(name.as_str()) {
                errors.push((key("name"), format!("`{name}` is listed twice")));
            }
            if let Some(digest) = &principal.plain_sha256
                && (digest.len() != 64 || !digest.bytes().all(|b| b.is_ascii_hexdigit()))
            {
                errors.push((
                    key("plain_sha256"),
                    "must be 64 hex digits (printf %s PASSWORD | sha256sum)".to_owned(),
                ));
            }
        }
        errors
    }
}

impl LogConfig {
    /// Checks the Kafka listener's and the topics' limits.
    fn validate_limits(&self) -> Vec<(String, String)> {
        let mut errors = Vec::new();
        let mut at_least_one = |key: &str, value: u64| {
            if value == 0 {
                errors.push((format!("log.{key}"), "must be at least 1".to_owned()));
            }
        };
        at_least_one("kafka_max_connections", self.kafka_max_connections.into());
        at_least_one(
            "kafka_max_connections_per_ip",
            self.kafka_max_connections_per_ip.into(),
        );
        at_least_one("kafka_idle_timeout_ms", self.kafka_idle_timeout_ms);
        at_least_one("fetch_max_bytes", self.fetch_max_bytes.into());
        at_least_one("max_topics", self.max_topics.into());
        at_least_one(
            "max_partitions_per_topic",
            self.max_partitions_per_topic.into(),
        );
        at_least_one("max_groups", self.max_groups.into());
        at_least_one("group_max_size", self.group_max_size.into());
        if let Some(max) = self.max_open_files {
            at_least_one("max_open_files", max.into());
        }
        if self.kafka_max_request_bytes < 1024 * 1024 {
            errors.push((
                "log.kafka_max_request_bytes".to_owned(),
                "must be at least 1048576 (1 MiB)".to_owned(),
            ));
        }
        if self.kafka_queued_max_request_bytes < u64::from(self.kafka_max_request_bytes) {
            errors.push((
                "log.kafka_queued_max_request_bytes".to_owned(),
                format!(
                    "must be at least log.kafka_max_request_bytes ({})",
                    self.kafka_max_request_bytes
                ),
            ));
        }
        let max = self.max_partitions_per_topic;
        if self.default_partitions > max {
            errors.push((
                "log.default_partitions".to_owned(),
                format!("must be at most log.max_partitions_per_topic ({max})"),
            ));
        }
        for (name, topic) in &self.topics {
            if topic.partitions.is_some_and(|p| p > max) {
                errors.push((
                    format!("log.topics.{name}.partitions"),
                    format!("must be at most log.max_partitions_per_topic ({max})"),
                ));
            }
        }
        errors
    }
}

/// Largest segment: positions in the sparse index are 32-bit.
pub const MAX_SEGMENT_BYTES: u64 = 1 << 31;

/// Zeros kept written ahead of the log end when `log.preallocate_bytes` is not set and a
/// topic's flush mode is `every_append`.
pub const DEFAULT_PREALLOCATE_BYTES: u64 = 4 * 1024 * 1024;

/// The settings of one topic after applying its overrides to the log-wide defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicSettings {
    /// Partitions of the topic when it is created.
    pub partitions: u32,
    /// Retention by age in milliseconds.
    pub retention_ms: u64,
    /// Retention by size per partition in bytes.
    pub retention_bytes: Option<u64>,
    /// Segment roll size in bytes.
    pub segment_bytes: u64,
    /// Segment roll age in milliseconds.
    pub segment_ms: u64,
    /// Zeros kept written ahead of the log end: `log.preallocate_bytes`, else by flush mode.
    pub preallocate_bytes: u64,
    /// Flush policy.
    pub flush: FlushPolicy,
    /// Largest record batch accepted, in bytes.
    pub max_message_bytes: u32,
    /// Bytes between sparse index entries.
    pub index_interval_bytes: u64,
    /// Idle time after which an idempotent producer is forgotten, in milliseconds.
    pub producer_expiry_ms: u64,
}

impl LogConfig {
    /// The bound on open segment files: `max_open_files`, else half the soft `RLIMIT_NOFILE`
    /// (at least 64).
    pub fn max_open_files(&self) -> usize {
        self.max_open_files
            .map_or_else(crate::open_files::default_max_open_files, |max| {
                max.max(1) as usize
            })
    }

    /// Resolves the settings of `topic`: its override, else the defaults.
    pub fn topic_settings(&self, topic: &str) -> TopicSettings {
        let o = self.topics.get(topic).cloned().unwrap_or_default();
        let flush = o.flush.unwrap_or_else(|| self.flush.clone());
        TopicSettings {
            partitions: o.partitions.unwrap_or(self.default_partitions).max(1),
            retention_ms: o.retention_ms.unwrap_or(self.retention_ms),
            retention_bytes: o.retention_bytes.or(self.retention_bytes),
            segment_bytes: o
                .segment_bytes
                .unwrap_or(self.segment_bytes)
                .clamp(4096, MAX_SEGMENT_BYTES),
            segment_ms: o.segment_ms.unwrap_or(self.segment_ms),
            preallocate_bytes: self.preallocate_bytes.unwrap_or(
                if flush.mode == FlushMode::EveryAppend {
                    DEFAULT_PREALLOCATE_BYTES
                } else {
                    0
                },
            ),
            flush,
            max_message_bytes: o.max_message_bytes.unwrap_or(self.max_message_bytes),
            index_interval_bytes: self.index_interval_bytes.max(1),
            producer_expiry_ms: self.producer_expiry_ms,
        }
    }

    /// Checks the wiring; returns every problem found as `(key path, message)`.
    pub fn validate(&self) -> Vec<(String, String)> {
        let mut errors = Vec::new();
        if self.kafka_listen.parse::<std::net::SocketAddr>().is_err() {
            errors.push((
                "log.kafka_listen".to_owned(),
                format!(
                    "`{}` is not a socket address (host:port)",
                    self.kafka_listen
                ),
            ));
        }
        errors.extend(self.kafka_tls.validate());
        errors.extend(self.validate_principals());
        errors.extend(self.validate_limits());
        errors.extend(crate::security::validate_acls(&self.acls));
        if let Some(cluster) = &self.cluster {
            errors.extend(cluster.validate());
        }
        if self.default_partitions == 0 {
            errors.push((
                "log.default_partitions".to_owned(),
                "must be at least 1".to_owned(),
            ));
        }
        if self.segment_bytes < 4096 || self.segment_bytes > MAX_SEGMENT_BYTES {
            errors.push((
                "log.segment_bytes".to_owned(),
                format!("must be between 4096 and {MAX_SEGMENT_BYTES}"),
            ));
        }
        if self
            .preallocate_bytes
            .is_some_and(|bytes| bytes > MAX_SEGMENT_BYTES)
        {
            errors.push((
                "log.preallocate_bytes".to_owned(),
                format!("must be at most {MAX_SEGMENT_BYTES} (0 turns it off)"),
            ));
        }
        if self.max_message_bytes < 1024 {
            errors.push((
                "log.max_message_bytes".to_owned(),
                "must be at least 1024".to_owned(),
            ));
        }
        if self.retention_check_interval_ms == 0 {
            errors.push((
                "log.retention_check_interval_ms".to_owned(),
                "must be at least 1".to_owned(),
            ));
        }
        if matches!(self.flush.mode, FlushMode::Interval | FlushMode::Background)
            && self.flush.interval_ms == 0
        {
            errors.push((
                "log.flush.interval_ms".to_owned(),
                "must be at least 1 in interval mode".to_owned(),
            ));
        }
        errors.extend(
            self.client
                .validate()
                .into_iter()
                .map(|(key, message)| (format!("log.client.{key}"), message)),
        );
        for (name, topic) in &self.topics {
            if topic.partitions == Some(0) {
                errors.push((
                    format!("log.topics.{name}.partitions"),
                    "must be at least 1".to_owned(),
                ));
            }
            if topic
                .segment_bytes
                .is_some_and(|b| !(4096..=MAX_SEGMENT_BYTES).contains(&b))
            {
                errors.push((
                    format!("log.topics.{name}.segment_bytes"),
                    format!("must be between 4096 and {MAX_SEGMENT_BYTES}"),
                ));
            }
            if topic.flush.as_ref().is_some_and(|f| {
                matches!(f.mode, FlushMode::Interval | FlushMode::Background) && f.interval_ms == 0
            }) {
                errors.push((
                    format!("log.topics.{name}.flush.interval_ms"),
                    "must be at least 1 in interval mode".to_owned(),
                ));
            }
            if crate::topic::check_name(name).is_err() {
                errors.push((
                    format!("log.topics.{name}"),
                    "is not a valid topic name".to_owned(),
                ));
            }
        }
        errors
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_validate_and_overrides_apply() {
        let mut config = LogConfig::default();
        assert!(config.validate().is_empty());
        config.topics.insert(
            "events".to_owned(),
            TopicConfig {
                partitions: Some(8),
                flush: Some(FlushPolicy {
                    mode: FlushMode::EveryAppend,
                    interval_ms: 0,
                    linger_us: 0,
                }),
                ..TopicConfig::default()
            },
        );
        let s = config.topic_settings("events");
        assert_eq!(s.partitions, 8);
        assert_eq!(s.flush.mode, FlushMode::EveryAppend);
        assert_eq!(config.topic_settings("other").partitions, 4);
        config
            .topics
            .insert("bad/name".to_owned(), TopicConfig::default());
        assert_eq!(config.validate().len(), 1);
    }

    #[test]
    fn zeros_ahead_default_to_the_topics_flushed_every_append() {
        let interval = FlushPolicy {
            mode: FlushMode::Interval,
            ..FlushPolicy::default()
        };
        let mut config = LogConfig {
            flush: interval.clone(),
            ..LogConfig::default()
        };
        config.topics.insert(
            "acked".to_owned(),
            TopicConfig {
                flush: Some(FlushPolicy::default()),
                ..TopicConfig::default()
            },
        );
        let ahead = |config: &LogConfig, topic| config.topic_settings(topic).preallocate_bytes;
        assert_eq!(ahead(&config, "other"), 0);
        assert_eq!(ahead(&config, "acked"), DEFAULT_PREALLOCATE_BYTES);
        assert_eq!(
            ahead(&LogConfig::default(), "other"),
            DEFAULT_PREALLOCATE_BYTES
        );
        config.preallocate_bytes = Some(1 << 20);
        assert_eq!(
            (ahead(&config, "other"), ahead(&config, "acked")),
            (1 << 20, 1 << 20)
        );
        config.preallocate_bytes = Some(0);
        assert_eq!(ahead(&config, "acked"), 0);
        config.preallocate_bytes = Some(MAX_SEGMENT_BYTES + 1);
        let keys: Vec<String> = config.validate().into_iter().map(|(k, _)| k).collect();
        assert_eq!(keys, ["log.preallocate_bytes"]);
    }

    #[test]
    fn kafka_security_is_off_by_default_and_tls_files_go_together() {
        let mut config = LogConfig::default();
        assert!(!config.kafka_tls.enabled() && !config.kafka_sasl.enabled);
        config.kafka_tls.key_file = Some("key.pem".to_owned());
        config.kafka_tls.client_ca_file = Some("ca.pem".to_owned());
        let keys: Vec<String> = config.validate().into_iter().map(|(k, _)| k).collect();
        assert_eq!(keys, ["log.kafka_tls", "log.kafka_tls.client_ca_file"]);
        config.kafka_tls.cert_file = Some("cert.pem".to_owned());
        assert!(config.validate().is_empty());
        let parsed: Result<LogConfig, _> =
            serde_json::from_str(r#"{"kafka_tls": {"cert_file": "c", "key": "k"}}"#);
        assert!(parsed.is_err(), "unknown keys are refused");
        let parsed: LogConfig = serde_json::from_str(r#"{"kafka_sasl": {"enabled": true}}"#)
            .expect("kafka_sasl parses");
        assert!(parsed.kafka_sasl.enabled);
    }

    #[test]
    fn principal_debug_redacts_scram_credentials() {
        let principal = PrincipalConfig {
            name: "router".to_owned(),
            role: PrincipalRole::Service,
            scram_sha256: Some("SCRAM-SHA-256$4096:c2FsdA==$c3RvcmVk:c2VydmVy".to_owned()),
            scram_sha512: None,
            plain_sha256: Some("ab12".to_owned()),
        };
        let shown = format!("{principal:?}");
        assert!(!shown.contains("c3RvcmVk"), "{shown}");
        assert!(shown.contains("scram_sha256: Some(<redacted>)"), "{shown}");
        assert!(shown.contains("scram_sha512: None"), "{shown}");
        assert!(shown.contains(r#"plain_sha256: Some("ab12")"#), "{shown}");
        assert!(shown.contains(r#"name: "router""#), "{shown}");
    }

    #[test]
    fn listener_and_topic_limits_are_checked() {
        let mut config = LogConfig {
            kafka_max_connections_per_ip: 0,
            kafka_queued_max_request_bytes: 1024,
            default_partitions: 300,
            ..LogConfig::default()
        };
        config.topics.insert(
            "wide".to_owned(),
            TopicConfig {
                partitions: Some(257),
                ..TopicConfig::default()
            },
        );
        let keys: Vec<String> = config.validate().into_iter().map(|(k, _)| k).collect();
        assert_eq!(
            keys,
            [
                "log.kafka_max_connections_per_ip",
                "log.kafka_queued_max_request_bytes",
                "log.default_partitions",
                "log.topics.wide.partitions",
            ]
        );
        let parsed: LogConfig =
            serde_json::from_str(r#"{"max_topics": 5, "fetch_max_bytes": 1048576}"#).unwrap();
        assert_eq!((parsed.max_topics, parsed.fetch_max_bytes), (5, 1 << 20));
    }
}
