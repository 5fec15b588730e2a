//! JoinGroup: a member joins (or rejoins) and waits for the rebalance to complete.

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::ResponseError;
use kafka_protocol::messages::{JoinGroupRequest, JoinGroupResponse};
use kafka_protocol::protocol::StrBytes;
use tokio::sync::oneshot;
use tokio::time::Instant;

use super::budget::{ENTRY_OVERHEAD, MAX_MEMBER_BYTES};
use super::{Coordinator, Group, MAX_REBALANCE, MAX_SESSION_TIMEOUT, Member, Pending, ulid_like};

pub(super) fn error_join(member_id: &str, error: ResponseError) -> JoinGroupResponse {
    let mut response = JoinGroupResponse::default();
    response.error_code = error.code();
    response.generation_id = -1;
    response.member_id = StrBytes::from_string(member_id.to_owned());
    response
}

/// Counts a join refused by a limit and makes its answer.
fn refused(member_id: &str, limit: &'static str, error: ResponseError) -> JoinGroupResponse {
    ::metrics::counter!(crate::metrics::KAFKA_LIMIT_REFUSALS_TOTAL, "limit" => limit).increment(1);
    tracing::debug!(member = %member_id, limit, "JoinGroup refused by a limit");
    error_join(member_id, error)
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
        if let Some(refusal) = self.refusal() {
            return error_join(&member_id, refusal);
        }
        if group_id.is_empty() {
            return error_join(&member_id, ResponseError::InvalidGroupId);
        }
        let session_timeout = Duration::from_millis(request.session_timeout_ms.max(1) as u64);
        if session_timeout > MAX_SESSION_TIMEOUT {
            return refused(
                &member_id,
                "session_timeout",
                ResponseError::InvalidSessionTimeout,
            );
        }
        let took_over = self.took_over();
        let rx = {
            let mut groups = self.lock();
            let new = !groups.contains_key(&group_id);
            let group = match self.group_for_join(&mut groups, &group_id) {
                Ok(group) => group,
                Err((limit, error)) => return refused(&member_id, limit, error),
            };
            if new && let Some(at) = took_over {
                // Every group here was created after the takeover (the reaper unloads them
                // when coordination moves away): wait for the old coordinator's members.
                let hold = at + session_timeout.min(super::TAKEOVER_HOLD_MAX);
                group.hold_until = Some(hold).filter(|h| *h > Instant::now());
            }
            if member_id.is_empty() {
                if group.size() >= self.limits.max_size {
                    return refused(
                        &member_id,
                        "group_max_size",
                        ResponseError::GroupMaxSizeReached,
                    );
                }
                member_id = format!("{client_id}-{}", ulid_like());
                if version >= 4 {
                    let Some(charge) = self.budget.charge(ENTRY_OVERHEAD + member_id.len()) else {
                        return refused(
                            &member_id,
                            "group_bytes",
                            ResponseError::CoordinatorNotAvailable,
                        );
                    };
                    let pending = Pending {
                        expires: Instant::now() + session_timeout,
                        _charge: charge,
                    };
                    group.pending.insert(member_id.clone(), pending);
                    return error_join(&member_id, ResponseError::MemberIdRequired);
                }
            } else if !group.members.contains_key(&member_id)
                && !group.pending.contains_key(&member_id)
            {
                return error_join(&member_id, ResponseError::UnknownMemberId);
            }
            let protocol_type = request.protocol_type.to_string();
            if !group.members.is_empty()
                && group.protocol_type.as_deref() != Some(protocol_type.as_str())
            {
                return error_join(&member_id, ResponseError::InconsistentGroupProtocol);
            }
            let (tx, rx) = oneshot::channel();
            let member =
                match self.member(&request, &member_id, client_id, client_host, tx, version) {
                    Ok(member) => member,
                    Err((limit, error)) => return refused(&member_id, limit, error),
                };
            group.pending.remove(&member_id);
            group.protocol_type = Some(protocol_type);
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

    /// The group `id`, created when new if `Limits::max_groups` (after forgetting a vacant
    /// group, if one must go) and the byte budget allow.
    fn group_for_join<'g>(
        &self,
        groups: &'g mut HashMap<String, Group>,
        id: &str,
    ) -> Result<&'g mut Group, (&'static str, ResponseError)> {
        if !groups.contains_key(id) && groups.len() >= self.limits.max_groups {
            let vacant = groups
                .iter()
                .filter(|(_, g)| g.is_vacant())
                .min_by_key(|(_, g)| g.empty_since.unwrap_or_else(Instant::now))
                .map(|(id, _)| id.clone());
            match vacant {
                Some(vacant) => {
                    tracing::debug!(group = %vacant, "empty group forgotten for a new one");
                    groups.remove(&vacant);
                }
                None => return Err(("max_groups", ResponseError::CoordinatorNotAvailable)),
            }
        }
        match groups.entry(id.to_owned()) {
            std::collections::hash_map::Entry::Occupied(entry) => Ok(entry.into_mut()),
            std::collections::hash_map::Entry::Vacant(entry) => {
                let charge = self
                    .budget
                    .charge(ENTRY_OVERHEAD + id.len())
                    .ok_or(("group_bytes", ResponseError::CoordinatorNotAvailable))?;
                Ok(entry.insert(Group::new(charge)))
            }
        }
    }

    /// The member `request` describes, charged to the byte budget: more than
    /// [`MAX_MEMBER_BYTES`] is refused for good (UNKNOWN_SERVER_ERROR, as Kafka answers group
    /// metadata too large to store), a full budget for now (COORDINATOR_NOT_AVAILABLE).
    fn member(
        &self,
        request: &JoinGroupRequest,
        member_id: &str,
        client_id: &str,
        client_host: &str,
        tx: oneshot::Sender<JoinGroupResponse>,
        version: i16,
    ) -> Result<Member, (&'static str, ResponseError)> {
        let Some(charge) = self.budget.charge(0) else {
            return Err(("group_bytes", ResponseError::CoordinatorNotAvailable));
        };
        let mut member = Member {
            client_id: client_id.to_owned(),
            client_host: client_host.to_owned(),
            // Copies, not slices: a slice would pin the whole request frame for as long as
            // the member stays.
            instance_id: request
                .group_instance_id
                .as_ref()
                .map(|i| StrBytes::from_string(i.to_string())),
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
                .map(|p| (p.name.to_string(), Bytes::copy_from_slice(&p.metadata)))
                .collect(),
            assignment: Bytes::new(),
            last_seen: Instant::now(),
            join: Some((tx, version)),
            sync: None,
            charge,
        };
        let bytes = member.stored_bytes(member_id, &Bytes::new());
        if bytes > MAX_MEMBER_BYTES {
            return Err(("group_bytes", ResponseError::UnknownServerError));
        }
        if !member.charge.resize(bytes) {
            return Err(("group_bytes", ResponseError::CoordinatorNotAvailable));
        }
        Ok(member)
    }
}
