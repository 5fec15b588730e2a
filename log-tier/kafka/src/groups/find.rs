//! FindCoordinator: this broker coordinates every group.

use kafka_protocol::messages::find_coordinator_response::Coordinator as CoordinatorEntry;
use kafka_protocol::messages::{BrokerId, FindCoordinatorRequest, FindCoordinatorResponse};
use kafka_protocol::protocol::StrBytes;

use crate::Broker;

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
