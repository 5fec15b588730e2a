//! ACLs before the group APIs act: each request is checked against the connection's
//! [`Principal`] as Kafka's authorizer does it (group Read to join, sync, heartbeat, leave and
//! commit; group Describe to fetch offsets and describe (FindCoordinator is answered to all); topic Read to
//! commit, topic Describe to fetch offsets). A refused group gets
//! GROUP_AUTHORIZATION_FAILED and the coordinator never sees the request; refused topics in an
//! offset request get TOPIC_AUTHORIZATION_FAILED and the rest goes on.
//!
//! The data APIs check their topics in [`crate::data`], where the answers are built.

use kafka_protocol::messages::describe_groups_response::DescribedGroup;
use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::offset_fetch_response::OffsetFetchResponsePartition;
use kafka_protocol::messages::{
    DescribeGroupsRequest, DescribeGroupsResponse, HeartbeatResponse, JoinGroupResponse,
    LeaveGroupResponse, ListGroupsResponse, OffsetCommitRequest, OffsetCommitResponse,
    OffsetFetchRequest, OffsetFetchResponse, SyncGroupResponse,
};

use headwater_log::security::{CLUSTER_NAME, Operation, ResourceType};

use crate::Broker;
use crate::principal::Principal;

/// GROUP_AUTHORIZATION_FAILED.
pub(crate) const GROUP_DENIED: i16 = 30;
/// TOPIC_AUTHORIZATION_FAILED.
pub(crate) const TOPIC_DENIED: i16 = 29;
/// CLUSTER_AUTHORIZATION_FAILED.
pub(crate) const CLUSTER_DENIED: i16 = 31;

/// Whether `principal` may do `operation` on topic `name`.
pub(crate) fn topic(broker: &Broker, principal: &Principal, name: &str, op: Operation) -> bool {
    check(broker, principal, ResourceType::Topic, name, op)
}

/// Whether `principal` may do `operation` on group `name`.
pub(crate) fn group(broker: &Broker, principal: &Principal, name: &str, op: Operation) -> bool {
    check(broker, principal, ResourceType::Group, name, op)
}

/// Whether `principal` may do `operation` on the cluster.
pub(crate) fn cluster(broker: &Broker, principal: &Principal, op: Operation) -> bool {
    check(broker, principal, ResourceType::Cluster, CLUSTER_NAME, op)
}

/// The decision, counted and logged when it refuses.
fn check(
    broker: &Broker,
    principal: &Principal,
    kind: ResourceType,
    name: &str,
    op: Operation,
) -> bool {
    let allowed = broker.options.authorizer.allows(principal, kind, name, op);
    if !allowed {
        let resource = kind.as_str();
        ::metrics::counter!(crate::metrics::KAFKA_DENIED_TOTAL, "resource" => resource)
            .increment(1);
        tracing::debug!(%principal, resource, name, operation = ?op, "kafka request denied by ACL");
    }
    allowed
}

/// Same check without a log line or metric, for filtering listings.
pub(crate) fn may_see(
    broker: &Broker,
    principal: &Principal,
    kind: ResourceType,
    name: &str,
) -> bool {
    broker
        .options
        .authorizer
        .allows(principal, kind, name, Operation::Describe)
}

/// The answer to a JoinGroup for a group the principal may not read.
pub(crate) fn join_denied() -> JoinGroupResponse {
    let mut response = JoinGroupResponse::default();
    response.error_code = GROUP_DENIED;
    response.generation_id = -1;
    response
}

/// The answer to a SyncGroup for a group the principal may not read.
pub(crate) fn sync_denied() -> SyncGroupResponse {
    let mut response = SyncGroupResponse::default();
    response.error_code = GROUP_DENIED;
    response
}

/// The answer to a Heartbeat for a group the principal may not read.
pub(crate) fn heartbeat_denied() -> HeartbeatResponse {
    let mut response = HeartbeatResponse::default();
    response.error_code = GROUP_DENIED;
    response
}

/// The answer to a LeaveGroup for a group the principal may not read.
pub(crate) fn leave_denied() -> LeaveGroupResponse {
    let mut response = LeaveGroupResponse::default();
    response.error_code = GROUP_DENIED;
    response
}

