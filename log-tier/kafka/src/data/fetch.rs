//! Fetch within Kafka's `fetch.max.bytes` semantics and the listener's budget for answers
//! not yet written.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::ResponseError;
use kafka_protocol::messages::fetch_request::FetchTopic;
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::{BrokerId, FetchRequest, FetchResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use tokio::sync::OwnedSemaphorePermit;

use crate::codes::code;
use crate::principal::Principal;
use crate::{Broker, authorize};
use headwater_log::security::Operation;

/// Kafka's `fetch.max.bytes` semantics: the response holds at most the request's `max_bytes`,
/// capped by `Limits::fetch_max_bytes` (which a zero or negative `max_bytes` gets), except
/// that its first batch is whole even when larger, so a consumer always progresses; each
/// partition within its `partition_max_bytes`. A partition listed twice is answered once
/// (the last listing's offsets, as Kafka's fetch map keeps). Partitions of topics `principal`
/// may not read are answered TOPIC_AUTHORIZATION_FAILED.
pub(crate) async fn fetch(
    broker: &Broker,
    principal: &Principal,
    request: FetchRequest,
) -> (FetchResponse, Option<OwnedSemaphorePermit>) {
    let (readable, refused): (Vec<_>, Vec<_>) = request
        .topics
        .iter()
        .partition(|t| authorize::topic(broker, principal, t.topic.0.as_str(), Operation::Read));
    let wanted = wanted_partitions(&readable);
    let max_wait = Duration::from_millis(u64::try_from(request.max_wait_ms.max(0)).unwrap_or(0));
    let min_bytes = usize::try_from(request.min_bytes.max(0)).unwrap_or(0);
    let max_bytes = response_max_bytes(request.max_bytes, broker.options.limits.fetch_max_bytes);
    let deadline = tokio::time::Instant::now() + max_wait;
    let (mut answer, mut held) = read_within_budget(broker, &wanted, max_bytes).await;
    while answer.bytes < min_bytes.max(1)
        && !answer.errors
        && tokio::time::Instant::now() < deadline
    {
        let left = deadline - tokio::time::Instant::now();
        if wanted.is_empty() {
            tokio::time::sleep(left).await;
            break;
        }
        // Too little to answer with: read again once data came, holding nothing meanwhile.
        answer.topics = Vec::new();
        drop(held.take());
        // Wait for any partition's high watermark to move past what was just read (not the
        // fetch offset, which a partial read already passed), or the deadline.
        let waits = wanted.iter().zip(&answer.marks).map(|(w, mark)| {
            Box::pin(
                broker
                    .engine
                    .wait_for_data(&w.topic, w.partition, w.offset.max(*mark), left),
            )
        });
        let _ = futures::future::select_all(waits).await;
        (answer, held) = read_within_budget(broker, &wanted, max_bytes).await;
    }
    let mut response = FetchResponse::default();
    response.responses = answer.topics;
    response.responses.extend(refused.into_iter().map(|t| {
        let mut out = FetchableTopicResponse::default();
        out.topic = t.topic.clone();
        out.partitions = t
            .partitions
            .iter()
            .map(|p| {
                let mut data = PartitionData::default();
                data.partition_index = p.partition;
                data.error_code = authorize::TOPIC_DENIED;
                data.high_watermark = -1;
                data.last_stable_offset = -1;
                data.log_start_offset = -1;
                data.preferred_read_replica = BrokerId(-1);
                data
            })
            .collect();
        out
    }));
    (response, held)
}

/// Reads every wanted partition ([`read_all`]) once `max_bytes` of the listener's fetch budget
/// (`Broker::fetch_bytes`) is free, and keeps the share the records took, for the connection
/// to hold until the response is written. (A first batch larger than `max_bytes` is not
/// counted beyond it.)
async fn read_within_budget(
    broker: &Broker,
    wanted: &[Wanted],
    max_bytes: usize,
) -> (FetchAnswer, Option<OwnedSemaphorePermit>) {
    let mut permit = if wanted.is_empty() {
        None
    } else {
        let asked = u32::try_from(max_bytes).unwrap_or(u32::MAX);
        // Never closed; `Broker::new` makes it at least `fetch_max_bytes` (≥ `max_bytes`).
        Arc::clone(&broker.fetch_bytes)
            .acquire_many_owned(asked)
            .await
            .ok()
    };
    let answer = read_all(broker, wanted, max_bytes);
    let held = permit
        .as_mut()
        .and_then(|p| p.split(answer.bytes.min(p.num_permits())));
    (answer, held)
}

/// One partition a Fetch reads.
struct Wanted {
    topic: String,
    partition: i32,
    offset: i64,
    /// The partition's `partition_max_bytes`.
    max_bytes: usize,
    /// The leader epoch the client believes current (Fetch v9+), -1 when it does not say.
    leader_epoch: i32,
}

/// The partitions of `topics`, each once: a later listing of the same partition replaces the
/// earlier one's offset and size in its place.
fn wanted_partitions(topics: &[&FetchTopic]) -> Vec<Wanted> {
    let mut wanted: Vec<Wanted> = Vec::new();
    let mut index: HashMap<(&str, i32), usize> = HashMap::new();
    for topic in topics {
        for p in &topic.partitions {
            let one = Wanted {
                topic: topic.topic.0.to_string(),
                partition: p.partition,
                offset: p.fetch_offset,
                max_bytes: usize::try_from(p.partition_max_bytes.max(0)).unwrap_or(0),
                leader_epoch: p.current_leader_epoch,
            };
            match index.entry((topic.topic.0.as_str(), p.partition)) {
                Entry::Occupied(seen) => wanted[*seen.get()] = one,
                Entry::Vacant(new) => {
                    new.insert(wanted.len());
                    wanted.push(one);
                }
            }
        }
    }
    wanted
}

/// The most record bytes a response may hold: the request's `max_bytes` within `cap`, and
/// `cap` for zero or negative.
fn response_max_bytes(requested: i32, cap: usize) -> usize {
    match usize::try_from(requested) {
        Ok(bytes) if bytes > 0 => bytes.min(cap),
        _ => cap,
    }
}

/// The whole batches at the start of `records` that fit in `budget` bytes.
fn whole_batches_within(records: Bytes, budget: usize) -> Bytes {
    if records.len() <= budget {
        return records;
    }
    let mut end = 0;
    for (_, batch) in headwater_log::batch::split_batches(records.clone()) {
        if end + batch.len() > budget {
            break;
        }
        end += batch.len();
    }
    records.slice(..end)
}

/// Why a partition was not read.
enum Refused {
    /// A replicated partition this broker does not lead, or led in another epoch than the
    /// client's (the error code).
    Replica(i16),
    /// The log refused.
    Log(headwater_log::LogError),
}

/// Why this broker may not serve `topic`/`partition` to a client that believes `leader_epoch`
/// current (-1: no belief), as Kafka's code: a replicated partition is served by its leader
/// only (NOT_LEADER_OR_FOLLOWER), and a client behind the leader's epoch is fenced
/// (FENCED_LEADER_EPOCH) while one ahead of it has news this broker lacks
/// (UNKNOWN_LEADER_EPOCH), KIP-320. `None`: serve it (not replicated, or led here).
pub(crate) fn refusal(
    broker: &Broker,
    topic: &str,
    partition: i32,
    leader_epoch: i32,
) -> Option<i16> {
    let state = broker
        .options
        .cluster
        .as_ref()?
        .partition(topic, partition)?;
    if state.leader != Some(broker.options.node_id) {
        return Some(ResponseError::NotLeaderOrFollower.code());
    }
    match leader_epoch {
        e if e < 0 || e == state.leader_epoch => None,
        e if e < state.leader_epoch => Some(ResponseError::FencedLeaderEpoch.code()),
        _ => Some(ResponseError::UnknownLeaderEpoch.code()),
    }
}

struct FetchAnswer {
    topics: Vec<FetchableTopicResponse>,
    bytes: usize,
    errors: bool,
    /// Per wanted partition, the high watermark seen.
    marks: Vec<i64>,
}

/// Reads every wanted partition within `max_bytes` in all: the first read that finds data
/// may return one whole batch beyond (the engine gives at least one), every later one only
/// whole batches within what is left.
fn read_all(broker: &Broker, wanted: &[Wanted], max_bytes: usize) -> FetchAnswer {
    let mut answer = FetchAnswer {
        topics: Vec::new(),
        bytes: 0,
        errors: false,
        marks: Vec::with_capacity(wanted.len()),
    };
    // Where each topic's partitions go in `answer.topics`.
    let mut topics: HashMap<&str, usize> = HashMap::new();
    for w in wanted {
        let mut data = PartitionData::default();
        data.partition_index = w.partition;
        data.preferred_read_replica = BrokerId(-1);
        data.aborted_transactions = Some(Vec::new());
        let first = answer.bytes == 0;
        let budget = w.max_bytes.min(max_bytes.saturating_sub(answer.bytes));
        let read = if let Some(code) = refusal(broker, &w.topic, w.partition, w.leader_epoch) {
            Err(Refused::Replica(code))
        } else if budget == 0 {
            broker
                .engine
                .partition_offsets(&w.topic, w.partition)
                .map(|o| (Bytes::new(), o.log_start, o.high_watermark))
                .map_err(Refused::Log)
        } else {
            broker
                .engine
                .read_raw(&w.topic, w.partition, w.offset, budget)
                .map(|f| {
                    let records = if first {
                        f.records
                    } else {
                        whole_batches_within(f.records, budget)
                    };
                    (records, f.log_start, f.high_watermark)
                })
                .map_err(Refused::Log)
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
                data.error_code = match error {
                    Refused::Replica(code) => code,
                    Refused::Log(e) => code(&e),
                };
                data.high_watermark = -1;
                data.last_stable_offset = -1;
                data.log_start_offset = -1;
            }
        }
        match topics.entry(w.topic.as_str()) {
            Entry::Occupied(at) => answer.topics[*at.get()].partitions.push(data),
            Entry::Vacant(at) => {
                at.insert(answer.topics.len());
                let mut t = FetchableTopicResponse::default();
                t.topic = TopicName(StrBytes::from_string(w.topic.clone()));
                t.partitions.push(data);
                answer.topics.push(t);
            }
        }
    }
    answer
}
