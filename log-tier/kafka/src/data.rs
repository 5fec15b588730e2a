//! The data-plane APIs: Metadata, Produce, Fetch, ListOffsets, CreateTopics, DeleteTopics and
//! InitProducerId, over the embedded [`LogEngine`](crate::LogEngine).

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use futures::future::join_all;
use kafka_protocol::ResponseError;
use kafka_protocol::messages::create_topics_response::CreatableTopicResult;
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{
    BrokerId, CreateTopicsRequest, CreateTopicsResponse, DeleteTopicsRequest, DeleteTopicsResponse,
    InitProducerIdRequest, InitProducerIdResponse, ListOffsetsRequest, ListOffsetsResponse,
    MetadataRequest, MetadataResponse, ProduceRequest, ProduceResponse, ProducerId, TopicName,
};
use kafka_protocol::protocol::StrBytes;

use super::codes::{NONE, code};
use super::principal::Principal;
use super::{Broker, authorize};
use headwater_log::LogError;
use headwater_log::batch::BatchHeader;
use headwater_log::security::{Operation, ResourceType};
use headwater_log::{OffsetSpec, PendingAppend};

#[cfg(test)]
mod cluster_tests;
mod epochs;
mod fetch;

pub(crate) use epochs::offset_for_leader_epoch;
pub(crate) use fetch::fetch;

/// Metadata: this broker, and the requested topics (created on first use when allowed). A
/// listing of every topic shows only those `principal` may describe; a named topic it may not
/// describe is answered TOPIC_AUTHORIZATION_FAILED; a topic is created on first use only for
/// a principal that may create or write it.
pub(crate) fn metadata(
    broker: &Broker,
    principal: &Principal,
    request: MetadataRequest,
    version: i16,
) -> MetadataResponse {
    let engine = &broker.engine;
    let node = broker.options.node_id;
    let names: Vec<(String, bool)> = match request.topics {
        None => all_topics(broker).into_iter().map(|n| (n, false)).collect(),
        Some(topics) if topics.is_empty() && version == 0 => {
            all_topics(broker).into_iter().map(|n| (n, false)).collect()
        }
        Some(topics) => topics
            .into_iter()
            .filter_map(|t| t.name.map(|n| (n.0.to_string(), true)))
            .collect(),
    };
    let auto_create = match &broker.options.cluster {
        Some(cluster) => cluster.auto_create_topics(),
        None => engine.config().auto_create_topics,
    };
    let may_create = (version < 4 || request.allow_auto_topic_creation) && auto_create;
    let mut response = MetadataResponse::default();
    match &broker.options.cluster {
        Some(cluster) => {
            response.brokers = cluster
                .brokers()
                .into_iter()
                .map(|b| {
                    let mut out = MetadataResponseBroker::default();
                    out.node_id = BrokerId(b.node_id);
                    out.host = StrBytes::from_string(b.host);
                    out.port = b.port;
                    out
                })
                .collect();
            response.controller_id = BrokerId(cluster.controller());
        }
        None => {
            let mut me = MetadataResponseBroker::default();
            me.node_id = BrokerId(node);
            me.host = StrBytes::from_string(broker.options.advertised_host.clone());
            me.port = broker.options.advertised_port;
            response.brokers = vec![me];
            response.controller_id = BrokerId(node);
        }
    }
    response.cluster_id = Some(StrBytes::from_string(broker.options.cluster_id.clone()));
    response.cluster_authorized_operations = i32::MIN;
    let creations = Creations::new(broker);
    response.topics = names
        .into_iter()
        .filter(|(name, requested)| {
            *requested || authorize::may_see(broker, principal, ResourceType::Topic, name)
        })
        .map(|(name, requested)| {
            if !authorize::topic(broker, principal, &name, Operation::Describe) {
                let mut topic = MetadataResponseTopic::default();
                topic.name = Some(TopicName(StrBytes::from_string(name)));
                topic.topic_authorized_operations = i32::MIN;
                topic.error_code = authorize::TOPIC_DENIED;
                return topic;
            }
            let create = requested && may_create && may_create_topic(broker, principal, &name);
            topic_metadata(broker, &name, create.then_some(&creations))
        })
        .collect();
    response
}

