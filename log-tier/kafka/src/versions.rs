//! The API versions this broker implements: advertised in ApiVersions, enforced per request.

use kafka_protocol::messages::ApiKey;

/// `(api, min, max)` for every API served. Ranges stay within what kafka-protocol 0.18 encodes
/// and below the versions that switch to topic ids (Fetch 13+, DeleteTopics 6+). DescribeAcls
/// starts at v1, as kafka-protocol 0.18 does (v0 knows no pattern types): librdkafka (v1) and
/// the Java client of Kafka 2.0+ (up to v3) use it.
pub const SUPPORTED: &[(ApiKey, i16, i16)] = &[
    (ApiKey::Produce, 3, 9),
    (ApiKey::Fetch, 4, 12),
    (ApiKey::ListOffsets, 1, 7),
    (ApiKey::OffsetForLeaderEpoch, 2, 4),
    (ApiKey::Metadata, 0, 12),
    (ApiKey::OffsetCommit, 2, 8),
    (ApiKey::OffsetFetch, 1, 7),
    (ApiKey::FindCoordinator, 0, 4),
    (ApiKey::JoinGroup, 0, 9),
    (ApiKey::Heartbeat, 0, 4),
    (ApiKey::LeaveGroup, 0, 5),
    (ApiKey::SyncGroup, 0, 5),
    (ApiKey::DescribeGroups, 0, 5),
    (ApiKey::ListGroups, 0, 4),
    (ApiKey::ApiVersions, 0, 3),
    (ApiKey::CreateTopics, 2, 7),
    (ApiKey::DeleteTopics, 1, 5),
    (ApiKey::InitProducerId, 0, 4),
    (ApiKey::DescribeAcls, 1, 3),
];

/// The SASL APIs, served and advertised only when the listener requires SASL. SaslHandshake
/// v1 (v0 sends the token raw) and SaslAuthenticate up to v2 cover librdkafka 2.x
/// (Handshake v1, Authenticate v1), kafka-python and the Java client (Authenticate v2).
pub const SASL: &[(ApiKey, i16, i16)] = &[
    (ApiKey::SaslHandshake, 0, 1),
    (ApiKey::SaslAuthenticate, 0, 2),
];

/// The range of `key` if this broker can serve it at all (SASL APIs included).
pub(crate) fn range(key: ApiKey) -> Option<(i16, i16)> {
    SUPPORTED
        .iter()
        .chain(SASL)
        .find(|(k, _, _)| *k == key)
        .map(|(_, min, max)| (*min, *max))
}

/// Every API advertised: [`SUPPORTED`], plus [`SASL`] when SASL is on.
pub(crate) fn advertised(sasl: bool) -> impl Iterator<Item = &'static (ApiKey, i16, i16)> {
    let sasl_apis: &[(ApiKey, i16, i16)] = if sasl { SASL } else { &[] };
    SUPPORTED.iter().chain(sasl_apis)
}

/// Whether `key` is served on a listener with (`sasl`) or without SASL.
pub(crate) fn offered(key: ApiKey, sasl: bool) -> bool {
    advertised(sasl).any(|(k, _, _)| *k == key)
}
