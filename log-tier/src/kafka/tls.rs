//! TLS and mTLS for the Kafka listener: the rustls server configuration from PEM files
//! (`log.kafka_tls`), loaded the way the gateway loads its own.

use std::sync::Arc;

use rustls::RootCertStore;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;

use crate::config::KafkaTlsConfig;
use crate::error::LogError;

fn certificates(path: &str, what: &str) -> Result<Vec<CertificateDer<'static>>, LogError> {
    let pem = |reason: String| LogError::Tls(format!("reading {what} from {path}: {reason}"));
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| pem(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem(e.to_string()))?;
    if certs.is_empty() {
        return Err(pem("no certificate in the file".to_owned()));
    }
    Ok(certs)
}

/// Builds the rustls server configuration: the certificate chain and key, and with
/// `client_ca_file` a verifier that requires every client to present a certificate chaining
/// to that CA (Kafka's `ssl.client.auth=required`).
pub fn server_config(config: &KafkaTlsConfig) -> Result<Arc<rustls::ServerConfig>, LogError> {
    let (Some(cert_file), Some(key_file)) = (&config.cert_file, &config.key_file) else {
        return Err(LogError::Tls(
            "cert_file and key_file are required".to_owned(),
        ));
    };
    let chain = certificates(cert_file, "the certificate chain")?;
    let key = PrivateKeyDer::from_pem_file(key_file)
        .map_err(|e| LogError::Tls(format!("reading the private key from {key_file}: {e}")))?;
    let builder = rustls::ServerConfig::builder();
    let builder = match &config.client_ca_file {
        None => builder.with_no_client_auth(),
        Some(ca_file) => {
            let mut roots = RootCertStore::empty();
            for cert in certificates(ca_file, "the client CA bundle")? {
                roots
                    .add(cert)
                    .map_err(|e| LogError::Tls(format!("client CA {ca_file}: {e}")))?;
            }
            let verifier = WebPkiClientVerifier::builder(Arc::new(roots))
                .build()
                .map_err(|e| LogError::Tls(format!("client CA {ca_file}: {e}")))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let server = builder
        .with_single_cert(chain, key)
        .map_err(|e| LogError::Tls(format!("certificate and key: {e}")))?;
    Ok(Arc::new(server))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_and_empty_files_are_explained() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "").unwrap();
        let config = KafkaTlsConfig {
            cert_file: Some(empty.display().to_string()),
            key_file: Some(dir.path().join("nope.pem").display().to_string()),
            client_ca_file: None,
        };
        let error = server_config(&config).unwrap_err().to_string();
        assert!(error.contains("no certificate"), "{error}");
        let config = KafkaTlsConfig::default();
        assert!(server_config(&config).is_err());
    }
}