/// Every topic: the engine's, and in a cluster those created at run time that this broker
/// does not hold.
fn all_topics(broker: &Broker) -> Vec<String> {
    let mut names = broker.engine.topic_names();
    if let Some(cluster) = &broker.options.cluster {
        names.retain(|name| !cluster.is_deleted(name));
        let known: std::collections::HashSet<String> = names.iter().cloned().collect();
        names.extend(
            cluster
                .topics()
                .into_iter()
                .map(|(name, _)| name)
                .filter(|name| !known.contains(name)),
        );
    }
    names
}

/// A topic's partition count: in a cluster, as its metadata says for topics created at run
/// time; else the engine's.
fn partition_count(broker: &Broker, name: &str) -> Option<u32> {
    let runtime = broker
        .options
        .cluster
        .as_ref()
        .and_then(|cluster| cluster.topic_partitions(name))
        .and_then(|count| u32::try_from(count).ok());
    let deleted = broker
        .options
        .cluster
        .as_ref()
        .is_some_and(|cluster| cluster.is_deleted(name));
    runtime.or_else(|| {
        (!deleted)
            .then(|| broker.engine.partition_count(name))
            .flatten()
    })
}

/// Whether `principal` may have `name` created on first use: it may create topics, or write
/// this one.
fn may_create_topic(broker: &Broker, principal: &Principal, name: &str) -> bool {
    let authorizer = &broker.options.authorizer;
    authorizer.allows(principal, ResourceType::Topic, name, Operation::Create)
        || authorizer.allows(
            principal,
            ResourceType::Cluster,
            headwater_log::security::CLUSTER_NAME,
            Operation::Create,
        )
        || authorizer.allows(principal, ResourceType::Topic, name, Operation::Write)
}

/// A topic's metadata, created first (through `create`) when it does not exist.
fn topic_metadata(
    broker: &Broker,
    name: &str,
    create: Option<&Creations<'_>>,
) -> MetadataResponseTopic {
    let engine = &broker.engine;
    let mut topic = MetadataResponseTopic::default();
    topic.name = Some(TopicName(StrBytes::from_string(name.to_owned())));
    topic.topic_authorized_operations = i32::MIN;
    let mut count = partition_count(broker, name);
    if let Some(creations) = create.filter(|_| count.is_none()) {
        let partitions = engine.config().topic_settings(name).partitions;
        if let Some(cluster) = &broker.options.cluster {
            // Created through the cluster's metadata, as Kafka does: the client is told
            // LEADER_NOT_AVAILABLE and asks again once the partitions have leaders.
            topic.error_code = match creations.check(name, partitions) {
                Ok(()) => {
                    if let Ok(permit) = broker.pending_creations.clone().try_acquire_owned() {
                        let (cluster, name) = (cluster.clone(), name.to_owned());
                        tokio::spawn(async move {
                            let created = cluster.create_topic(&name, partitions, None).await;
                            if let Err(refusal) = created {
                                tracing::debug!(topic = name, %refusal, "auto-creation refused");
                            }
                            drop(permit);
                        });
                    }
                    ResponseError::LeaderNotAvailable.code()
                }
                Err(refusal) => refusal.code(),
            };
            return topic;
        }
        match creations.create(name, partitions) {
            Ok(()) => count = engine.partition_count(name),
            Err(Refusal::Log(LogError::TopicExists(_))) => count = engine.partition_count(name),
            Err(refusal) => {
                topic.error_code = refusal.code();
                return topic;
            }
        }
    }
    let Some(count) = count else {
        topic.error_code = ResponseError::UnknownTopicOrPartition.code();
        return topic;
    };
    let node = BrokerId(broker.options.node_id);
    let cluster = broker.options.cluster.as_ref();
    topic.partitions = (0..count as i32)
        .map(|index| {
            let mut p = MetadataResponsePartition::default();
            p.partition_index = index;
            match cluster.and_then(|c| c.partition(name, index)) {
                Some(replicated) => {
                    p.leader_id = BrokerId(replicated.leader.unwrap_or(-1));
                    if replicated.leader.is_none() {
                        p.error_code = ResponseError::LeaderNotAvailable.code();
                    }
                    p.leader_epoch = replicated.leader_epoch;
                    p.replica_nodes = replicated.replicas.into_iter().map(BrokerId).collect();
                    p.isr_nodes = replicated.in_sync.into_iter().map(BrokerId).collect();
                }
                None => {
                    p.leader_id = node;
                    p.replica_nodes = vec![node];
                    p.isr_nodes = vec![node];
                }
            }
            p
        })
        .collect();
    topic
}

