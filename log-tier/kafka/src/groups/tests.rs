//! The coordinator's bounds on time that tests move (tokio's paused clock): pending member ids
//! expire, empty groups are forgotten, and groups, members and stored bytes are capped.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::ResponseError;
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::{GroupId, JoinGroupRequest, SyncGroupRequest};
use kafka_protocol::protocol::StrBytes;

use super::budget::MAX_MEMBER_BYTES;
use super::{Coordinator, EMPTY_GROUP_RETENTION, GroupLimits, State};
use headwater_log::{LogConfig, LogEngine};

const SESSION: Duration = Duration::from_secs(10);

fn coordinator(limits: GroupLimits) -> (Coordinator, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let engine: Arc<LogEngine> = LogEngine::open(dir.path(), LogConfig::default()).unwrap();
    (Coordinator::new(engine, limits), dir)
}

fn limits(max_groups: usize, max_size: usize) -> GroupLimits {
    GroupLimits {
        max_groups,
        max_size,
        max_bytes: 1 << 30,
    }
}

pub(super) fn join_request(group: &str, member: &str, metadata: usize) -> JoinGroupRequest {
    JoinGroupRequest::default()
        .with_group_id(GroupId(StrBytes::from_string(group.to_owned())))
        .with_member_id(StrBytes::from_string(member.to_owned()))
        .with_session_timeout_ms(SESSION.as_millis() as i32)
        .with_rebalance_timeout_ms(SESSION.as_millis() as i32)
        .with_protocol_type(StrBytes::from_static_str("consumer"))
        .with_protocols(vec![
            JoinGroupRequestProtocol::default()
                .with_name(StrBytes::from_static_str("range"))
                .with_metadata(Bytes::from(vec![7u8; metadata])),
        ])
}

/// A JoinGroup v4 without a member id: the group gets a pending id (MEMBER_ID_REQUIRED).
async fn ask_member_id(coordinator: &Coordinator, group: &str) -> (i16, String) {
    let answer = coordinator
        .join(join_request(group, "", 10), 4, "client", "127.0.0.1")
        .await;
    (answer.error_code, answer.member_id.to_string())
}

fn group_names(coordinator: &Coordinator) -> Vec<String> {
    let mut names: Vec<String> = coordinator
        .list_groups()
        .groups
        .into_iter()
        .map(|g| g.group_id.0.to_string())
        .collect();
    names.sort();
    names
}

