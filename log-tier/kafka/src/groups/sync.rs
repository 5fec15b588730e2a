//! SyncGroup: the leader hands out assignments; every member waits for its own.

use bytes::Bytes;
use kafka_protocol::ResponseError;
use kafka_protocol::messages::{SyncGroupRequest, SyncGroupResponse};
use kafka_protocol::protocol::StrBytes;
use tokio::sync::oneshot;
use tokio::time::Instant;

use super::{Coordinator, Group, MAX_REBALANCE, State};

impl Coordinator {
    /// SyncGroup: the leader hands out assignments; the others wait for theirs.
    pub(crate) async fn sync(&self, request: SyncGroupRequest) -> SyncGroupResponse {
        let member_id = request.member_id.to_string();
        let error = |e: ResponseError| {
            let mut response = SyncGroupResponse::default();
            response.error_code = e.code();
            response
        };
        if let Some(refusal) = self.refusal() {
            return error(refusal);
        }
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
                if let Err(refusal) = store_assignments(group, &request) {
                    return error(refusal);
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
}

/// Stores the leader's assignments, each a copy (a slice would pin the request frame). When
/// one does not fit (a member over its cap, or the coordinator's byte budget full), none is
/// kept: the members waiting for theirs get the error and the group rebalances, as Kafka does
/// when it cannot store a group's assignment; the error is the leader's answer too.
fn store_assignments(group: &mut Group, request: &SyncGroupRequest) -> Result<(), ResponseError> {
    let mut failed = None;
    for a in &request.assignments {
        let id = a.member_id.as_str();
        if let Some(m) = group.members.get_mut(id)
            && let Err(error) = m.set_assignment(id, Bytes::copy_from_slice(&a.assignment))
        {
            failed = Some(error);
            break;
        }
    }
    let Some(error) = failed else {
        return Ok(());
    };
    let limit = "group_bytes";
    ::metrics::counter!(crate::metrics::KAFKA_LIMIT_REFUSALS_TOTAL, "limit" => limit).increment(1);
    tracing::debug!(leader = %request.member_id, limit, "SyncGroup assignments refused by a limit");
    for (id, member) in group.members.iter_mut() {
        // Shrinking always fits the budget.
        let _ = member.set_assignment(id, Bytes::new());
        if let Some(tx) = member.sync.take() {
            let mut response = SyncGroupResponse::default();
            response.error_code = error.code();
            let _ = tx.send(response);
        }
    }
    group.prepare_rebalance();
    Err(error)
}
