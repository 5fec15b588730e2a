//! `headwater log-node` in a cluster (`log.cluster`): this node's Raft groups (one per
//! partition of every topic in `log.topics`, every node a replica; and of the topics created at
//! run time that the cluster's metadata places here) behind the replication port, and what its
//! Kafka listener needs to know of them: the brokers, who leads each partition, the leader's
//! write path, who coordinates consumer groups (the leader of the internal offsets partition,
//! through which offsets are committed), and CreateTopics/DeleteTopics/auto-creation through
//! the internal metadata partition.

use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::Context;
use bytes::Bytes;
use futures::future::BoxFuture;
use headwater_kafka::cluster::GroupCoordinator;
use headwater_kafka::{
    Cluster, ClusterBroker, ClusterError, RefusalKind, ReplicaState, TopicRefusal,
};
use headwater_log::{ClusterTlsConfig, LogEngine};
use headwater_raft::net::TransportConfig;
use headwater_raft::{AdminError, Applied, ClusterSpec, PeerTls, ProposeError, ReplicaNode};
use tokio::net::TcpListener;

use crate::config::Config;

/// This node's part of the cluster, as the Kafka listener sees it.
pub(crate) struct KafkaCluster {
    node: Arc<ReplicaNode>,
    brokers: Vec<ClusterBroker>,
    /// `log.auto_create_topics`: Metadata creates missing topics through the metadata.
    auto_create: bool,
}

impl KafkaCluster {
    /// Stops the node's groups and its replication server.
    pub(crate) async fn shutdown(&self) {
        self.node.shutdown().await;
    }

    /// `Ok` once this node has joined every group and caught up (`/readyz`).
    pub(crate) fn readiness(&self) -> Result<(), String> {
        self.node.readiness()
    }

    /// This node's id as a Kafka broker id.
    pub(crate) fn broker_id(&self) -> i32 {
        kafka_id(self.node.node_id())
    }
}

fn kafka_id(id: u64) -> i32 {
    i32::try_from(id).unwrap_or(i32::MAX)
}

/// Starts this node's replication when `log.cluster` is set: binds its replication address,
/// opens every topic of `log.topics` as a replicated topic and starts its groups.
pub(crate) async fn start(
    config: &Config,
    engine: Arc<LogEngine>,
    auto_create: bool,
) -> anyhow::Result<Option<Arc<KafkaCluster>>> {
    let Some(cluster) = &config.log.cluster else {
        return Ok(None);
    };
    let node_id = cluster.node_id.context(
        "log.cluster is set: give this node's id with --node-id (or log.cluster.node_id)",
    )?;
    let mut nodes = BTreeMap::new();
    let mut brokers = Vec::new();
    for node in &cluster.nodes {
        nodes.insert(node.id, node.replication.clone());
        let (host, port) = node
            .kafka
            .rsplit_once(':')
            .with_context(|| format!("log.cluster node {}: kafka is not host:port", node.id))?;
        brokers.push(ClusterBroker {
            node_id: kafka_id(node.id),
            host: host.to_owned(),
            port: port
                .parse()
                .with_context(|| format!("log.cluster node {}: kafka port", node.id))?,
        });
    }
    // `log.cluster.listen` when set (peers may reach this node by another address); its own
    // entry of `nodes` otherwise.
    let own = match &cluster.listen {
        Some(listen) => listen.clone(),
        None => nodes
            .get(&node_id)
            .cloned()
            .with_context(|| format!("node {node_id} is not one of log.cluster.nodes"))?,
    };
    let listener = TcpListener::bind(own.as_str())
        .await
        .with_context(|| format!("binding the replication address {own}"))?;
    let mut transport = TransportConfig::default();
    if let Some(tls) = &cluster.tls {
        transport.tls = Some(peer_tls(tls).context("log.cluster.tls")?);
    }
    let spec = ClusterSpec {
        cluster_id: cluster.id.clone(),
        node_id,
        nodes,
        election_timeout_ms: cluster.election_timeout_ms,
    };
    let node = ReplicaNode::start(
        engine,
        spec,
        listener,
        transport,
        &config.data_dir.join("raft"),
    )
    .context("starting replication")?;
    for (topic, settings) in &config.log.topics {
        let partitions = settings.partitions.unwrap_or(config.log.default_partitions);
        let partitions = i32::try_from(partitions).context("partitions")?;
        node.open_topic(topic, partitions)
            .await
            .with_context(|| format!("opening replicated topic {topic}"))?;
    }
    // Consumer-group offsets: the internal offsets partition, its log apart from the topics.
    node.open_offsets(&config.data_dir.join("raft").join("offsets-log"))
        .await
        .context("opening the consumer offsets partition")?;
    // Topics created at run time: the internal metadata partition.
    node.open_metadata(&config.data_dir.join("raft").join("metadata-log"))
        .await
        .context("opening the cluster's metadata partition")?;
    tracing::info!(node = node_id, replication = %own, topics = config.log.topics.len(), "joined the log cluster");
    Ok(Some(Arc::new(KafkaCluster {
        node,
        brokers,
        auto_create,
    })))
}

/// Mutual TLS between log nodes from `log.cluster.tls`.
fn peer_tls(tls: &ClusterTlsConfig) -> Result<PeerTls, headwater_tls::TlsError> {
    let server = headwater_tls::server_config(
        Some(&tls.cert_file),
        Some(&tls.key_file),
        headwater_tls::ClientAuth::Required(&tls.ca_file),
    )?;
    let client = headwater_tls::client_config(&tls.ca_file, &tls.cert_file, &tls.key_file)?;
    Ok(PeerTls {
        server: Arc::new(server),
        client: Arc::new(client),
    })
}

