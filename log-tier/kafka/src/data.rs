//! The data-plane APIs: Metadata, Produce, Fetch, ListOffsets, CreateTopics, DeleteTopics and
//! InitProducerId, over the embedded [`LogEngine`](crate::LogEngine).

use std::time::Duration;

use bytes::Bytes;
use futures::future::join_all;
use kafka_protocol::ResponseError;
use kafka_protocol::messages::create_topics_response::CreatableTopicResult;
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{
    BrokerId, CreateTopicsRequest, CreateTopicsResponse, DeleteTopicsRequest, DeleteTopicsResponse,
    FetchRequest, FetchResponse, InitProducerIdRequest, InitProducerIdResponse, ListOffsetsRequest,
    ListOffsetsResponse, MetadataRequest, MetadataResponse, ProduceRequest, ProduceResponse,
    ProducerId, TopicName,
};
use kafka_protocol::protocol::StrBytes;

use super::Broker;
use super::codes::{NONE, code};
use headwater_log::LogError;
use headwater_log::OffsetSpec;

/// Metadata: this broker, and the requested topics (created on first use when allowed).
pub(crate) fn metadata(
    broker: &Broker,
    request: MetadataRequest,
    version: i16,
) -> MetadataResponse {
    let engine = &broker.engine;
    let node = broker.options.node_id;
    let names: Vec<(String, bool)> = match request.topics {
        None => engine
            .topic_names()
            .into_iter()
            .map(|n| (n, false))
            .collect(),
        Some(topics) if topics.is_empty() && version == 0 => engine
            .topic_names()
            .into_iter()
            .map(|n| (n, false))
            .collect(),
        Some(topics) => topics
            .into_iter()
            .filter_map(|t| t.name.map(|n| (n.0.to_string(), true)))
            .collect(),
    };
    let may_create =
        (version < 4 || request.allow_auto_topic_creation) && engine.config().auto_create_topics;
    let mut response = MetadataResponse::default();
    let mut me = MetadataResponseBroker::default();
    me.node_id = BrokerId(node);
    me.host = StrBytes::from_string(broker.options.advertised_host.clone());
    me.port = broker.options.advertised_port;
    response.brokers = vec![me];
    response.cluster_id = Some(StrBytes::from_string(broker.options.cluster_id.clone()));
    response.controller_id = BrokerId(node);
    response.cluster_authorized_operations = i32::MIN;
    response.topics = names
        .into_iter()
        .map(|(name, requested)| topic_metadata(broker, &name, requested && may_create))
        .collect();
    response
}

fn topic_metadata(broker: &Broker, name: &str, create: bool) -> MetadataResponseTopic {
    let engine = &broker.engine;
    let mut topic = MetadataResponseTopic::default();
    topic.name = Some(TopicName(StrBytes::from_string(name.to_owned())));
    topic.topic_authorized_operations = i32::MIN;
    let mut count = engine.partition_count(name);
    if count.is_none() && create {
        let partitions = engine.config().topic_settings(name).partitions;
        match engine.create_topic_now(name, partitions) {
            Ok(()) | Err(LogError::TopicExists(_)) => count = engine.partition_count(name),
            Err(error) => {
                topic.error_code = code(&error);
                return topic;
            }
        }
    }
    let Some(count) = count else {
        topic.error_code = ResponseError::UnknownTopicOrPartition.code();
        return topic;
    };
    let node = BrokerId(broker.options.node_id);
    topic.partitions = (0..count as i32)
        .map(|index| {
            let mut p = MetadataResponsePartition::default();
            p.partition_index = index;
            p.leader_id = node;
            p.replica_nodes = vec![node];
            p.isr_nodes = vec![node];
            p
        })
        .collect();
    topic
}

