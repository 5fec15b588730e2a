//! The Kafka listener's security from configuration: who may connect (SASL PLAIN/SCRAM over
//! `gateway.auth.keys` and `log.principals`, client certificates over
//! `log.kafka_tls.client_principals`), what each principal may do (`log.acls` on top of the
//! built-in rules of its role), and the schema registry checking what tenants produce. The
//! glue between the gateway (keys, schemas) and the Kafka crate, which do not know each other.
//!
//! Refused at start, like the gateway's HTTP port: a non-loopback Kafka listener that
//! authenticates no one, and PLAIN passwords in clear over a non-loopback plaintext listener
//! (unless `log.kafka_sasl.allow_plaintext_plain`).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{Context, bail};
use headwater_gateway::SchemaRegistry;
use headwater_gateway::auth::KafkaSasl;
use headwater_kafka::acl::{Authorizer, AuthorizerOptions};
use headwater_kafka::scram::{self, StoredCredential};
use headwater_kafka::{CredentialStore, Mechanism, Principal, ProducePolicy, Role, SaslOptions};
use headwater_log::{PrincipalRole, Record};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::config::Config;

/// What the listener needs beyond its address.
pub(crate) struct KafkaSecurity {
    /// SASL, when `log.kafka_sasl.enabled`.
    pub(crate) sasl: Option<SaslOptions>,
    /// Mapped client certificate subjects.
    pub(crate) client_principals: BTreeMap<String, Principal>,
    /// ACLs.
    pub(crate) authorizer: Arc<Authorizer>,
    /// The schema registry checking tenants' records.
    pub(crate) policy: Option<Arc<dyn ProducePolicy>>,
}

/// Whether the listener authenticates clients (so ACLs are enforced and schemas needed).
pub(crate) fn authenticates(config: &Config) -> bool {
    config.log.kafka_sasl.enabled || !config.log.kafka_tls.client_principals.is_empty()
}

/// Builds the listener's security for a listener bound to `bound`, refusing unsafe exposure.
/// `schemas` is required when the listener authenticates clients.
pub(crate) fn build(
    config: &Config,
    bound: SocketAddr,
    schemas: Option<Arc<SchemaRegistry>>,
) -> anyhow::Result<KafkaSecurity> {
    let log = &config.log;
    let loopback = bound.ip().is_loopback();
    let authenticated = authenticates(config);
    if !loopback && !authenticated {
        bail!(
            "log.kafka_listen {bound} is not a loopback address and the Kafka port \
             authenticates no one: anyone who reaches it could read, write and delete topics. \
             Turn on log.kafka_sasl.enabled (SCRAM or PLAIN), or map client certificates with \
             log.kafka_tls.client_principals, or listen on 127.0.0.1"
        );
    }
    if !authenticated && !config.gateway.auth.keys.is_empty() {
        tracing::warn!(
            kafka = %bound,
            "the Kafka port authenticates no one: any local process can produce events as any \
             tenant and read every topic; set log.kafka_sasl.enabled on a multi-tenant site"
        );
    }
    let mechanisms: Vec<Mechanism> = log
        .kafka_sasl
        .mechanisms
        .iter()
        .filter_map(|name| Mechanism::from_name(name))
        .collect();
    if log.kafka_sasl.enabled
        && mechanisms.contains(&Mechanism::Plain)
        && !loopback
        && !log.kafka_tls.enabled()
        && !log.kafka_sasl.allow_plaintext_plain
    {
        bail!(
            "log.kafka_sasl offers PLAIN on {bound}, a non-loopback listener without TLS: \
             passwords would cross the network in clear. Set log.kafka_tls, remove PLAIN from \
             log.kafka_sasl.mechanisms (SCRAM never sends the password), or set \
             log.kafka_sasl.allow_plaintext_plain: true"
        );
    }
    let credentials = Credentials::new(config)?;
    let mut client_principals = BTreeMap::new();
    for (subject, name) in &log.kafka_tls.client_principals {
        let principal = credentials.principal(name).with_context(|| {
            format!(
                "log.kafka_tls.client_principals[{subject:?}]: {name:?} is neither a tenant of \
                 gateway.auth.keys nor a name in log.principals"
            )
        })?;
        client_principals.insert(subject.clone(), principal);
    }
    let policy: Option<Arc<dyn ProducePolicy>> = match (&schemas, authenticated) {
        (Some(registry), _) => Some(Arc::new(Schemas(registry.clone()))),
        (None, false) => None,
        (None, true) => bail!("the Kafka listener authenticates clients but has no schemas"),
    };
    let governed = schemas.clone();
    let names = schemas;
    let authorizer = Authorizer::new(AuthorizerOptions {
        entries: log.acls.clone(),
        enforced: authenticated,
        governed_topics: Arc::new(move |topic| governed.as_ref().is_some_and(|s| s.governs(topic))),
        governed_topic_names: Some(Arc::new(move || {
            let mut topics: Vec<String> = names
                .as_ref()
                .map(|s| {
                    s.snapshot()
                        .list()
                        .iter()
                        .map(|i| i.topic.clone())
                        .collect()
                })
                .unwrap_or_default();
            topics.sort();
            topics.dedup();
            topics
        })),
        known_principals: credentials.known(),
    });
    let sasl = log.kafka_sasl.enabled.then(|| SaslOptions {
        store: Arc::new(credentials),
        mechanisms,
    });
    Ok(KafkaSecurity {
        sasl,
        client_principals,
        authorizer: Arc::new(authorizer),
        policy,
    })
}