/// Why a topic was not created.
#[derive(Debug)]
enum Refusal {
    /// More partitions than `Limits::max_partitions_per_topic` (INVALID_PARTITIONS).
    Partitions { asked: u32, max: u32 },
    /// `Limits::max_topics` exist already (POLICY_VIOLATION).
    Topics { max: usize },
    /// The engine refused.
    Log(LogError),
}

impl Refusal {
    fn code(&self) -> i16 {
        match self {
            Self::Partitions { .. } => ResponseError::InvalidPartitions.code(),
            Self::Topics { .. } => ResponseError::PolicyViolation.code(),
            Self::Log(error) => code(error),
        }
    }

    fn message(&self) -> String {
        match self {
            Self::Partitions { asked, max } => format!(
                "{asked} partitions: at most {max} per topic (log.max_partitions_per_topic)"
            ),
            Self::Topics { max } => format!("at most {max} topics (log.max_topics)"),
            Self::Log(error) => error.to_string(),
        }
    }
}

/// The topic creations of one request, within the listener's limits. Once `Limits::max_topics`
/// refused one, the request's other new topics are refused without counting again (a request
/// may name a million topics).
struct Creations<'a> {
    broker: &'a Broker,
    full: AtomicBool,
}

impl<'a> Creations<'a> {
    fn new(broker: &'a Broker) -> Self {
        Self {
            broker,
            full: AtomicBool::new(false),
        }
    }

    /// Checks that `name` could be created with `partitions`; call under
    /// `Broker::topic_admin` when creating.
    fn check(&self, name: &str, partitions: u32) -> Result<(), Refusal> {
        let (limits, engine) = (&self.broker.options.limits, &self.broker.engine);
        let (limit, refusal) = if partitions > limits.max_partitions_per_topic {
            let max = limits.max_partitions_per_topic;
            let asked = partitions;
            (
                "max_partitions_per_topic",
                Refusal::Partitions { asked, max },
            )
        } else if engine.partition_count(name).is_some()
            || !self.full.load(Ordering::Relaxed)
                && all_topics(self.broker).len() < limits.max_topics
        {
            return Ok(());
        } else {
            self.full.store(true, Ordering::Relaxed);
            let max = limits.max_topics;
            ("max_topics", Refusal::Topics { max })
        };
        ::metrics::counter!(crate::metrics::KAFKA_LIMIT_REFUSALS_TOTAL, "limit" => limit)
            .increment(1);
        tracing::debug!(
            topic = name,
            partitions,
            limit,
            "topic creation refused by a limit"
        );
        Err(refusal)
    }

    /// Creates `name` with `partitions` if the limits allow: counted and created under one
    /// lock, so concurrent creations cannot pass `Limits::max_topics` together.
    fn create(&self, name: &str, partitions: u32) -> Result<(), Refusal> {
        let _admin = self
            .broker
            .topic_admin
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        self.check(name, partitions)?;
        self.broker
            .engine
            .create_topic_now(name, partitions)
            .map_err(Refusal::Log)
    }
}