/// Produce: each partition's batches appended (idempotence checked by the engine); `None`
/// for acks=0, which gets no response.
pub(crate) async fn produce(broker: &Broker, request: ProduceRequest) -> Option<ProduceResponse> {
    let transactional = request.transactional_id.is_some();
    let appends = request.topic_data.iter().flat_map(|topic| {
        let name = topic.name.0.to_string();
        topic.partition_data.iter().map(move |p| {
            let name = name.clone();
            let records = p.records.clone().unwrap_or_default();
            let index = p.index;
            async move {
                let result = if transactional {
                    Err(ResponseError::TransactionalIdAuthorizationFailed.code())
                } else {
                    broker
                        .engine
                        .append_batch(&name, index, records)
                        .await
                        .map_err(|e| code(&e))
                };
                (name, index, result)
            }
        })
    });
    let results = join_all(appends).await;
    if request.acks == 0 {
        return None;
    }
    let mut response = ProduceResponse::default();
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
            Err(error_code) => {
                p.error_code = error_code;
                p.base_offset = -1;
                p.log_start_offset = -1;
            }
        }
        let topic_name = TopicName(StrBytes::from_string(name));
        match response.responses.iter_mut().find(|t| t.name == topic_name) {
            Some(topic) => topic.partition_responses.push(p),
            None => {
                let mut topic = TopicProduceResponse::default();
                topic.name = topic_name;
                topic.partition_responses.push(p);
                response.responses.push(topic);
            }
        }
    }
    Some(response)
}

/// Fetch: stored batches as they are, long-polling up to `max_wait_ms` for `min_bytes`.
pub(crate) async fn fetch(broker: &Broker, request: FetchRequest) -> FetchResponse {
    let wanted: Vec<(String, i32, i64, usize)> = request
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions.iter().map(|p| {
                (
                    t.topic.0.to_string(),
                    p.partition,
                    p.fetch_offset,
                    usize::try_from(p.partition_max_bytes.max(0)).unwrap_or(0),
                )
            })
        })
        .collect();
    let max_wait = Duration::from_millis(u64::try_from(request.max_wait_ms.max(0)).unwrap_or(0));
    let min_bytes = usize::try_from(request.min_bytes.max(0)).unwrap_or(0);
    let max_bytes = usize::try_from(request.max_bytes)
        .unwrap_or(usize::MAX)
        .max(1);
    let deadline = tokio::time::Instant::now() + max_wait;
    let mut answer = read_all(broker, &wanted, max_bytes);
    while answer.bytes < min_bytes.max(1)
        && !answer.errors
        && tokio::time::Instant::now() < deadline
    {
        let left = deadline - tokio::time::Instant::now();
        if wanted.is_empty() {
            tokio::time::sleep(left).await;
            break;
        }
        // Wait for any partition's high watermark to move past what was just read (not the
        // fetch offset, which a partial read already passed), or the deadline.
        let waits =
            wanted
                .iter()
                .zip(&answer.marks)
                .map(|((topic, partition, offset, _), mark)| {
                    Box::pin(broker.engine.wait_for_data(
                        topic,
                        *partition,
                        (*offset).max(*mark),
                        left,
                    ))
                });
        let _ = futures::future::select_all(waits).await;
        answer = read_all(broker, &wanted, max_bytes);
    }
    let mut response = FetchResponse::default();
    response.responses = answer.topics;
    response
}

struct FetchAnswer {
    topics: Vec<FetchableTopicResponse>,
    bytes: usize,
    errors: bool,
    /// Per wanted partition, the high watermark seen.
    marks: Vec<i64>,
}

