//! Metrics of the Kafka-protocol listener (names and descriptions; one place).

use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};

/// Kafka-listener connections closed for failing security (label `stage`: `tls` for a failed
/// handshake, `sasl` for a bad, missing or refused SASL exchange).
pub const KAFKA_AUTH_FAILURES_TOTAL: &str = "headwater_log_kafka_auth_failures_total";

/// Kafka requests (or parts of them) refused by an ACL (label `resource`: `topic`, `group`,
/// `cluster`, `producer_id`).
pub const KAFKA_DENIED_TOTAL: &str = "headwater_log_kafka_denied_total";

/// Batches a tenant produced that the broker refused (label `reason`: `foreign_tenant`,
/// `invalid`, `batch`).
pub const KAFKA_REFUSED_BATCHES_TOTAL: &str = "headwater_log_kafka_refused_batches_total";

/// Kafka-listener connections open now.
pub const KAFKA_CONNECTIONS: &str = "headwater_log_kafka_connections";

/// Kafka-listener connections closed on accept (label `reason`: `max_connections`,
/// `max_connections_per_ip`).
pub const KAFKA_CONNECTIONS_REFUSED_TOTAL: &str = "headwater_log_kafka_connections_refused_total";

/// Kafka-listener connections closed after `log.kafka_idle_timeout_ms` without a request.
pub const KAFKA_IDLE_CLOSED_TOTAL: &str = "headwater_log_kafka_idle_connections_closed_total";

/// Kafka requests (or parts of them) refused by a limit (label `limit`: `max_topics`,
/// `max_partitions_per_topic`, `max_groups`, `group_max_size`, `group_bytes`,
/// `session_timeout`).
pub const KAFKA_LIMIT_REFUSALS_TOTAL: &str = "headwater_log_kafka_limit_refusals_total";

/// Produce requests written to the log and not yet answered, over all connections: each waits
/// for durability while its connection reads on (at most `MAX_PRODUCES_IN_FLIGHT` per
/// connection).
pub const KAFKA_INFLIGHT_PRODUCES: &str = "headwater_log_kafka_inflight_produces";

/// Produce requests answered: seconds from the request read to its response written, the wait
/// for durability (the fsync under `every_append`) and the Produces queued ahead on the same
/// connection included. acks=0 Produces, which get no response, count until they are durable.
pub const KAFKA_PRODUCE_SECONDS: &str = "headwater_log_kafka_produce_seconds";

/// Registers descriptions with the installed recorder; call once at start-up.
pub fn describe() {
    describe_counter!(
        KAFKA_AUTH_FAILURES_TOTAL,
        "Kafka connections closed for a failed TLS handshake or SASL exchange"
    );
    describe_counter!(
        KAFKA_DENIED_TOTAL,
        "Kafka requests or parts of requests refused by an ACL"
    );
    describe_counter!(
        KAFKA_REFUSED_BATCHES_TOTAL,
        "Batches produced by tenants over the Kafka port that the broker refused"
    );
    describe_gauge!(KAFKA_CONNECTIONS, "Kafka-listener connections open");
    describe_counter!(
        KAFKA_CONNECTIONS_REFUSED_TOTAL,
        "Kafka connections closed on accept: over the total or the per-IP limit"
    );
    describe_counter!(
        KAFKA_IDLE_CLOSED_TOTAL,
        "Kafka connections closed for sending no request within the idle timeout"
    );
    describe_gauge!(
        KAFKA_INFLIGHT_PRODUCES,
        "Kafka Produce requests written to the log and waiting for durability before their answer"
    );
    describe_histogram!(
        KAFKA_PRODUCE_SECONDS,
        Unit::Seconds,
        "Kafka Produce requests: time from the request read to its response written"
    );
    describe_counter!(
        KAFKA_LIMIT_REFUSALS_TOTAL,
        "Kafka requests or parts of requests refused by a topic, partition or group limit"
    );
}
