//! JoinGroup: a member joins (or rejoins) and waits for the rebalance to complete.

use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::ResponseError;
use kafka_protocol::messages::{JoinGroupRequest, JoinGroupResponse};
use kafka_protocol::protocol::StrBytes;
use tokio::sync::oneshot;

use super::{Coordinator, Group, MAX_REBALANCE, Member, ulid_like};

pub(super) fn error_join(member_id: &str, error: ResponseError) -> JoinGroupResponse {
    let mut response = JoinGroupResponse::default();
    response.error_code = error.code();
    response.generation_id = -1;
    response.member_id = StrBytes::from_string(member_id.to_owned());
    response
}

impl Coordinator {
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
}
