//! ListGroups and DescribeGroups: what the coordinator holds, for admin tools.

use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::{
    DescribeGroupsRequest, DescribeGroupsResponse, GroupId, ListGroupsResponse,
};
use kafka_protocol::protocol::StrBytes;

use super::Coordinator;

/// Groups of one DescribeGroups request whose committed offsets are looked up (each lookup
/// scans the offset store); the rest of a request naming more unknown groups are `Dead`.
const OFFSET_LOOKUPS: usize = 100;

impl Coordinator {
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

    /// DescribeGroups: a group the coordinator does not hold is `Empty` when it has committed
    /// offsets (looked up for the first [`OFFSET_LOOKUPS`] such groups of a request), else
    /// `Dead`.
    pub(crate) fn describe_groups(&self, request: DescribeGroupsRequest) -> DescribeGroupsResponse {
        let mut response = DescribeGroupsResponse::default();
        if let Some(refusal) = self.refusal() {
            for id in request.groups {
                let mut described = DescribedGroup::default();
                described.group_id = id;
                described.error_code = refusal.code();
                described.authorized_operations = i32::MIN;
                response.groups.push(described);
            }
            return response;
        }
        let groups = self.lock();
        let mut lookups = 0;
        let mut has_offsets = |id: &str| {
            lookups += 1;
            lookups <= OFFSET_LOOKUPS && !self.engine.committed_offsets(id).is_empty()
        };
        for id in request.groups {
            let mut described = DescribedGroup::default();
            described.group_id = id.clone();
            described.authorized_operations = i32::MIN;
            match groups.get(id.0.as_str()) {
                // Forgotten while empty (or never joined since the start), but with committed
                // offsets: an empty consumer group, as Kafka reports it.
                None if has_offsets(id.0.as_str()) => {
                    described.group_state = StrBytes::from_static_str("Empty");
                    described.protocol_type = StrBytes::from_static_str("consumer");
                }
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
