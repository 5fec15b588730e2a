//! API-key authentication: keys stored as SHA-256 hashes and compared in constant time.

use std::sync::Arc;

use axum::http::HeaderMap;
use axum::http::header::AUTHORIZATION;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::config::{AuthConfig, TlsConfig};
use crate::error::IngestError;
use crate::tls::ClientCert;

/// Tenant of requests when no keys are configured.
pub const DEFAULT_TENANT: &str = "default";

/// Who is calling: the key's tenant and index (for per-key limits).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// Tenant.
    pub tenant: Arc<str>,
    /// Index of the key in the configuration; 0 in open mode.
    pub key_index: usize,
}

struct StoredKey {
    hash: [u8; 32],
    tenant: Arc<str>,
    disabled: bool,
}

/// Checks API keys and client certificates.
pub struct Authenticator {
    keys: Vec<StoredKey>,
    cert_tenants: Vec<(String, Arc<str>)>,
    open: Principal,
}

impl Authenticator {
    /// Builds from configuration; hashes that are not 64 hex digits were refused by
    /// `GatewayConfig::validate`, and are skipped here.
    pub fn new(config: &AuthConfig, tls: &TlsConfig) -> Self {
        let keys = config
            .keys
            .iter()
            .filter_map(|key| {
                let mut hash = [0u8; 32];
                hex::decode_to_slice(&key.sha256, &mut hash).ok()?;
                Some(StoredKey {
                    hash,
                    tenant: Arc::from(key.tenant.as_str()),
                    disabled: key.disabled,
                })
            })
            .collect();
        let cert_tenants = tls
            .client_tenants
            .iter()
            .map(|(subject, tenant)| (subject.clone(), Arc::from(tenant.as_str())))
            .collect();
        Self {
            keys,
            cert_tenants,
            open: Principal {
                tenant: Arc::from(DEFAULT_TENANT),
                key_index: 0,
            },
        }
    }

    /// Whether any key is configured.
    pub fn enabled(&self) -> bool {
        !self.keys.is_empty()
    }

    /// Number of rate-limit slots: one per key and per mapped certificate; at least 1.
    pub fn slots(&self) -> usize {
        (self.keys.len() + self.cert_tenants.len()).max(1)
    }

    /// Tenants of the configured keys (a bounded set, for metric labels).
    pub fn tenants(&self) -> Vec<Arc<str>> {
        let mut tenants: Vec<Arc<str>> = self.keys.iter().map(|k| k.tenant.clone()).collect();
        tenants.extend(self.cert_tenants.iter().map(|(_, t)| t.clone()));
        tenants.push(self.open.tenant.clone());
        tenants.sort();
        tenants.dedup();
        tenants
    }

    /// Authenticates a request: a client certificate mapped to a tenant, else its API key.
    pub fn authenticate(
        &self,
        headers: &HeaderMap,
        cert: Option<&ClientCert>,
    ) -> Result<Principal, IngestError> {
        let mapped = cert.and_then(|c| self.cert_tenants.iter().position(|(s, _)| *s == c.subject));
        if let Some(index) = mapped {
            return Ok(Principal {
                tenant: self.cert_tenants[index].1.clone(),
                key_index: self.keys.len() + index,
            });
        }
        if self.keys.is_empty() {
            return Ok(self.open.clone());
        }
        let presented = presented_key(headers).ok_or(IngestError::MissingKey)?;
        self.check_key(presented.as_bytes())
    }

    /// Authenticates a bare key (gRPC metadata uses the same header names).
    pub fn check_key(&self, key: &[u8]) -> Result<Principal, IngestError> {
        let hash: [u8; 32] = Sha256::digest(key).into();
        // Compare against every key, without an early exit, so timing says nothing about
        // which key or how much of it matched.
        let mut found: Option<usize> = None;
        for (index, stored) in self.keys.iter().enumerate() {
            if bool::from(stored.hash.ct_eq(&hash)) {
                found = Some(index);
            }
        }
        let index = found.ok_or(IngestError::UnknownKey)?;
        let stored = &self.keys[index];
        if stored.disabled {
            return Err(IngestError::KeyDisabled {
                tenant: stored.tenant.to_string(),
            });
        }
        Ok(Principal {
            tenant: stored.tenant.clone(),
            key_index: index,
        })
    }
}

/// SASL/PLAIN for the Kafka listener over the gateway's API keys: the user name is a tenant,
/// the password one of that tenant's (enabled) keys. No keys configured refuses everyone.
pub struct KafkaSasl {
    auth: Authenticator,
}

impl KafkaSasl {
    /// Checks credentials against `config.keys`.
    pub fn new(config: &AuthConfig) -> Self {
        Self {
            auth: Authenticator::new(config, &TlsConfig::default()),
        }
    }
}

