//! OffsetCommit and OffsetFetch: durable committed offsets through the engine.

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

use crate::codes::code;

use super::{Coordinator, State};

impl Coordinator {
    /// OffsetCommit: durable through the engine; members of a managed group must be current.
    pub(crate) async fn offset_commit(&self, request: OffsetCommitRequest) -> OffsetCommitResponse {
        let group_id = request.group_id.0.to_string();
        let generation = request.generation_id_or_member_epoch;
        let gate = if generation < 0 {
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
        let mut response = OffsetCommitResponse::default();
        for topic in request.topics {
            let mut out = OffsetCommitResponseTopic::default();
            out.name = topic.name.clone();
            for p in topic.partitions {
                let mut result = OffsetCommitResponsePartition::default();
                result.partition_index = p.partition_index;
                result.error_code = match gate {
                    Some(error) => error.code(),
                    None => match self
                        .engine
                        .commit_offset(
                            &group_id,
                            topic.name.0.as_str(),
                            p.partition_index,
                            p.committed_offset,
                        )
                        .await
                    {
                        Ok(()) => 0,
                        Err(error) => code(&error),
                    },
                };
                out.partitions.push(result);
            }
            response.topics.push(out);
        }
        response
    }

    /// OffsetFetch (v1–v7): the committed offsets, -1 where none.
    pub(crate) fn offset_fetch(
        &self,
        request: OffsetFetchRequest,
        _version: i16,
    ) -> OffsetFetchResponse {
        let group = request.group_id.0.to_string();
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
