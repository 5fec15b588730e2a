//! TLS and mTLS for the gateway port with rustls: the server configuration from PEM files, and
//! the client certificate's subject common name, which may map to a tenant.

use std::sync::Arc;

use crate::config::TlsConfig;
use headwater_tls::ClientAuth;
pub use headwater_tls::TlsError;

/// The subject common name of a verified client certificate, attached to each request of the
/// connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientCert {
    /// Subject CN, or the whole subject when it has no CN.
    pub subject: String,
}

/// Builds the rustls server configuration (ALPN h2 and http/1.1, so gRPC works over TLS); with
/// `client_ca_file`, client certificates are verified against it and, with
/// `require_client_cert`, demanded.
pub fn server_config(config: &TlsConfig) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let client = match (&config.client_ca_file, config.require_client_cert) {
        (None, _) => ClientAuth::None,
        (Some(ca), true) => ClientAuth::Required(ca),
        (Some(ca), false) => ClientAuth::Optional(ca),
    };
    let mut server = headwater_tls::server_config(
        config.cert_file.as_deref(),
        config.key_file.as_deref(),
        client,
    )?;
    server.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(server))
}

/// The subject CN of the client's (already verified) leaf certificate, if it sent one.
pub fn client_cert(connection: &rustls::ServerConnection) -> Option<ClientCert> {
    headwater_tls::peer_subject(connection).map(|subject| ClientCert { subject })
}
