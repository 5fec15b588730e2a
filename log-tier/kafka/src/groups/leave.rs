//! LeaveGroup: members leave and the group rebalances without them.

use kafka_protocol::ResponseError;
use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::{LeaveGroupRequest, LeaveGroupResponse};
use kafka_protocol::protocol::StrBytes;

use super::Coordinator;
use super::join::error_join;

impl Coordinator {
    /// LeaveGroup: the members go, and the rest rebalance.
    pub(crate) fn leave(&self, request: LeaveGroupRequest, version: i16) -> LeaveGroupResponse {
        let mut response = LeaveGroupResponse::default();
        if let Some(refusal) = self.refusal() {
            response.error_code = refusal.code();
            return response;
        }
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
}
