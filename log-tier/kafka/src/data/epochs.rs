//! OffsetForLeaderEpoch (KIP-101/279/320): the end offset of a leader epoch, so a consumer can
//! tell whether the offsets it read were truncated by a leader change. Answered by a replicated
//! partition's leader from its leader-epoch cache; a single node has one epoch, 0.

use kafka_protocol::ResponseError;
use kafka_protocol::messages::offset_for_leader_epoch_response::{
    EpochEndOffset, OffsetForLeaderTopicResult,
};
use kafka_protocol::messages::{OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse};

use crate::principal::Principal;
use crate::{Broker, authorize};
use headwater_log::security::Operation;

/// The end of epoch `requested` in `epochs` (`(epoch, first offset)`, increasing) of a log
/// ending at `log_end`: the largest epoch at or below it, and where the next one starts (the
/// log end for the latest); `(-1, -1)` when the log holds no epoch at or below it.
pub(crate) fn end_of_epoch(epochs: &[(i32, i64)], log_end: i64, requested: i32) -> (i32, i64) {
    let at = epochs.partition_point(|&(e, _)| e <= requested);
    if at == 0 {
        return (-1, -1);
    }
    let epoch = epochs[at - 1].0;
    let end = epochs.get(at).map_or(log_end, |&(_, start)| start);
    (epoch, end)
}

/// OffsetForLeaderEpoch: each partition's end offset of the requested epoch, checked as Fetch
/// is (the leader only, the client's current epoch).
pub(crate) fn offset_for_leader_epoch(
    broker: &Broker,
    principal: &Principal,
    request: OffsetForLeaderEpochRequest,
) -> OffsetForLeaderEpochResponse {
    let mut response = OffsetForLeaderEpochResponse::default();
    for topic in request.topics {
        let name = topic.topic.0.to_string();
        let allowed = authorize::topic(broker, principal, &name, Operation::Describe);
        let mut out = OffsetForLeaderTopicResult::default();
        out.topic = topic.topic.clone();
        for p in topic.partitions {
            let mut answer = EpochEndOffset::default();
            answer.partition = p.partition;
            answer.leader_epoch = -1;
            answer.end_offset = -1;
            if !allowed {
                answer.error_code = authorize::TOPIC_DENIED;
            } else if let Some(code) =
                super::fetch::refusal(broker, &name, p.partition, p.current_leader_epoch)
            {
                answer.error_code = code;
            } else {
                let epochs = broker
                    .options
                    .cluster
                    .as_ref()
                    .and_then(|c| c.leader_epochs(&name, p.partition));
                match epochs {
                    Some((epochs, log_end)) => {
                        (answer.leader_epoch, answer.end_offset) =
                            end_of_epoch(&epochs, log_end, p.leader_epoch);
                    }
                    None => match broker.engine.partition_offsets(&name, p.partition) {
                        // One node, one epoch (0) that has always been.
                        Ok(o) => {
                            (answer.leader_epoch, answer.end_offset) =
                                end_of_epoch(&[(0, 0)], o.high_watermark, p.leader_epoch);
                        }
                        Err(_) => {
                            answer.error_code = ResponseError::UnknownTopicOrPartition.code();
                        }
                    },
                }
            }
            out.partitions.push(answer);
        }
        response.topics.push(out);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::end_of_epoch;

    #[test]
    fn the_end_of_an_epoch_is_where_the_next_begins() {
        let epochs = [(1, 0), (3, 40), (4, 90)];
        assert_eq!(end_of_epoch(&epochs, 120, 1), (1, 40));
        assert_eq!(
            end_of_epoch(&epochs, 120, 2),
            (1, 40),
            "epoch 2 never led: 1's end"
        );
        assert_eq!(end_of_epoch(&epochs, 120, 3), (3, 90));
        assert_eq!(
            end_of_epoch(&epochs, 120, 4),
            (4, 120),
            "the latest ends at the log end"
        );
        assert_eq!(end_of_epoch(&epochs, 120, 9), (4, 120));
        assert_eq!(
            end_of_epoch(&epochs, 120, 0),
            (-1, -1),
            "before the first epoch"
        );
        assert_eq!(end_of_epoch(&[], 0, 3), (-1, -1));
    }
}
