//! The classic group coordinator: members, generations, rebalances on join, leave and session
//! timeout, client-side assignment relayed through SyncGroup, and durable committed offsets.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::ResponseError;
use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::find_coordinator_response::Coordinator as CoordinatorEntry;
use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponsePartition, OffsetFetchResponseTopic,
};
use kafka_protocol::messages::{
    BrokerId, DescribeGroupsRequest, DescribeGroupsResponse, FindCoordinatorRequest,
    FindCoordinatorResponse, GroupId, HeartbeatRequest, HeartbeatResponse, JoinGroupRequest,
    JoinGroupResponse, LeaveGroupRequest, LeaveGroupResponse, ListGroupsResponse,
    OffsetCommitRequest, OffsetCommitResponse, OffsetFetchRequest, OffsetFetchResponse,
    SyncGroupRequest, SyncGroupResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use tokio::sync::oneshot;

use super::Broker;
use super::codes::code;
use crate::engine::LogEngine;

/// Longest a rebalance waits for members to rejoin.
const MAX_REBALANCE: Duration = Duration::from_secs(300);
/// How often expired members are looked for.
const REAP_EVERY: Duration = Duration::from_millis(250);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Empty,
    PreparingRebalance,
    CompletingRebalance,
    Stable,
}

impl State {
    fn name(self) -> &'static str {
        match self {
            Self::Empty => "Empty",
            Self::PreparingRebalance => "PreparingRebalance",
            Self::CompletingRebalance => "CompletingRebalance",
            Self::Stable => "Stable",
        }
    }
}

struct Member {
    client_id: String,
    client_host: String,
    instance_id: Option<StrBytes>,
    session_timeout: Duration,
    rebalance_timeout: Duration,
    protocols: Vec<(String, Bytes)>,
    assignment: Bytes,
    last_seen: Instant,
    join: Option<(oneshot::Sender<JoinGroupResponse>, i16)>,
    sync: Option<oneshot::Sender<SyncGroupResponse>>,
}

struct Group {
    state: State,
    generation: i32,
    protocol_type: Option<String>,
    protocol: Option<String>,
    leader: Option<String>,
    members: BTreeMap<String, Member>,
    pending: HashSet<String>,
    rebalance_deadline: Option<Instant>,
}

impl Group {
    fn new() -> Self {
        Self {
            state: State::Empty,
            generation: 0,
            protocol_type: None,
            protocol: None,
            leader: None,
            members: BTreeMap::new(),
            pending: HashSet::new(),
            rebalance_deadline: None,
        }
    }

    /// Starts (or keeps) a rebalance; members waiting on SyncGroup are told to rejoin.
    fn prepare_rebalance(&mut self) {
        if self.members.is_empty() {
            self.state = State::Empty;
            self.leader = None;
            self.rebalance_deadline = None;
            return;
        }
        if self.state != State::PreparingRebalance {
            let timeout = self
                .members
                .values()
                .map(|m| m.rebalance_timeout)
                .max()
                .unwrap_or(MAX_REBALANCE)
                .min(MAX_REBALANCE);
            self.rebalance_deadline = Some(Instant::now() + timeout);
        }
        self.state = State::PreparingRebalance;
        for member in self.members.values_mut() {
            if let Some(tx) = member.sync.take() {
                let mut response = SyncGroupResponse::default();
                response.error_code = ResponseError::RebalanceInProgress.code();
                let _ = tx.send(response);
            }
        }
    }

    /// Completes the join phase when every member has rejoined: a new generation, a leader,
    /// and the member list for the leader.
    fn maybe_complete_join(&mut self) {
        if self.state != State::PreparingRebalance
            || self.members.values().any(|m| m.join.is_none())
        {
            return;
        }
        if self.members.is_empty() {
            self.prepare_rebalance();
            return;
        }
        self.generation += 1;
        let leader = match &self.leader {
            Some(l) if self.members.contains_key(l) => l.clone(),
            _ => self.members.keys().next().cloned().unwrap_or_default(),
        };
        self.protocol = self.choose_protocol(&leader);
        self.leader = Some(leader.clone());
        self.state = State::CompletingRebalance;
        self.rebalance_deadline = None;
        let protocol = self.protocol.clone().unwrap_or_default();
        let members: Vec<JoinGroupResponseMember> = self
            .members
            .iter()
            .map(|(id, m)| {
                let mut out = JoinGroupResponseMember::default();
                out.member_id = StrBytes::from_string(id.clone());
                out.group_instance_id = m.instance_id.clone();
                out.metadata = m
                    .protocols
                    .iter()
                    .find(|(name, _)| *name == protocol)
                    .map(|(_, meta)| meta.clone())
                    .unwrap_or_default();
                out
            })
            .collect();
        for (id, member) in self.members.iter_mut() {
            member.assignment = Bytes::new();
            if let Some((tx, _version)) = member.join.take() {
                let mut response = JoinGroupResponse::default();
                response.generation_id = self.generation;
                response.protocol_type = self.protocol_type.clone().map(StrBytes::from_string);
                response.protocol_name = Some(StrBytes::from_string(protocol.clone()));
                response.leader = StrBytes::from_string(leader.clone());
                response.member_id = StrBytes::from_string(id.clone());
                if *id == leader {
                    response.members = members.clone();
                }
                let _ = tx.send(response);
            }
        }
    }

