//! A private PKI for TLS tests: a CA, a server certificate for `127.0.0.1` and `localhost`, and
//! client certificates with a common name, written as PEM files into a directory (a tempdir).

use std::path::{Path, PathBuf};

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};

/// Why the PKI could not be made.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    /// rcgen refused to make a key or a certificate.
    #[error("making {what}: {source}")]
    Certificate {
        /// Which key or certificate.
        what: &'static str,
        /// rcgen's error.
        #[source]
        source: rcgen::Error,
    },
    /// A PEM file could not be written.
    #[error("writing {path}: {source}")]
    Write {
        /// The file.
        path: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

/// A client certificate signed by the [`Pki`]'s CA.
#[derive(Debug, Clone)]
pub struct ClientCert {
    /// The certificate, PEM.
    pub cert_pem: String,
    /// Its private key, PEM (PKCS#8).
    pub key_pem: String,
    /// Where the certificate was written.
    pub cert_file: PathBuf,
    /// Where the key was written.
    pub key_file: PathBuf,
}

impl ClientCert {
    /// Certificate and key in one PEM, as `reqwest::Identity::from_pem` takes them.
    pub fn identity_pem(&self) -> String {
        format!("{}{}", self.cert_pem, self.key_pem)
    }
}

/// A CA with a server certificate and one client certificate, in `dir`:
/// `ca.pem`, `server.pem` + `server.key` (for `127.0.0.1` and `localhost`), and
/// `client.pem` + `client.key`. More clients come from [`Pki::client`].
pub struct Pki {
    /// The directory holding the files.
    pub dir: PathBuf,
    /// The CA certificate, PEM.
    pub ca_pem: String,
    /// The server certificate, PEM.
    pub server_pem: String,
    /// The server's private key, PEM (PKCS#8).
    pub server_key_pem: String,
    /// The server certificate, DER (for a rustls `ServerConfig` built in the test).
    pub server_der: Vec<u8>,
    /// The server's private key, PKCS#8 DER.
    pub server_key_der: Vec<u8>,
    /// The client certificate written as `client.pem` and `client.key`.
    pub client: ClientCert,
    ca: CertifiedIssuer<'static, KeyPair>,
}

impl Pki {
    /// Makes the CA, the server certificate and a client certificate with common name
    /// `client_cn`, and writes them into `dir` (which must exist).
    pub fn generate(dir: &Path, client_cn: &str) -> Result<Self, PkiError> {
        let cert = |what| move |source| PkiError::Certificate { what, source };
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(cert("CA"))?;
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "headwater test CA");
        let ca_key = KeyPair::generate().map_err(cert("CA key"))?;
        let ca = CertifiedIssuer::self_signed(ca_params, ca_key).map_err(cert("CA"))?;
        let server_key = KeyPair::generate().map_err(cert("server key"))?;
        let server = CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
            .and_then(|params| params.signed_by(&server_key, &ca))
            .map_err(cert("server certificate"))?;
        write(&dir.join("ca.pem"), &ca.pem())?;
        write(&dir.join("server.pem"), &server.pem())?;
        write(&dir.join("server.key"), &server_key.serialize_pem())?;
        let client = issue(&ca, dir, client_cn, "client")?;
        Ok(Self {
            dir: dir.to_owned(),
            ca_pem: ca.pem(),
            server_pem: server.pem(),
            server_key_pem: server_key.serialize_pem(),
            server_der: server.der().to_vec(),
            server_key_der: server_key.serialize_der(),
            client,
            ca,
        })
    }

    /// Another client certificate, with common name `cn`, written as `{name}.pem` and
    /// `{name}.key`.
    pub fn client(&self, cn: &str, name: &str) -> Result<ClientCert, PkiError> {
        issue(&self.ca, &self.dir, cn, name)
    }

    /// The path of one of the files, e.g. `file("ca.pem")`.
    pub fn file(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

/// A client certificate with common name `cn` signed by `ca`, written as `{name}.pem` and
/// `{name}.key` into `dir`.
fn issue(
    ca: &CertifiedIssuer<'static, KeyPair>,
    dir: &Path,
    cn: &str,
    name: &str,
) -> Result<ClientCert, PkiError> {
    let cert = |what| move |source| PkiError::Certificate { what, source };
    let mut params = CertificateParams::new(Vec::<String>::new()).map_err(cert("client"))?;
    params.distinguished_name.push(DnType::CommonName, cn);
    let key = KeyPair::generate().map_err(cert("client key"))?;
    let signed = params
        .signed_by(&key, ca)
        .map_err(cert("client certificate"))?;
    let client = ClientCert {
        cert_pem: signed.pem(),
        key_pem: key.serialize_pem(),
        cert_file: dir.join(format!("{name}.pem")),
        key_file: dir.join(format!("{name}.key")),
    };
    write(&client.cert_file, &client.cert_pem)?;
    write(&client.key_file, &client.key_pem)?;
    Ok(client)
}

fn write(path: &Path, pem: &str) -> Result<(), PkiError> {
    std::fs::write(path, pem).map_err(|source| PkiError::Write {
        path: path.display().to_string(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_the_ca_server_and_client_files() {
        let dir = tempfile::tempdir().unwrap();
        let pki = Pki::generate(dir.path(), "device-7").unwrap();
        for name in [
            "ca.pem",
            "server.pem",
            "server.key",
            "client.pem",
            "client.key",
        ] {
            let text = std::fs::read_to_string(pki.file(name)).unwrap();
            assert!(text.starts_with("-----BEGIN "), "{name}: {text}");
        }
        assert_eq!(
            std::fs::read_to_string(pki.file("ca.pem")).unwrap(),
            pki.ca_pem
        );
        let other = pki.client("device-8", "device-8").unwrap();
        assert_eq!(other.cert_file, dir.path().join("device-8.pem"));
        assert!(other.identity_pem().contains("PRIVATE KEY"));
        assert_ne!(other.cert_pem, pki.client.cert_pem);
    }
}
