//! OffsetCommit and OffsetFetch: durable committed offsets through the engine, or, in a
//! cluster that replicates them, through the offsets partition (read back from the local
//! store, which every node applies them to).

use std::collections::BTreeMap;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponsePartition, OffsetFetchResponseTopic,
};
use kafka_protocol::messages::{
    OffsetCommitRequest, OffsetCommitResponse, OffsetFetchRequest, OffsetFetchResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;

use crate::cluster::{ClusterError, GroupCoordinator};
use crate::codes::code;

use super::{Coordinator, State};

/// The code of a replicated commit that failed, for each of its partitions: the coordinator
/// moved (NOT_COORDINATOR; a commit is safe to repeat, so an unknown outcome is the same), or
/// replication stopped here (COORDINATOR_NOT_AVAILABLE).
fn commit_code(error: &ClusterError) -> i16 {
    match error {
        ClusterError::NotLeader | ClusterError::OutcomeUnknown => {
            ResponseError::NotCoordinator.code()
        }
        ClusterError::Stopped(_) => ResponseError::CoordinatorNotAvailable.code(),
        ClusterError::Log(e) => code(e),
    }
}

impl Coordinator {
    /// OffsetCommit: durable through the engine; members of a managed group must be current.
    pub(crate) async fn offset_commit(&self, request: OffsetCommitRequest) -> OffsetCommitResponse {
        let group_id = request.group_id.0.to_string();
        let generation = request.generation_id_or_member_epoch;
        let gate = if let Some(refusal) = self.refusal() {
            Some(refusal)
        } else if generation < 0 {
            None
        } else {
            let groups = self.lock();
            match groups.get(&group_id) {
                None => Some(ResponseError::IllegalGeneration),
                Some(group) if !group.members.contains_key(request.member_id.as_str()) => {
                    Some(ResponseError::UnknownMemberId)
                }
                Some(group) if group.generation != generation => {
                    Some(ResponseError::IllegalGeneration)
                }
                Some(group) if group.state == State::CompletingRebalance => {
                    Some(ResponseError::RebalanceInProgress)
                }
                Some(_) => None,
            }
        };
        // One engine call for the whole request: one append and one fsync, however many
        // partitions it lists.
        let entries: Vec<(&str, i32, i64)> = request
            .topics
            .iter()
            .flat_map(|t| {
                t.partitions
                    .iter()
                    .map(|p| (t.name.0.as_str(), p.partition_index, p.committed_offset))
            })
            .collect();
        let codes: Vec<i16> = match gate {
            Some(error) => vec![error.code(); entries.len()],
            None if self.coordination() == GroupCoordinator::Here => {
                self.commit_replicated(&group_id, &entries).await
            }
            None => self
                .engine
                .commit_offsets(&group_id, &entries)
                .await
                .iter()
                .map(|r| r.as_ref().map_or_else(code, |()| 0))
                .collect(),
        };
        let mut codes = codes.into_iter();
        let mut response = OffsetCommitResponse::default();
        for topic in &request.topics {
            let mut out = OffsetCommitResponseTopic::default();
            out.name = topic.name.clone();
            for p in &topic.partitions {
                let mut result = OffsetCommitResponsePartition::default();
                result.partition_index = p.partition_index;
                result.error_code = codes.next().unwrap_or(0);
                out.partitions.push(result);
            }
            response.topics.push(out);
        }
        response
    }

    /// Commits `entries` through the cluster's offsets partition, those of partitions this
    /// broker knows (the others are UNKNOWN_TOPIC_OR_PARTITION), in one proposal; one code per
    /// entry.
    async fn commit_replicated(&self, group: &str, entries: &[(&str, i32, i64)]) -> Vec<i16> {
        let known = |topic: &str, partition: i32| {
            self.engine
                .partition_count(topic)
                .is_some_and(|count| partition >= 0 && (partition as u32) < count)
        };
        let valid: Vec<(&str, i32, i64)> = entries
            .iter()
            .copied()
            .filter(|&(topic, partition, _)| known(topic, partition))
            .collect();
        let outcome = match (&self.cluster, valid.is_empty()) {
            (Some(cluster), false) => match cluster.commit_offsets(group, &valid).await {
                Ok(()) => 0,
                Err(e) => {
                    tracing::debug!(group, error = %e, "replicated offset commit failed");
                    commit_code(&e)
                }
            },
            _ => 0,
        };
        entries
            .iter()
            .map(|&(topic, partition, _)| {
                if known(topic, partition) {
                    outcome
                } else {
                    ResponseError::UnknownTopicOrPartition.code()
                }
            })
            .collect()
    }

    /// OffsetFetch (v1–v7): the committed offsets, -1 where none.
    pub(crate) fn offset_fetch(
        &self,
        request: OffsetFetchRequest,
        _version: i16,
    ) -> OffsetFetchResponse {
        let group = request.group_id.0.to_string();
        if let Some(refusal) = self.refusal() {
            return refused_fetch(request, refusal);
        }
        let wanted: Vec<(String, Vec<i32>)> = match request.topics {
            Some(topics) => topics
                .into_iter()
                .map(|t| (t.name.0.to_string(), t.partition_indexes))
                .collect(),
            None => {
                let mut by_topic: BTreeMap<String, Vec<i32>> = BTreeMap::new();
                for (topic, partition, _) in self.engine.committed_offsets(&group) {
                    by_topic.entry(topic).or_default().push(partition);
                }
                by_topic.into_iter().collect()
            }
        };
        let mut response = OffsetFetchResponse::default();
        for (topic, partitions) in wanted {
            let mut out = OffsetFetchResponseTopic::default();
            out.name = TopicName(StrBytes::from_string(topic.clone()));
            for partition in partitions {
                let mut p = OffsetFetchResponsePartition::default();
                p.partition_index = partition;
                p.committed_offset = self
                    .engine
                    .committed_offset(&group, &topic, partition)
                    .unwrap_or(-1);
                p.committed_leader_epoch = -1;
                p.metadata = Some(StrBytes::from_static_str(""));
                out.partitions.push(p);
            }
            response.topics.push(out);
        }
        response
    }
}

/// OffsetFetch answered by a broker that does not coordinate now: the error for the request
/// (v2+) and for each partition asked for (v1 knows only those).
fn refused_fetch(request: OffsetFetchRequest, refusal: ResponseError) -> OffsetFetchResponse {
    let mut response = OffsetFetchResponse::default();
    response.error_code = refusal.code();
    for topic in request.topics.unwrap_or_default() {
        let mut out = OffsetFetchResponseTopic::default();
        out.name = topic.name;
        for partition in topic.partition_indexes {
            let mut p = OffsetFetchResponsePartition::default();
            p.partition_index = partition;
            p.committed_offset = -1;
            p.committed_leader_epoch = -1;
            p.metadata = Some(StrBytes::from_static_str(""));
            p.error_code = refusal.code();
            out.partitions.push(p);
        }
        response.topics.push(out);
    }
    response
}

#[cfg(test)]
mod tests {
    use kafka_protocol::messages::offset_commit_request::{
        OffsetCommitRequestPartition, OffsetCommitRequestTopic,
    };
    use kafka_protocol::messages::{GroupId, OffsetCommitRequest, TopicName};
    use kafka_protocol::protocol::StrBytes;

    use super::super::{Coordinator, GroupLimits};
    use headwater_log::{LogConfig, LogEngine};

    fn topic(name: &str, partitions: &[i32]) -> OffsetCommitRequestTopic {
        OffsetCommitRequestTopic::default()
            .with_name(TopicName(StrBytes::from_string(name.to_owned())))
            .with_partitions(
                partitions
                    .iter()
                    .map(|&p| {
                        OffsetCommitRequestPartition::default()
                            .with_partition_index(p)
                            .with_committed_offset(5)
                    })
                    .collect(),
            )
    }

    #[tokio::test]
    async fn unknown_topics_and_partitions_answer_unknown_topic_or_partition() {
        let dir = tempfile::tempdir().unwrap();
        let engine = LogEngine::open(dir.path(), LogConfig::default()).unwrap();
        engine.create_topic_now("t", 1).unwrap();
        let limits = GroupLimits {
            max_groups: 10,
            max_size: 10,
            max_bytes: 1 << 30,
        };
        let coordinator = Coordinator::new(engine.clone(), limits);
        let request = OffsetCommitRequest::default()
            .with_group_id(GroupId(StrBytes::from_static_str("g")))
            .with_generation_id_or_member_epoch(-1)
            .with_topics(vec![topic("t", &[0, 7]), topic("nope", &[0])]);
        let codes: Vec<Vec<i16>> = coordinator
            .offset_commit(request)
            .await
            .topics
            .iter()
            .map(|t| t.partitions.iter().map(|p| p.error_code).collect())
            .collect();
        let unknown = kafka_protocol::ResponseError::UnknownTopicOrPartition.code();
        assert_eq!(codes, [vec![0, unknown], vec![unknown]]);
        assert_eq!(engine.committed_offset("g", "t", 0), Some(5));
        assert_eq!(engine.committed_offset("g", "nope", 0), None);
    }
}