#[tokio::test(start_paused = true)]
async fn pending_member_ids_expire_and_empty_groups_are_forgotten() {
    let (coordinator, _dir) = coordinator(limits(10, 10));
    let (code, id) = ask_member_id(&coordinator, "g").await;
    assert_eq!(code, ResponseError::MemberIdRequired.code());

    // Not used within its session timeout: gone.
    tokio::time::advance(SESSION + Duration::from_millis(1)).await;
    coordinator.reap();
    let late = coordinator
        .join(join_request("g", &id, 10), 4, "client", "127.0.0.1")
        .await;
    assert_eq!(late.error_code, ResponseError::UnknownMemberId.code());

    // The group is vacant: kept for EMPTY_GROUP_RETENTION, then forgotten with its bytes.
    assert_eq!(group_names(&coordinator), ["g"]);
    tokio::time::advance(EMPTY_GROUP_RETENTION - Duration::from_millis(1)).await;
    coordinator.reap();
    assert_eq!(group_names(&coordinator), ["g"]);
    tokio::time::advance(Duration::from_millis(1)).await;
    coordinator.reap();
    assert!(group_names(&coordinator).is_empty());
    assert_eq!(coordinator.budget.used(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_pending_member_id_used_in_time_joins() {
    let (coordinator, _dir) = coordinator(limits(10, 10));
    let (_, id) = ask_member_id(&coordinator, "g").await;
    tokio::time::advance(SESSION - Duration::from_millis(1)).await;
    coordinator.reap();
    let joined = coordinator
        .join(join_request("g", &id, 10), 4, "client", "127.0.0.1")
        .await;
    assert_eq!(joined.error_code, 0);
    assert_eq!(
        (joined.generation_id, joined.leader.as_str()),
        (1, id.as_str())
    );
}

#[tokio::test(start_paused = true)]
async fn groups_are_capped_and_vacant_ones_make_room() {
    let (coordinator, _dir) = coordinator(limits(2, 10));
    assert_eq!(
        ask_member_id(&coordinator, "g1").await.0,
        ResponseError::MemberIdRequired.code()
    );
    assert_eq!(
        ask_member_id(&coordinator, "g2").await.0,
        ResponseError::MemberIdRequired.code()
    );
    // Both groups hold a pending member: no room for a third, which may retry later.
    let (code, _) = ask_member_id(&coordinator, "g3").await;
    assert_eq!(code, ResponseError::CoordinatorNotAvailable.code());

    // Once their pending ids expired, a vacant group makes room for the new one.
    tokio::time::advance(SESSION + Duration::from_millis(1)).await;
    coordinator.reap();
    assert_eq!(
        ask_member_id(&coordinator, "g3").await.0,
        ResponseError::MemberIdRequired.code()
    );
    assert_eq!(group_names(&coordinator).len(), 2);
    assert!(group_names(&coordinator).contains(&"g3".to_owned()));
}

#[tokio::test(start_paused = true)]
async fn members_and_pending_ids_count_toward_the_group_max_size() {
    let (coordinator, _dir) = coordinator(limits(10, 2));
    for _ in 0..2 {
        assert_eq!(
            ask_member_id(&coordinator, "g").await.0,
            ResponseError::MemberIdRequired.code()
        );
    }
    let (code, _) = ask_member_id(&coordinator, "g").await;
    assert_eq!(code, ResponseError::GroupMaxSizeReached.code());
    // An old client (JoinGroup v3, no pending ids) is refused the same way.
    let old = coordinator
        .join(join_request("g", "", 10), 3, "client", "127.0.0.1")
        .await;
    assert_eq!(old.error_code, ResponseError::GroupMaxSizeReached.code());
}

#[tokio::test(start_paused = true)]
async fn a_session_timeout_over_thirty_minutes_is_refused() {
    let (coordinator, _dir) = coordinator(limits(10, 10));
    let request = join_request("g", "", 10).with_session_timeout_ms(i32::MAX);
    let answer = coordinator.join(request, 4, "client", "127.0.0.1").await;
    assert_eq!(
        answer.error_code,
        ResponseError::InvalidSessionTimeout.code()
    );
}

#[tokio::test(start_paused = true)]
async fn stored_bytes_are_bounded_per_member_and_in_all() {
    let (coordinator, _dir) = coordinator(limits(10, 10));
    let huge = coordinator
        .join(
            join_request("g", "", MAX_MEMBER_BYTES + 1),
            0,
            "client",
            "127.0.0.1",
        )
        .await;
    assert_eq!(huge.error_code, ResponseError::UnknownServerError.code());

    let small = GroupLimits {
        max_bytes: 16 * 1024,
        ..limits(10, 10)
    };
    let (coordinator, _dir) = self::coordinator(small);
    let first = coordinator
        .join(join_request("g", "", 8 * 1024), 0, "client", "127.0.0.1")
        .await;
    assert_eq!(first.error_code, 0);
    // A second member of the same size does not fit: try again later.
    let second = coordinator
        .join(join_request("h", "", 8 * 1024), 0, "client", "127.0.0.1")
        .await;
    assert_eq!(
        second.error_code,
        ResponseError::CoordinatorNotAvailable.code()
    );
    // The leader's assignment past the budget is refused and the group rebalances.
    let sync = SyncGroupRequest::default()
        .with_group_id(GroupId(StrBytes::from_static_str("g")))
        .with_generation_id(first.generation_id)
        .with_member_id(first.member_id.clone())
        .with_assignments(vec![
            SyncGroupRequestAssignment::default()
                .with_member_id(first.member_id.clone())
                .with_assignment(Bytes::from(vec![1u8; 16 * 1024])),
        ]);
    let refused = coordinator.sync(sync).await;
    assert_eq!(
        refused.error_code,
        ResponseError::CoordinatorNotAvailable.code()
    );
    let state = coordinator.lock().get("g").map(|g| g.state);
    assert_eq!(state, Some(State::PreparingRebalance));
}

#[tokio::test]
async fn a_forgotten_group_with_committed_offsets_is_described_empty() {
    let (coordinator, _dir) = coordinator(limits(10, 10));
    coordinator.engine.create_topic_now("t", 1).unwrap();
    coordinator
        .engine
        .commit_offset("kept", "t", 0, 5)
        .await
        .unwrap();
    let request = kafka_protocol::messages::DescribeGroupsRequest::default().with_groups(vec![
        GroupId(StrBytes::from_static_str("kept")),
        GroupId(StrBytes::from_static_str("never")),
    ]);
    let states: Vec<String> = coordinator
        .describe_groups(request)
        .groups
        .iter()
        .map(|g| g.group_state.to_string())
        .collect();
    assert_eq!(states, ["Empty", "Dead"]);
}