/// Produce, its ordered phase: each partition's batches written (idempotence checked by the
/// engine), not yet durable; [`WrittenProduce::durable`] waits for durability and answers.
/// Topics `principal` may not write are refused (TOPIC_AUTHORIZATION_FAILED), so are producer
/// ids another principal owns (INVALID_PRODUCER_ID_MAPPING); a tenant's batches are stamped
/// and checked first ([`crate::stamp`]), a refused one answered INVALID_RECORD with the
/// reason. A partition replicated through Raft is appended whole here (written and committed
/// by a majority): its Produce is not pipelined.
pub(crate) async fn produce(
    broker: &Broker,
    principal: &Principal,
    request: ProduceRequest,
) -> WrittenProduce {
    let transactional = request.transactional_id.is_some();
    let creations = &Creations::new(broker);
    let appends = request.topic_data.iter().flat_map(|topic| {
        let name = topic.name.0.to_string();
        let writable = authorize::topic(broker, principal, &name, Operation::Write);
        topic.partition_data.iter().map(move |p| {
            let name = name.clone();
            let records = p.records.clone().unwrap_or_default();
            let index = p.index;
            async move {
                let result = if transactional {
                    Err((
                        ResponseError::TransactionalIdAuthorizationFailed.code(),
                        None,
                    ))
                } else if !writable {
                    Err((authorize::TOPIC_DENIED, None))
                } else {
                    append_as(creations, principal, &name, index, records).await
                };
                (name, index, result)
            }
        })
    });
    // Polled in order: partitions whose batches need no decompression are written in the
    // order the request lists them.
    let results = join_all(appends).await;
    WrittenProduce {
        acks: request.acks,
        results,
    }
}

/// What a partition's append gave or refused: an error code and message.
type PartitionResult<T> = Result<T, (i16, Option<String>)>;

/// A partition's batches once written.
enum Stored {
    /// In the local log, waiting for durability.
    Pending(PendingAppend),
    /// Committed already (a replicated partition): the base offset.
    Committed(i64),
}

/// A Produce request whose batches are written, in request order, and may still wait for
/// durability ([`produce`]).
pub(crate) struct WrittenProduce {
    acks: i16,
    results: Vec<(String, i32, PartitionResult<Stored>)>,
}

impl WrittenProduce {
    /// Waits until every written batch is durable, then answers; `None` for acks=0, which
    /// gets no response (after its batches are durable all the same, so a connection's
    /// appends in flight stay bounded).
    pub(crate) async fn durable(self, broker: &Broker) -> Option<ProduceResponse> {
        let durable = self
            .results
            .into_iter()
            .map(|(name, index, result)| async move {
                let result = match result {
                    Ok(Stored::Pending(pending)) => {
                        pending.durable().await.map_err(|e| (code(&e), None))
                    }
                    Ok(Stored::Committed(base_offset)) => Ok(base_offset),
                    Err(refused) => Err(refused),
                };
                (name, index, result)
            });
        let results = join_all(durable).await;
        (self.acks != 0).then(|| produce_response(broker, results))
    }
}

/// The Produce response of each partition's outcome, topics in the order they first appear.
fn produce_response(
    broker: &Broker,
    results: Vec<(String, i32, PartitionResult<i64>)>,
) -> ProduceResponse {
    let mut response = ProduceResponse::default();
    // Where each topic's partitions go in `response.responses`.
    let mut topics: HashMap<String, usize> = HashMap::new();
    for (name, index, result) in results {
        let mut p = PartitionProduceResponse::default();
        p.index = index;
        p.log_append_time_ms = -1;
        match result {
            Ok(base_offset) => {
                p.base_offset = base_offset;
                p.log_start_offset = broker
                    .engine
                    .partition_offsets(&name, index)
                    .map_or(-1, |o| o.log_start);
            }
            Err((error_code, message)) => {
                p.error_code = error_code;
                p.error_message = message.map(StrBytes::from_string);
                p.base_offset = -1;
                p.log_start_offset = -1;
            }
        }
        match topics.entry(name) {
            Entry::Occupied(at) => response.responses[*at.get()].partition_responses.push(p),
            Entry::Vacant(at) => {
                let mut topic = TopicProduceResponse::default();
                topic.name = TopicName(StrBytes::from_string(at.key().clone()));
                topic.partition_responses.push(p);
                at.insert(response.responses.len());
                response.responses.push(topic);
            }
        }
    }
    response
}