/// OffsetCommit: group Read, and topic Read for every topic; refused topics are taken out of
/// the request and answered TOPIC_AUTHORIZATION_FAILED. `Err` is the whole answer when the
/// group is refused.
pub(crate) fn offset_commit(
    broker: &Broker,
    principal: &Principal,
    mut request: OffsetCommitRequest,
) -> Result<(OffsetCommitRequest, Vec<OffsetCommitResponseTopic>), OffsetCommitResponse> {
    let refuse =
        |topic: &kafka_protocol::messages::offset_commit_request::OffsetCommitRequestTopic,
         code: i16| {
            let mut out = OffsetCommitResponseTopic::default();
            out.name = topic.name.clone();
            out.partitions = topic
                .partitions
                .iter()
                .map(|p| {
                    let mut r = OffsetCommitResponsePartition::default();
                    r.partition_index = p.partition_index;
                    r.error_code = code;
                    r
                })
                .collect();
            out
        };
    if !group(
        broker,
        principal,
        request.group_id.as_str(),
        Operation::Read,
    ) {
        let mut response = OffsetCommitResponse::default();
        response.topics = request
            .topics
            .iter()
            .map(|t| refuse(t, GROUP_DENIED))
            .collect();
        return Err(response);
    }
    let (allowed, refused): (Vec<_>, Vec<_>) = std::mem::take(&mut request.topics)
        .into_iter()
        .partition(|t| topic(broker, principal, t.name.as_str(), Operation::Read));
    request.topics = allowed;
    let refused = refused.iter().map(|t| refuse(t, TOPIC_DENIED)).collect();
    Ok((request, refused))
}

/// OffsetFetch: group Describe; topics the principal may not describe are answered
/// TOPIC_AUTHORIZATION_FAILED when named, left out when the request asked for all.
pub(crate) fn offset_fetch_denied(
    broker: &Broker,
    principal: &Principal,
    request: &OffsetFetchRequest,
) -> Option<OffsetFetchResponse> {
    if group(
        broker,
        principal,
        request.group_id.as_str(),
        Operation::Describe,
    ) {
        return None;
    }
    let mut response = OffsetFetchResponse::default();
    response.error_code = GROUP_DENIED;
    Some(response)
}

/// Filters an OffsetFetch answer to the topics `principal` may describe.
pub(crate) fn offset_fetch_filter(
    broker: &Broker,
    principal: &Principal,
    asked_all: bool,
    response: &mut OffsetFetchResponse,
) {
    let topics = std::mem::take(&mut response.topics);
    for mut t in topics {
        if topic(broker, principal, t.name.as_str(), Operation::Describe) {
            response.topics.push(t);
        } else if !asked_all {
            for p in &mut t.partitions {
                *p = refused_fetch_partition(p.partition_index);
            }
            response.topics.push(t);
        }
    }
}

fn refused_fetch_partition(index: i32) -> OffsetFetchResponsePartition {
    let mut p = OffsetFetchResponsePartition::default();
    p.partition_index = index;
    p.committed_offset = -1;
    p.committed_leader_epoch = -1;
    p.error_code = TOPIC_DENIED;
    p
}

/// ListGroups: every group to a principal that may describe the cluster, else the groups it
/// may describe.
pub(crate) fn list_groups_filter(
    broker: &Broker,
    principal: &Principal,
    response: &mut ListGroupsResponse,
) {
    let everything = broker.options.authorizer.allows(
        principal,
        ResourceType::Cluster,
        CLUSTER_NAME,
        Operation::Describe,
    );
    if !everything {
        response
            .groups
            .retain(|g| may_see(broker, principal, ResourceType::Group, g.group_id.as_str()));
    }
}

/// DescribeGroups: the groups the principal may not describe are answered
/// GROUP_AUTHORIZATION_FAILED; the rest are described.
pub(crate) fn describe_groups(
    broker: &Broker,
    principal: &Principal,
    mut request: DescribeGroupsRequest,
) -> (DescribeGroupsRequest, Vec<DescribedGroup>) {
    let (allowed, refused): (Vec<_>, Vec<_>) = std::mem::take(&mut request.groups)
        .into_iter()
        .partition(|g| group(broker, principal, g.as_str(), Operation::Describe));
    request.groups = allowed;
    let refused = refused
        .into_iter()
        .map(|g| {
            let mut d = DescribedGroup::default();
            d.group_id = g;
            d.error_code = GROUP_DENIED;
            d.authorized_operations = i32::MIN;
            d
        })
        .collect();
    (request, refused)
}

/// The DescribeGroups answer, in request order is not required by clients; refused groups
/// are appended.
pub(crate) fn describe_groups_merge(
    mut response: DescribeGroupsResponse,
    refused: Vec<DescribedGroup>,
) -> DescribeGroupsResponse {
    response.groups.extend(refused);
    response
}
