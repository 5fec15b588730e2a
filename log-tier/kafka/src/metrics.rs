//! Metrics of the Kafka-protocol listener (names and descriptions; one place).

use metrics::describe_counter;

/// Kafka-listener connections closed for failing security (label `stage`: `tls` for a failed
/// handshake, `sasl` for a bad, missing or refused SASL exchange).
pub const KAFKA_AUTH_FAILURES_TOTAL: &str = "headwater_log_kafka_auth_failures_total";

/// Registers descriptions with the installed recorder; call once at start-up.
pub fn describe() {
    describe_counter!(
        KAFKA_AUTH_FAILURES_TOTAL,
        "Kafka connections closed for a failed TLS handshake or SASL exchange"
    );
}
