//! FindCoordinator: this broker coordinates every group, or, in a cluster that replicates
//! offsets, the leader of the offsets partition does (COORDINATOR_NOT_AVAILABLE while there is
//! none).

use kafka_protocol::ResponseError;
use kafka_protocol::messages::find_coordinator_response::Coordinator as CoordinatorEntry;
use kafka_protocol::messages::{BrokerId, FindCoordinatorRequest, FindCoordinatorResponse};
use kafka_protocol::protocol::StrBytes;

use crate::Broker;
use crate::cluster::GroupCoordinator;

/// Where clients find the coordinator of every group, or why they cannot now.
fn coordinator(broker: &Broker) -> Result<(i32, String, i32), ResponseError> {
    let here = || {
        (
            broker.options.node_id,
            broker.options.advertised_host.clone(),
            broker.options.advertised_port,
        )
    };
    let Some(cluster) = &broker.options.cluster else {
        return Ok(here());
    };
    let id = match cluster.group_coordinator() {
        GroupCoordinator::Local => return Ok(here()),
        GroupCoordinator::Here | GroupCoordinator::Loading => broker.options.node_id,
        GroupCoordinator::Elsewhere(id) => id,
        GroupCoordinator::Unknown => return Err(ResponseError::CoordinatorNotAvailable),
    };
    cluster
        .brokers()
        .into_iter()
        .find(|b| b.node_id == id)
        .map(|b| (b.node_id, b.host, b.port))
        .ok_or(ResponseError::CoordinatorNotAvailable)
}

/// FindCoordinator (v0–v4, v4 answering each key of the batch).
pub(crate) fn find_coordinator(
    broker: &Broker,
    request: FindCoordinatorRequest,
    version: i16,
) -> FindCoordinatorResponse {
    let mut response = FindCoordinatorResponse::default();
    let found = coordinator(broker);
    let (node, host, port, error) = match found {
        Ok((id, host, port)) => (BrokerId(id), StrBytes::from_string(host), port, 0),
        Err(e) => (BrokerId(-1), StrBytes::from_static_str(""), -1, e.code()),
    };
    if version >= 4 {
        response.coordinators = request
            .coordinator_keys
            .into_iter()
            .map(|key| {
                let mut c = CoordinatorEntry::default();
                c.key = key;
                c.node_id = node;
                c.host = host.clone();
                c.port = port;
                c.error_code = error;
                c
            })
            .collect();
    } else {
        response.node_id = node;
        response.host = host;
        response.port = port;
        response.error_code = error;
    }
    response
}