/// Writes one partition's records as `principal`: its producer id must be its own, and a
/// tenant's batch is stamped and checked before it is stored. A replicated partition's batch
/// is committed before this resolves; a local one is written, durable later.
async fn append_as(
    creations: &Creations<'_>,
    principal: &Principal,
    topic: &str,
    partition: i32,
    records: Bytes,
) -> PartitionResult<Stored> {
    let broker = creations.broker;
    let producer_id = BatchHeader::parse(&records).map_or(-1, |h| h.producer_id);
    if !broker.producers.check(producer_id, principal) {
        ::metrics::counter!(crate::metrics::KAFKA_DENIED_TOTAL, "resource" => "producer_id")
            .increment(1);
        return Err((
            ResponseError::InvalidProducerIdMapping.code(),
            Some(format!(
                "producer id {producer_id} belongs to another principal than {principal}"
            )),
        ));
    }
    let records = match principal.tenant() {
        None => records,
        Some(tenant) => {
            let policy = broker.options.policy.clone();
            let now = headwater_log::now_ms();
            let max_inflated = broker.engine.max_inflated_bytes(topic);
            let (owned_topic, owned_tenant) = (topic.to_owned(), tenant.to_owned());
            let stamped = broker
                .engine
                .run_decompressing(move || {
                    crate::stamp::stamp_batch(
                        &records,
                        &owned_topic,
                        &owned_tenant,
                        now,
                        max_inflated,
                        policy.as_deref(),
                    )
                })
                .await
                .map_err(|e| (code(&e), None))?;
            stamped.map_err(|error| {
                let reason = match error {
                    crate::stamp::StampError::Batch(_) => "batch",
                    crate::stamp::StampError::ForeignTenant { .. } => "foreign_tenant",
                    crate::stamp::StampError::Invalid { .. } => "invalid",
                };
                ::metrics::counter!(crate::metrics::KAFKA_REFUSED_BATCHES_TOTAL, "reason" => reason)
                    .increment(1);
                tracing::debug!(%principal, topic, partition, %error, "tenant batch refused");
                (ResponseError::InvalidRecord.code(), Some(error.to_string()))
            })?
        }
    };
    if let Some(cluster) = &broker.options.cluster
        && cluster.partition(topic, partition).is_some()
    {
        return cluster
            .append(topic, partition, records)
            .await
            .map(Stored::Committed)
            .map_err(|e| (e.code(), Some(e.to_string())));
    }
    let engine = &broker.engine;
    // The engine would create an unknown topic itself; create it here, within the limits.
    if engine.partition_count(topic).is_none() && engine.config().auto_create_topics {
        let partitions = engine.config().topic_settings(topic).partitions;
        if let Err(refusal) = creations.create(topic, partitions)
            && engine.partition_count(topic).is_none()
        {
            return Err((refusal.code(), Some(refusal.message())));
        }
    }
    engine
        .write_batch(topic, partition, records)
        .await
        .map(Stored::Pending)
        .map_err(|e| (code(&e), None))
}

