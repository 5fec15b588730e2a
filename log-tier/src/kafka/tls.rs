//! TLS and mTLS for the Kafka listener (`log.kafka_tls`), loaded with [`crate::tls`] as the
//! gateway loads its own.

use std::sync::Arc;

use crate::config::KafkaTlsConfig;
use crate::error::LogError;
use crate::tls::ClientAuth;

/// Builds the rustls server configuration: the certificate chain and key, and with
/// `client_ca_file` a verifier that requires every client to present a certificate chaining
/// to that CA (Kafka's `ssl.client.auth=required`).
pub fn server_config(config: &KafkaTlsConfig) -> Result<Arc<rustls::ServerConfig>, LogError> {
    let client = match &config.client_ca_file {
        Some(ca) => ClientAuth::Required(ca),
        None => ClientAuth::None,
    };
    crate::tls::server_config(
        config.cert_file.as_deref(),
        config.key_file.as_deref(),
        client,
    )
    .map(Arc::new)
    .map_err(|e| LogError::Tls(e.to_string()))
}