    /// The leader's first protocol that every member supports.
    fn choose_protocol(&self, leader: &str) -> Option<String> {
        let candidates = self
            .members
            .get(leader)?
            .protocols
            .iter()
            .map(|(n, _)| n.clone());
        candidates.into_iter().find(|name| {
            self.members
                .values()
                .all(|m| m.protocols.iter().any(|(n, _)| n == name))
        })
    }
}

/// All groups of this broker.
pub(crate) struct Coordinator {
    engine: Arc<LogEngine>,
    groups: Mutex<HashMap<String, Group>>,
}

fn error_join(member_id: &str, error: ResponseError) -> JoinGroupResponse {
    let mut response = JoinGroupResponse::default();
    response.error_code = error.code();
    response.generation_id = -1;
    response.member_id = StrBytes::from_string(member_id.to_owned());
    response
}

impl Coordinator {
    pub(crate) fn new(engine: Arc<LogEngine>) -> Self {
        Self {
            engine,
            groups: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Group>> {
        self.groups.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// JoinGroup: waits until the rebalance completes (every member rejoined, or the
    /// rebalance timeout dropped the missing ones).
    pub(crate) async fn join(
        &self,
        request: JoinGroupRequest,
        version: i16,
        client_id: &str,
        client_host: &str,
    ) -> JoinGroupResponse {
        let group_id = request.group_id.0.to_string();
        let mut member_id = request.member_id.to_string();
        if group_id.is_empty() {
            return error_join(&member_id, ResponseError::InvalidGroupId);
        }
        let rx = {
            let mut groups = self.lock();
            let group = groups.entry(group_id).or_insert_with(Group::new);
            if member_id.is_empty() {
                member_id = format!("{client_id}-{}", ulid_like());
                if version >= 4 {
                    group.pending.insert(member_id.clone());
                    return error_join(&member_id, ResponseError::MemberIdRequired);
                }
            } else if !group.members.contains_key(&member_id) && !group.pending.contains(&member_id)
            {
                return error_join(&member_id, ResponseError::UnknownMemberId);
            }
            let protocol_type = request.protocol_type.to_string();
            if !group.members.is_empty()
                && group.protocol_type.as_deref() != Some(protocol_type.as_str())
            {
                return error_join(&member_id, ResponseError::InconsistentGroupProtocol);
            }
            group.pending.remove(&member_id);
            group.protocol_type = Some(protocol_type);
            let (tx, rx) = oneshot::channel();
            let member = Member {
                client_id: client_id.to_owned(),
                client_host: client_host.to_owned(),
                instance_id: request.group_instance_id.clone(),
                session_timeout: Duration::from_millis(request.session_timeout_ms.max(1) as u64),
                rebalance_timeout: Duration::from_millis(
                    request
                        .rebalance_timeout_ms
                        .max(request.session_timeout_ms)
                        .max(1) as u64,
                ),
                protocols: request
                    .protocols
                    .iter()
                    .map(|p| (p.name.to_string(), p.metadata.clone()))
                    .collect(),
                assignment: Bytes::new(),
                last_seen: Instant::now(),
                join: Some((tx, version)),
                sync: None,
            };
            let replaced = group.members.insert(member_id.clone(), member);
            if let Some((old_tx, _)) = replaced.and_then(|old| old.join) {
                let _ = old_tx.send(error_join(&member_id, ResponseError::UnknownMemberId));
            }
            group.prepare_rebalance();
            group.maybe_complete_join();
            rx
        };
        let wait = MAX_REBALANCE + Duration::from_secs(5);
        match tokio::time::timeout(wait, rx).await {
            Ok(Ok(response)) => response,
            _ => error_join(&member_id, ResponseError::RebalanceInProgress),
        }
    }

    /// SyncGroup: the leader hands out assignments; the others wait for theirs.
    pub(crate) async fn sync(&self, request: SyncGroupRequest) -> SyncGroupResponse {
        let member_id = request.member_id.to_string();
        let error = |e: ResponseError| {
            let mut response = SyncGroupResponse::default();
            response.error_code = e.code();
            response
        };
        let rx = {
            let mut groups = self.lock();
            let Some(group) = groups.get_mut(request.group_id.0.as_str()) else {
                return error(ResponseError::UnknownMemberId);
            };
            if !group.members.contains_key(&member_id) {
                return error(ResponseError::UnknownMemberId);
            }
            if request.generation_id != group.generation {
                return error(ResponseError::IllegalGeneration);
            }
            let answer = |group: &Group, id: &str| {
                let mut response = SyncGroupResponse::default();
                response.protocol_type = group.protocol_type.clone().map(StrBytes::from_string);
                response.protocol_name = group.protocol.clone().map(StrBytes::from_string);
                response.assignment = group
                    .members
                    .get(id)
                    .map(|m| m.assignment.clone())
                    .unwrap_or_default();
                response
            };
            match group.state {
                State::Empty | State::PreparingRebalance => {
                    return error(ResponseError::RebalanceInProgress);
                }
                State::Stable => return answer(group, &member_id),
                State::CompletingRebalance => {}
            }
            if group.leader.as_deref() == Some(member_id.as_str()) {
                for a in &request.assignments {
                    if let Some(m) = group.members.get_mut(a.member_id.as_str()) {
                        m.assignment = a.assignment.clone();
                    }
                }
                group.state = State::Stable;
                let ids: Vec<String> = group.members.keys().cloned().collect();
                for id in ids {
                    let response = answer(group, &id);
                    if let Some(tx) = group.members.get_mut(&id).and_then(|m| m.sync.take()) {
                        let _ = tx.send(response);
                    }
                }
                return answer(group, &member_id);
            }
            let (tx, rx) = oneshot::channel();
            if let Some(member) = group.members.get_mut(&member_id) {
                member.sync = Some(tx);
                member.last_seen = Instant::now();
            }
            rx
        };
        match tokio::time::timeout(MAX_REBALANCE, rx).await {
            Ok(Ok(response)) => response,
            _ => error(ResponseError::RebalanceInProgress),
        }
    }

    /// Heartbeat: keeps the member alive and tells it when to rejoin.
    pub(crate) fn heartbeat(&self, request: HeartbeatRequest) -> HeartbeatResponse {
        let mut response = HeartbeatResponse::default();
        let mut groups = self.lock();
        let error = match groups.get_mut(request.group_id.0.as_str()) {
            None => ResponseError::UnknownMemberId.code(),
            Some(group) => match group.members.get_mut(request.member_id.as_str()) {
                None => ResponseError::UnknownMemberId.code(),
                Some(member) => {
                    member.last_seen = Instant::now();
                    if request.generation_id != group.generation {
                        ResponseError::IllegalGeneration.code()
                    } else if group.state == State::PreparingRebalance {
                        ResponseError::RebalanceInProgress.code()
                    } else {
                        0
                    }
                }
            },
        };
        response.error_code = error;
        response
    }

    /// LeaveGroup: the members go, and the rest rebalance.
    pub(crate) fn leave(&self, request: LeaveGroupRequest, version: i16) -> LeaveGroupResponse {
        let mut response = LeaveGroupResponse::default();
        let ids: Vec<(String, Option<StrBytes>)> = if version >= 3 {
            request
                .members
                .iter()
                .map(|m| (m.member_id.to_string(), m.group_instance_id.clone()))
                .collect()
        } else {
            vec![(request.member_id.to_string(), None)]
        };
        let mut groups = self.lock();
        let Some(group) = groups.get_mut(request.group_id.0.as_str()) else {
            response.error_code = ResponseError::UnknownMemberId.code();
            return response;
        };
        let mut any_left = false;
        for (id, instance) in ids {
            let mut member = MemberResponse::default();
            member.member_id = StrBytes::from_string(id.clone());
            member.group_instance_id = instance;
            match group.members.remove(&id) {
                Some(left) => {
                    any_left = true;
                    if let Some((tx, _)) = left.join {
                        let _ = tx.send(error_join(&id, ResponseError::UnknownMemberId));
                    }
                }
                None => member.error_code = ResponseError::UnknownMemberId.code(),
            }
            response.members.push(member);
        }
        if any_left {
            group.prepare_rebalance();
            group.maybe_complete_join();
        } else if version < 3 {
            response.error_code = ResponseError::UnknownMemberId.code();
        }
        response
    }

    /// Drops members whose session expired and finishes rebalances whose time ran out.
    fn reap(&self) {
        let now = Instant::now();
        let mut groups = self.lock();
        for group in groups.values_mut() {
            let expired: Vec<String> = group
                .members
                .iter()
                .filter(|(_, m)| {
                    m.join.is_none() && now.duration_since(m.last_seen) > m.session_timeout
                })
                .map(|(id, _)| id.clone())
                .collect();
            let overdue = group.state == State::PreparingRebalance
                && group.rebalance_deadline.is_some_and(|d| now >= d);
            let missing: Vec<String> = if overdue {
                group
                    .members
                    .iter()
                    .filter(|(_, m)| m.join.is_none())
                    .map(|(id, _)| id.clone())
                    .collect()
            } else {
                Vec::new()
            };
            if expired.is_empty() && missing.is_empty() {
                continue;
            }
            for id in expired.iter().chain(&missing) {
                tracing::info!(member = %id, "group member expired");
                group.members.remove(id);
            }
            group.prepare_rebalance();
            group.maybe_complete_join();
        }
    }

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

    /// ListGroups.
    pub(crate) fn list_groups(&self) -> ListGroupsResponse {
        let mut response = ListGroupsResponse::default();
        for (id, group) in self.lock().iter() {
            let mut listed = ListedGroup::default();
            listed.group_id = GroupId(StrBytes::from_string(id.clone()));
            listed.protocol_type = StrBytes::from_string(
                group
                    .protocol_type
                    .clone()
                    .unwrap_or_else(|| "consumer".to_owned()),
            );
            listed.group_state = StrBytes::from_static_str(group.state.name());
            listed.group_type = StrBytes::from_static_str("classic");
            response.groups.push(listed);
        }
        response
    }

    /// DescribeGroups.
    pub(crate) fn describe_groups(&self, request: DescribeGroupsRequest) -> DescribeGroupsResponse {
        let groups = self.lock();
        let mut response = DescribeGroupsResponse::default();
        for id in request.groups {
            let mut described = DescribedGroup::default();
            described.group_id = id.clone();
            described.authorized_operations = i32::MIN;
            match groups.get(id.0.as_str()) {
                None => described.group_state = StrBytes::from_static_str("Dead"),
                Some(group) => {
                    described.group_state = StrBytes::from_static_str(group.state.name());
                    described.protocol_type =
                        StrBytes::from_string(group.protocol_type.clone().unwrap_or_default());
                    described.protocol_data =
                        StrBytes::from_string(group.protocol.clone().unwrap_or_default());
                    described.members = group
                        .members
                        .iter()
                        .map(|(member_id, m)| {
                            let mut out = DescribedGroupMember::default();
                            out.member_id = StrBytes::from_string(member_id.clone());
                            out.group_instance_id = m.instance_id.clone();
                            out.client_id = StrBytes::from_string(m.client_id.clone());
                            out.client_host = StrBytes::from_string(format!("/{}", m.client_host));
                            out.member_metadata = m
                                .protocols
                                .iter()
                                .find(|(n, _)| Some(n) == group.protocol.as_ref())
                                .map(|(_, meta)| meta.clone())
                                .unwrap_or_default();
                            out.member_assignment = m.assignment.clone();
                            out
                        })
                        .collect();
                }
            }
            response.groups.push(described);
        }
        response
    }
}

/// FindCoordinator: this broker coordinates every group.
pub(crate) fn find_coordinator(
    broker: &Broker,
    request: FindCoordinatorRequest,
    version: i16,
) -> FindCoordinatorResponse {
    let mut response = FindCoordinatorResponse::default();
    let host = StrBytes::from_string(broker.options.advertised_host.clone());
    let node = BrokerId(broker.options.node_id);
    if version >= 4 {
        response.coordinators = request
            .coordinator_keys
            .into_iter()
            .map(|key| {
                let mut c = CoordinatorEntry::default();
                c.key = key;
                c.node_id = node;
                c.host = host.clone();
                c.port = broker.options.advertised_port;
                c
            })
            .collect();
    } else {
        response.node_id = node;
        response.host = host;
        response.port = broker.options.advertised_port;
    }
    response
}

/// Runs the session and rebalance timers until the broker is gone.
pub(crate) async fn reap_expired_members(broker: Weak<Broker>) {
    let mut ticker = tokio::time::interval(REAP_EVERY);
    loop {
        ticker.tick().await;
        let Some(broker) = broker.upgrade() else {
            return;
        };
        broker.groups.reap();
    }
}

/// A short random-looking suffix for member ids.
fn ulid_like() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    format!("{:x}-{:x}", nanos, COUNTER.fetch_add(1, Ordering::Relaxed))
}
