//! Heartbeat: keeps a member alive and tells it when to rejoin.

use kafka_protocol::ResponseError;
use kafka_protocol::messages::{HeartbeatRequest, HeartbeatResponse};
use tokio::time::Instant;

use super::{Coordinator, State};

impl Coordinator {
    /// Heartbeat: keeps the member alive and tells it when to rejoin.
    pub(crate) fn heartbeat(&self, request: HeartbeatRequest) -> HeartbeatResponse {
        let mut response = HeartbeatResponse::default();
        if let Some(refusal) = self.refusal() {
            response.error_code = refusal.code();
            return response;
        }
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
}
