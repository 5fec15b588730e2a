//! TLS from PEM files with rustls, shared by the Kafka listener (`log.kafka_tls`), the gateway
//! (`gateway.tls`) and the replication port (`log.cluster.tls`): a server's certificate chain
//! and key, and optionally a client CA whose certificates clients must (or may) present; the
//! subject of a verified client certificate, which the listeners map to a principal; and the
//! client side of mutual TLS (a CA to verify servers by, a certificate to present).

use rustls::RootCertStore;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use std::sync::Arc;

/// Why TLS could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A PEM file could not be read or parsed.
    #[error("reading {what} from {path}: {reason}")]
    Pem {
        /// What the file should hold.
        what: &'static str,
        /// The file.
        path: String,
        /// Why it failed.
        reason: String,
    },
    /// rustls refused the configuration.
    #[error("TLS configuration: {0}")]
    Config(String),
}

/// Whether clients present certificates, checked against a CA bundle (PEM file).
#[derive(Debug, Clone, Copy)]
pub enum ClientAuth<'a> {
    /// No client certificates asked for.
    None,
    /// A certificate is asked for and verified when sent; clients without one are let in.
    Optional(&'a str),
    /// Every client must present a certificate chaining to the CA (`ssl.client.auth=required`).
    Required(&'a str),
}

fn certificates(path: &str, what: &'static str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = |reason: String| TlsError::Pem {
        what,
        path: path.to_owned(),
        reason,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| pem(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem(e.to_string()))?;
    if certs.is_empty() {
        return Err(pem("no certificate in the file".to_owned()));
    }
    Ok(certs)
}

/// Builds a rustls server configuration from PEM files; both files are required.
pub fn server_config(
    cert_file: Option<&str>,
    key_file: Option<&str>,
    client: ClientAuth<'_>,
) -> Result<rustls::ServerConfig, TlsError> {
    let (Some(cert_file), Some(key_file)) = (cert_file, key_file) else {
        return Err(TlsError::Config(
            "cert_file and key_file are required".to_owned(),
        ));
    };
    let chain = certificates(cert_file, "the certificate chain")?;
    let key = private_key(key_file)?;
    let builder = rustls::ServerConfig::builder();
    let builder = match client {
        ClientAuth::None => builder.with_no_client_auth(),
        ClientAuth::Optional(ca_file) | ClientAuth::Required(ca_file) => {
            let refused = |e: String| TlsError::Config(format!("client CA {ca_file}: {e}"));
            let mut roots = RootCertStore::empty();
            for cert in certificates(ca_file, "the client CA bundle")? {
                roots.add(cert).map_err(|e| refused(e.to_string()))?;
            }
            let verifier = WebPkiClientVerifier::builder(Arc::new(roots));
            let verifier = match client {
                ClientAuth::Optional(_) => verifier.allow_unauthenticated(),
                _ => verifier,
            };
            builder.with_client_cert_verifier(verifier.build().map_err(|e| refused(e.to_string()))?)
        }
    };
    builder
        .with_single_cert(chain, key)
        .map_err(|e| TlsError::Config(format!("certificate and key: {e}")))
}

/// Builds a rustls client configuration for mutual TLS: servers are verified against the CA
/// bundle `ca_file` (and the name dialled), and the client presents `cert_file` / `key_file`.
pub fn client_config(
    ca_file: &str,
    cert_file: &str,
    key_file: &str,
) -> Result<rustls::ClientConfig, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in certificates(ca_file, "the CA bundle")? {
        roots
            .add(cert)
            .map_err(|e| TlsError::Config(format!("CA {ca_file}: {e}")))?;
    }
    let chain = certificates(cert_file, "the certificate chain")?;
    let key = private_key(key_file)?;
    rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .map_err(|e| TlsError::Config(format!("certificate and key: {e}")))
}

fn private_key(key_file: &str) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(key_file).map_err(|e| TlsError::Pem {
        what: "the private key",
        path: key_file.to_owned(),
        reason: e.to_string(),
    })
}

/// The subject common name of the client's (already verified) leaf certificate, or the whole
/// subject when it has no common name; `None` when the client sent no certificate.
pub fn peer_subject(connection: &rustls::ServerConnection) -> Option<String> {
    let leaf = connection.peer_certificates()?.first()?;
    let (_, parsed) = x509_parser::parse_x509_certificate(leaf.as_ref()).ok()?;
    let subject = parsed.subject();
    let common_name = subject
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .map(str::to_owned);
    Some(common_name.unwrap_or_else(|| subject.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_and_empty_files_are_explained() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "").unwrap();
        let nope = dir.path().join("nope.pem");
        let error = server_config(
            Some(&empty.display().to_string()),
            Some(&nope.display().to_string()),
            ClientAuth::None,
        )
        .unwrap_err()
        .to_string();
        assert!(error.contains("no certificate"), "{error}");
        let error = server_config(None, None, ClientAuth::None)
            .unwrap_err()
            .to_string();
        assert!(error.contains("required"), "{error}");
    }
}