/// Fetch: stored batches as they are, long-polling up to `max_wait_ms` for `min_bytes`, within
/// ListOffsets: earliest (-2), latest (-1) or the first offset at or after a timestamp; a
/// topic `principal` may not describe is answered TOPIC_AUTHORIZATION_FAILED.
pub(crate) fn list_offsets(
    broker: &Broker,
    principal: &Principal,
    request: ListOffsetsRequest,
) -> ListOffsetsResponse {
    let mut response = ListOffsetsResponse::default();
    for topic in request.topics {
        let name = topic.name.0.to_string();
        let allowed = authorize::topic(broker, principal, &name, Operation::Describe);
        let mut out = ListOffsetsTopicResponse::default();
        out.name = topic.name.clone();
        for p in topic.partitions {
            let mut answer = ListOffsetsPartitionResponse::default();
            answer.partition_index = p.partition_index;
            answer.timestamp = -1;
            answer.offset = -1;
            let spec = match p.timestamp {
                -2 => Some(OffsetSpec::Earliest),
                -1 => Some(OffsetSpec::Latest),
                t if t >= 0 => Some(OffsetSpec::Timestamp(t)),
                _ => None,
            };
            if !allowed {
                answer.error_code = authorize::TOPIC_DENIED;
                out.partitions.push(answer);
                continue;
            }
            if let Some(code) =
                fetch::refusal(broker, &name, p.partition_index, p.current_leader_epoch)
            {
                answer.error_code = code;
                out.partitions.push(answer);
                continue;
            }
            match spec.map(|s| broker.engine.list_offset(&name, p.partition_index, s)) {
                None => answer.error_code = ResponseError::InvalidRequest.code(),
                Some(Ok(Some(found))) => {
                    answer.offset = found.offset;
                    answer.timestamp = found.timestamp_ms;
                    // The log end's epoch is the leader's current one (Kafka answers the
                    // epoch of the batch found; earlier lookups leave it unknown, -1).
                    if matches!(spec, Some(OffsetSpec::Latest))
                        && let Some(state) = broker
                            .options
                            .cluster
                            .as_ref()
                            .and_then(|c| c.partition(&name, p.partition_index))
                    {
                        answer.leader_epoch = state.leader_epoch;
                    }
                }
                Some(Ok(None)) => {}
                Some(Err(error)) => answer.error_code = code(&error),
            }
            out.partitions.push(answer);
        }
        response.topics.push(out);
    }
    response
}

/// CreateTopics on a single node: replication factor 1 (or -1 for the default); only for a
/// principal that may create the topic (or any topic); at most
/// `Limits::max_partitions_per_topic` partitions (INVALID_PARTITIONS) and `Limits::max_topics`
/// topics (POLICY_VIOLATION).
pub(crate) async fn create_topics(
    broker: &Broker,
    principal: &Principal,
    request: CreateTopicsRequest,
) -> CreateTopicsResponse {
    let any_topic = authorize::cluster(broker, principal, Operation::Create);
    let engine = &broker.engine;
    let creations = Creations::new(broker);
    let mut response = CreateTopicsResponse::default();
    for topic in request.topics {
        let name = topic.name.0.to_string();
        let mut result = CreatableTopicResult::default();
        result.name = topic.name.clone();
        let partitions = if topic.num_partitions < 0 {
            engine.config().topic_settings(&name).partitions
        } else {
            topic.num_partitions as u32
        };
        result.num_partitions = partitions as i32;
        result.replication_factor = 1;
        let cluster = broker.options.cluster.as_ref();
        let outcome =
            if !any_topic && !authorize::topic(broker, principal, &name, Operation::Create) {
                Err((
                    authorize::TOPIC_DENIED,
                    format!("{principal} may not create topic {name}"),
                ))
            } else if let Some(cluster) = cluster {
                let replication = u16::try_from(topic.replication_factor).ok();
                result.replication_factor = topic.replication_factor;
                if topic.num_partitions == 0 || topic.replication_factor == 0 {
                    Err((
                        if topic.num_partitions == 0 {
                            ResponseError::InvalidPartitions.code()
                        } else {
                            ResponseError::InvalidReplicationFactor.code()
                        },
                        "at least one partition and one replica".to_owned(),
                    ))
                } else if partition_count(broker, &name).is_some() {
                    Err((
                        ResponseError::TopicAlreadyExists.code(),
                        format!("topic {name} exists"),
                    ))
                } else {
                    let checked = headwater_log::check_topic_name(&name)
                        .map_err(Refusal::Log)
                        .and_then(|()| creations.check(&name, partitions))
                        .map_err(|r| (r.code(), r.message()));
                    match checked {
                        Err(refusal) => Err(refusal),
                        Ok(()) if request.validate_only => Ok(()),
                        Ok(()) => cluster
                            .create_topic(&name, partitions, replication)
                            .await
                            .map_err(|r| (r.code, r.message)),
                    }
                }
            } else if topic.replication_factor > 1 {
                Err((
                    ResponseError::InvalidReplicationFactor.code(),
                    "a single node holds one replica".to_owned(),
                ))
            } else if topic.num_partitions == 0 {
                Err((
                    ResponseError::InvalidPartitions.code(),
                    "at least one partition".to_owned(),
                ))
            } else if engine.partition_count(&name).is_some() {
                Err((
                    ResponseError::TopicAlreadyExists.code(),
                    format!("topic {name} exists"),
                ))
            } else if request.validate_only {
                headwater_log::check_topic_name(&name)
                    .map_err(Refusal::Log)
                    .and_then(|()| creations.check(&name, partitions))
                    .map_err(|r| (r.code(), r.message()))
            } else {
                creations
                    .create(&name, partitions)
                    .map_err(|r| (r.code(), r.message()))
            };
        if let Err((error_code, message)) = outcome {
            result.error_code = error_code;
            result.error_message = Some(StrBytes::from_string(message));
        }
        response.topics.push(result);
    }
    response
}