impl KafkaSasl {
    /// The tenant when `user` is a tenant and `password` one of its enabled keys; the binary
    /// plugs this into the Kafka listener's SASL authenticator.
    pub fn authenticate(&self, user: &str, password: &str) -> Option<String> {
        // The key is compared in constant time by `check_key`; the tenant name is not secret.
        let principal = self.auth.check_key(password.as_bytes()).ok()?;
        let same = bool::from(principal.tenant.as_bytes().ct_eq(user.as_bytes()));
        same.then(|| principal.tenant.to_string())
    }
}

/// The key from `Authorization: Bearer KEY` or `X-Api-Key: KEY`.
pub fn presented_key(headers: &HeaderMap) -> Option<String> {
    if let Some(value) = headers.get(AUTHORIZATION).and_then(|v| v.to_str().ok()) {
        let value = value.trim();
        if value.len() > 7 && value[..7].eq_ignore_ascii_case("bearer ") {
            return Some(value[7..].trim().to_owned());
        }
    }
    headers
        .get("x-api-key")
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
}

/// Hex SHA-256 of a key, as written in configuration.
pub fn hash_key(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;
    use crate::config::ApiKey;

    fn auth_config() -> AuthConfig {
        AuthConfig {
            keys: vec![
                ApiKey {
                    tenant: "acme".into(),
                    sha256: hash_key("secret-1"),
                    disabled: false,
                },
                ApiKey {
                    tenant: "gone".into(),
                    sha256: hash_key("secret-2"),
                    disabled: true,
                },
            ],
            ..AuthConfig::default()
        }
    }

    fn authenticator() -> Authenticator {
        let tls = TlsConfig {
            client_tenants: [("device-7".to_owned(), "fleet".to_owned())].into(),
            ..TlsConfig::default()
        };
        Authenticator::new(&auth_config(), &tls)
    }

    fn headers(name: &'static str, value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(name, HeaderValue::from_str(value).unwrap());
        headers
    }

    #[test]
    fn bearer_and_x_api_key_both_work() {
        let auth = authenticator();
        let p = auth
            .authenticate(&headers("authorization", "Bearer secret-1"), None)
            .unwrap();
        assert_eq!(&*p.tenant, "acme");
        let p = auth
            .authenticate(&headers("x-api-key", "secret-1"), None)
            .unwrap();
        assert_eq!(p.key_index, 0);
    }

    #[test]
    fn missing_unknown_and_disabled_keys_are_refused() {
        let auth = authenticator();
        assert!(matches!(
            auth.authenticate(&HeaderMap::new(), None),
            Err(IngestError::MissingKey)
        ));
        assert!(matches!(
            auth.authenticate(&headers("x-api-key", "secret-3"), None),
            Err(IngestError::UnknownKey)
        ));
        assert!(matches!(
            auth.authenticate(&headers("authorization", "Bearer secret-2"), None),
            Err(IngestError::KeyDisabled { .. })
        ));
        assert!(matches!(
            auth.authenticate(&headers("authorization", "Basic c2VjcmV0LTE="), None),
            Err(IngestError::MissingKey)
        ));
    }

    #[test]
    fn a_mapped_client_certificate_authenticates_without_a_key() {
        let auth = authenticator();
        let cert = ClientCert {
            subject: "device-7".into(),
        };
        let p = auth.authenticate(&HeaderMap::new(), Some(&cert)).unwrap();
        assert_eq!((&*p.tenant, p.key_index), ("fleet", 2));
        let stranger = ClientCert {
            subject: "someone".into(),
        };
        assert!(matches!(
            auth.authenticate(&HeaderMap::new(), Some(&stranger)),
            Err(IngestError::MissingKey)
        ));
    }

    #[test]
    fn kafka_sasl_accepts_a_tenant_with_its_own_key_only() {
        let sasl = KafkaSasl::new(&auth_config());
        assert_eq!(
            sasl.authenticate("acme", "secret-1").as_deref(),
            Some("acme")
        );
        assert_eq!(
            sasl.authenticate("gone", "secret-1"),
            None,
            "another tenant's key"
        );
        assert_eq!(sasl.authenticate("gone", "secret-2"), None, "disabled key");
        assert_eq!(sasl.authenticate("acme", "nope"), None);
        let open = KafkaSasl::new(&AuthConfig::default());
        assert_eq!(open.authenticate(DEFAULT_TENANT, "anything"), None);
    }

    #[test]
    fn no_keys_means_open_default_tenant() {
        let auth = Authenticator::new(&AuthConfig::default(), &TlsConfig::default());
        assert!(!auth.enabled());
        assert_eq!(
            &*auth.authenticate(&HeaderMap::new(), None).unwrap().tenant,
            DEFAULT_TENANT
        );
    }
}
