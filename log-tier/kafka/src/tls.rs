//! TLS and mTLS for the Kafka listener (`log.kafka_tls`), loaded with [`headwater_tls`] as the
//! gateway loads its own.

use std::sync::Arc;

use headwater_log::KafkaTlsConfig;
use headwater_tls::{ClientAuth, TlsError};

/// Builds the rustls server configuration: the certificate chain and key, and with
/// `client_ca_file` a verifier that requires every client to present a certificate chaining
/// to that CA (Kafka's `ssl.client.auth=required`).
pub fn server_config(config: &KafkaTlsConfig) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let client = match &config.client_ca_file {
        Some(ca) => ClientAuth::Required(ca),
        None => ClientAuth::None,
    };
    headwater_tls::server_config(
        config.cert_file.as_deref(),
        config.key_file.as_deref(),
        client,
    )
    .map(Arc::new)
}