fn read_all(
    broker: &Broker,
    wanted: &[(String, i32, i64, usize)],
    max_bytes: usize,
) -> FetchAnswer {
    let mut answer = FetchAnswer {
        topics: Vec::new(),
        bytes: 0,
        errors: false,
        marks: Vec::with_capacity(wanted.len()),
    };
    for (topic, partition, offset, partition_max) in wanted {
        let mut data = PartitionData::default();
        data.partition_index = *partition;
        data.preferred_read_replica = BrokerId(-1);
        data.aborted_transactions = Some(Vec::new());
        let budget = if answer.bytes == 0 {
            *partition_max
        } else {
            (*partition_max).min(max_bytes.saturating_sub(answer.bytes))
        };
        let read = if budget == 0 {
            broker
                .engine
                .partition_offsets(topic, *partition)
                .map(|o| (Bytes::new(), o.log_start, o.high_watermark))
        } else {
            broker
                .engine
                .read_raw(topic, *partition, *offset, budget)
                .map(|f| (f.records, f.log_start, f.high_watermark))
        };
        match read {
            Ok((records, log_start, high_watermark)) => {
                answer.marks.push(high_watermark);
                data.high_watermark = high_watermark;
                data.last_stable_offset = high_watermark;
                data.log_start_offset = log_start;
                answer.bytes += records.len();
                data.records = Some(records);
            }
            Err(error) => {
                answer.marks.push(-1);
                answer.errors = true;
                data.error_code = code(&error);
                data.high_watermark = -1;
                data.last_stable_offset = -1;
                data.log_start_offset = -1;
            }
        }
        let name = TopicName(StrBytes::from_string(topic.clone()));
        match answer.topics.iter_mut().find(|t| t.topic == name) {
            Some(t) => t.partitions.push(data),
            None => {
                let mut t = FetchableTopicResponse::default();
                t.topic = name;
                t.partitions.push(data);
                answer.topics.push(t);
            }
        }
    }
    answer
}

/// ListOffsets: earliest (-2), latest (-1) or the first offset at or after a timestamp.
pub(crate) fn list_offsets(broker: &Broker, request: ListOffsetsRequest) -> ListOffsetsResponse {
    let mut response = ListOffsetsResponse::default();
    for topic in request.topics {
        let name = topic.name.0.to_string();
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
            match spec.map(|s| broker.engine.list_offset(&name, p.partition_index, s)) {
                None => answer.error_code = ResponseError::InvalidRequest.code(),
                Some(Ok(Some(found))) => {
                    answer.offset = found.offset;
                    answer.timestamp = found.timestamp_ms;
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

/// CreateTopics on a single node: replication factor 1 (or -1 for the default).
pub(crate) fn create_topics(broker: &Broker, request: CreateTopicsRequest) -> CreateTopicsResponse {
    let engine = &broker.engine;
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
        let outcome = if topic.replication_factor > 1 {
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
            headwater_log::check_topic_name(&name).map_err(|e| (code(&e), e.to_string()))
        } else {
            engine
                .create_topic_now(&name, partitions)
                .map_err(|e| (code(&e), e.to_string()))
        };
        if let Err((error_code, message)) = outcome {
            result.error_code = error_code;
            result.error_message = Some(StrBytes::from_string(message));
        }
        response.topics.push(result);
    }
    response
}

/// DeleteTopics by name.
pub(crate) async fn delete_topics(
    broker: &Broker,
    request: DeleteTopicsRequest,
) -> DeleteTopicsResponse {
    let mut names: Vec<TopicName> = request.topic_names;
    names.extend(request.topics.into_iter().filter_map(|t| t.name));
    let mut response = DeleteTopicsResponse::default();
    for name in names {
        let mut result = DeletableTopicResult::default();
        if let Err(error) = broker.engine.delete_topic(name.0.as_str()).await {
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

/// InitProducerId for idempotent producers (transactions are not served).
pub(crate) fn init_producer_id(
    broker: &Broker,
    request: InitProducerIdRequest,
) -> InitProducerIdResponse {
    let mut response = InitProducerIdResponse::default();
    response.ongoing_txn_producer_id = ProducerId(-1);
    response.ongoing_txn_producer_epoch = -1;
    if request.transactional_id.is_some() {
        response.error_code = ResponseError::TransactionalIdAuthorizationFailed.code();
        response.producer_id = ProducerId(-1);
        response.producer_epoch = -1;
        return response;
    }
    if request.producer_id.0 >= 0
        && request.producer_epoch >= 0
        && request.producer_epoch < i16::MAX
    {
        // A known producer re-initialising (KIP-360): same id, next epoch.
        response.producer_id = request.producer_id;
        response.producer_epoch = request.producer_epoch + 1;
    } else {
        response.producer_id = ProducerId(broker.allocate_producer_id());
        response.producer_epoch = 0;
    }
    response
}