/// A principal of `log.principals`, with its credentials.
struct Named {
    role: Role,
    plain_sha256: Option<[u8; 32]>,
    scram: Vec<StoredCredential>,
}

/// The credentials of the Kafka listener: named principals first, then the tenants' API keys.
struct Credentials {
    named: BTreeMap<String, Named>,
    tenants: KafkaSasl,
    tenant_names: Vec<String>,
}

impl Credentials {
    fn new(config: &Config) -> anyhow::Result<Self> {
        let mut named = BTreeMap::new();
        for (i, p) in config.log.principals.iter().enumerate() {
            let mut scram = Vec::new();
            for (field, text, mechanism) in [
                ("scram_sha256", &p.scram_sha256, scram::Mechanism::Sha256),
                ("scram_sha512", &p.scram_sha512, scram::Mechanism::Sha512),
            ] {
                let Some(text) = text else { continue };
                let credential: StoredCredential = text
                    .parse()
                    .with_context(|| format!("log.principals[{i}].{field}"))?;
                if credential.mechanism() != mechanism {
                    bail!(
                        "log.principals[{i}].{field} holds a {} credential",
                        credential.mechanism()
                    );
                }
                scram.push(credential);
            }
            let plain_sha256 = p.plain_sha256.as_deref().and_then(|hex_digest| {
                let mut digest = [0u8; 32];
                hex::decode_to_slice(hex_digest, &mut digest).ok()?;
                Some(digest)
            });
            let role = match p.role {
                PrincipalRole::Tenant => Role::Tenant,
                PrincipalRole::Service => Role::Service,
                PrincipalRole::Operator => Role::Operator,
            };
            named.insert(
                p.name.clone(),
                Named {
                    role,
                    plain_sha256,
                    scram,
                },
            );
        }
        let mut tenant_names: Vec<String> = config
            .gateway
            .auth
            .keys
            .iter()
            .map(|k| k.tenant.clone())
            .collect();
        tenant_names.sort();
        tenant_names.dedup();
        for tenant in &tenant_names {
            if let Some(named) = named.get(tenant)
                && named.role != Role::Tenant
            {
                bail!(
                    "log.principals names {tenant:?} as a {:?}, but it is a tenant of \
                     gateway.auth.keys: a name is one principal",
                    named.role
                );
            }
        }
        Ok(Self {
            named,
            tenants: KafkaSasl::new(&config.gateway.auth),
            tenant_names,
        })
    }

    /// Every principal the configuration names (for DescribeAcls).
    fn known(&self) -> Vec<Principal> {
        let mut known: Vec<Principal> = self
            .named
            .iter()
            .map(|(name, n)| Principal::new(name.as_str(), n.role))
            .collect();
        known.extend(
            self.tenant_names
                .iter()
                .filter(|t| !self.named.contains_key(*t))
                .map(|t| Principal::new(t.as_str(), Role::Tenant)),
        );
        known
    }
}

impl CredentialStore for Credentials {
    fn plain(&self, user: &str, password: &str) -> Option<Principal> {
        if let Some(named) = self.named.get(user)
            && let Some(stored) = &named.plain_sha256
        {
            let presented: [u8; 32] = Sha256::digest(password.as_bytes()).into();
            if bool::from(stored.ct_eq(&presented)) {
                return Some(Principal::new(user, named.role));
            }
        }
        let tenant = self.tenants.authenticate(user, password)?;
        Some(Principal::new(tenant, Role::Tenant))
    }

    fn scram(&self, mechanism: scram::Mechanism, user: &str) -> Option<StoredCredential> {
        let named = self.named.get(user)?;
        named
            .scram
            .iter()
            .find(|c| c.mechanism() == mechanism)
            .cloned()
    }

    fn principal(&self, user: &str) -> Option<Principal> {
        if let Some(named) = self.named.get(user) {
            return Some(Principal::new(user, named.role));
        }
        self.tenant_names
            .iter()
            .any(|t| t == user)
            .then(|| Principal::new(user, Role::Tenant))
    }
}

/// The schema registry as the Kafka listener's produce policy.
struct Schemas(Arc<SchemaRegistry>);

impl ProducePolicy for Schemas {
    fn governs(&self, topic: &str) -> bool {
        self.0.governs(topic)
    }

    fn admit(&self, topic: &str, record: &mut Record) -> Result<(), String> {
        self.0.admit_record(topic, record)
    }
}