impl Cluster for KafkaCluster {
    fn brokers(&self) -> Vec<ClusterBroker> {
        self.brokers.clone()
    }

    fn controller(&self) -> i32 {
        self.brokers.iter().map(|b| b.node_id).min().unwrap_or(-1)
    }

    fn partition(&self, topic: &str, partition: i32) -> Option<ReplicaState> {
        let view = self.node.view(topic, partition)?;
        Some(ReplicaState {
            // A leader gone silent is not named: clients told LEADER_NOT_AVAILABLE look again
            // soon, and find the next leader as soon as it is elected.
            leader: view.leader.filter(|_| view.leader_heard).map(kafka_id),
            leader_epoch: i32::try_from(view.term).unwrap_or(i32::MAX),
            replicas: view.replicas.into_iter().map(kafka_id).collect(),
            in_sync: view.in_sync.into_iter().map(kafka_id).collect(),
        })
    }

    fn leader_epochs(&self, topic: &str, partition: i32) -> Option<(Vec<(i32, i64)>, i64)> {
        let part = self.node.partition(topic, partition)?;
        let epochs = part
            .log
            .leader_epochs()
            .into_iter()
            .map(|e| (i32::try_from(e.term).unwrap_or(i32::MAX), e.first_offset))
            .collect();
        Some((epochs, part.log.state().next_offset))
    }

    fn append<'a>(
        &'a self,
        topic: &'a str,
        partition: i32,
        records: Bytes,
    ) -> BoxFuture<'a, Result<i64, ClusterError>> {
        Box::pin(async move {
            match self.node.append(topic, partition, records).await {
                Ok(Applied::Data { base_offset, .. }) => Ok(base_offset),
                Ok(Applied::Internal) => Err(ClusterError::Stopped(
                    "a data batch was applied as an internal entry".to_owned(),
                )),
                Err(ProposeError::NotLeader { .. } | ProposeError::UnknownPartition { .. }) => {
                    Err(ClusterError::NotLeader)
                }
                Err(ProposeError::Unknown) => Err(ClusterError::OutcomeUnknown),
                Err(ProposeError::Log(e)) => Err(ClusterError::Log(e)),
                Err(ProposeError::Stopped(reason)) => Err(ClusterError::Stopped(reason)),
            }
        })
    }

    fn auto_create_topics(&self) -> bool {
        self.auto_create
    }

    fn is_deleted(&self, topic: &str) -> bool {
        self.node.is_deleted(topic)
    }

    fn topic_partitions(&self, topic: &str) -> Option<i32> {
        self.node.runtime_partitions(topic)
    }

    fn topics(&self) -> Vec<(String, i32)> {
        self.node
            .runtime_topics()
            .into_iter()
            .map(|(name, placement)| {
                let partitions = placement.partitions();
                (name, partitions)
            })
            .collect()
    }

    fn create_topic<'a>(
        &'a self,
        name: &'a str,
        partitions: u32,
        replication: Option<u16>,
    ) -> BoxFuture<'a, Result<(), TopicRefusal>> {
        Box::pin(async move {
            self.node
                .create_topic(name, partitions, replication)
                .await
                .map_err(refusal)
        })
    }

    fn delete_topic<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<(), TopicRefusal>> {
        Box::pin(async move { self.node.delete_topic(name).await.map_err(refusal) })
    }

    fn group_coordinator(&self) -> GroupCoordinator {
        let view = self.node.offsets_view();
        match view.leader {
            None => GroupCoordinator::Unknown,
            Some(id) if id != self.node.node_id() => GroupCoordinator::Elsewhere(kafka_id(id)),
            Some(_) if view.loaded => GroupCoordinator::Here,
            Some(_) => GroupCoordinator::Loading,
        }
    }

    fn commit_offsets<'a>(
        &'a self,
        group: &'a str,
        offsets: &'a [(&'a str, i32, i64)],
    ) -> BoxFuture<'a, Result<(), ClusterError>> {
        Box::pin(async move {
            self.node
                .commit_offsets(group, offsets)
                .await
                .map_err(|e| match e {
                    ProposeError::NotLeader { .. } | ProposeError::UnknownPartition { .. } => {
                        ClusterError::NotLeader
                    }
                    ProposeError::Unknown => ClusterError::OutcomeUnknown,
                    ProposeError::Log(e) => ClusterError::Log(e),
                    ProposeError::Stopped(reason) => ClusterError::Stopped(reason),
                })
        })
    }
}

/// The Kafka answer to a refused topic creation or deletion.
fn refusal(error: AdminError) -> TopicRefusal {
    let kind = match &error {
        AdminError::TopicExists(_) => RefusalKind::Exists,
        AdminError::UnknownTopic(_) => RefusalKind::Unknown,
        AdminError::InvalidTopic(_) => RefusalKind::InvalidName,
        AdminError::InvalidPartitions(_) => RefusalKind::InvalidPartitions,
        AdminError::InvalidReplicationFactor(_) => RefusalKind::InvalidReplicationFactor,
        AdminError::Policy(_) => RefusalKind::Policy,
        AdminError::Unavailable(_) => RefusalKind::TimedOut,
    };
    TopicRefusal::new(kind, error.to_string())
}