/// DeleteTopics by name, each only for a principal that may delete it.
pub(crate) async fn delete_topics(
    broker: &Broker,
    principal: &Principal,
    request: DeleteTopicsRequest,
) -> DeleteTopicsResponse {
    let mut names: Vec<TopicName> = request.topic_names;
    names.extend(request.topics.into_iter().filter_map(|t| t.name));
    let mut response = DeleteTopicsResponse::default();
    for name in names {
        let mut result = DeletableTopicResult::default();
        if !authorize::topic(broker, principal, name.0.as_str(), Operation::Delete) {
            result.error_code = authorize::TOPIC_DENIED;
            result.error_message = Some(StrBytes::from_string(format!(
                "{principal} may not delete topic {}",
                name.0.as_str()
            )));
        } else if let Some(cluster) = &broker.options.cluster {
            match cluster.delete_topic(name.0.as_str()).await {
                Ok(()) => result.error_code = NONE,
                Err(refusal) => {
                    result.error_code = refusal.code;
                    result.error_message = Some(StrBytes::from_string(refusal.message));
                }
            }
        } else if let Err(error) = broker.engine.delete_topic(name.0.as_str()).await {
            result.error_code = code(&error);
            result.error_message = Some(StrBytes::from_string(error.to_string()));
        } else {
            result.error_code = NONE;
        }
        result.name = Some(name);
        response.responses.push(result);
    }
    response
}

/// InitProducerId for idempotent producers (transactions are not served): needs cluster
/// IdempotentWrite; the id is random and owned by `principal`, and only its owner may bump its
/// epoch (KIP-360).
pub(crate) fn init_producer_id(
    broker: &Broker,
    principal: &Principal,
    request: InitProducerIdRequest,
) -> InitProducerIdResponse {
    let mut response = InitProducerIdResponse::default();
    response.ongoing_txn_producer_id = ProducerId(-1);
    response.ongoing_txn_producer_epoch = -1;
    response.producer_id = ProducerId(-1);
    response.producer_epoch = -1;
    if request.transactional_id.is_some() {
        response.error_code = ResponseError::TransactionalIdAuthorizationFailed.code();
        return response;
    }
    if !authorize::cluster(broker, principal, Operation::IdempotentWrite) {
        response.error_code = authorize::CLUSTER_DENIED;
        return response;
    }
    if request.producer_id.0 >= 0
        && request.producer_epoch >= 0
        && request.producer_epoch < i16::MAX
    {
        // A known producer re-initialising (KIP-360): same id, next epoch; its owner only.
        if !broker.producers.check(request.producer_id.0, principal) {
            ::metrics::counter!(crate::metrics::KAFKA_DENIED_TOTAL, "resource" => "producer_id")
                .increment(1);
            response.error_code = ResponseError::InvalidProducerIdMapping.code();
            return response;
        }
        response.producer_id = request.producer_id;
        response.producer_epoch = request.producer_epoch + 1;
    } else {
        response.producer_id = ProducerId(broker.producers.allocate(principal));
        response.producer_epoch = 0;
    }
    response
}
