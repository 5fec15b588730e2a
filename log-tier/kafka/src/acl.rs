//! Who may do what on the Kafka listener: Kafka's ACL model (`log.acls`, see
//! [`headwater_log::security`]) plus Headwater's built-in rules per [`Role`], and the
//! DescribeAcls answer. Pure decisions: no I/O, no clock.
//!
//! The order of a decision ([`Authorizer::allows`]):
//!
//! 1. Not enforced (a listener without authentication): allowed.
//! 2. [`Role::Operator`]: allowed (a super user: no deny applies). [`Role::Anonymous`]:
//!    refused.
//! 3. [`Role::Tenant`]: the built-in denies ([`Authorizer::tenant_refusal`]) refuse; no
//!    configured allow overrides them.
//! 4. A configured deny entry matching the principal (`User:<name>` or `User:*`), resource and
//!    operation refuses (services included).
//! 5. A built-in allow (service: `All` on every topic, group, transactional id and the cluster;
//!    tenant: `Write` on governed topics, `IdempotentWrite` on the cluster) or a configured
//!    allow entry matching, implied operations included, allows. Otherwise refused.
//!
//! Matching, as Kafka's `AclAuthorizer`: a literal name, a literal `*` (every resource of the
//! type) or a prefix; `All` matches every operation; an allow of Read, Write, Delete or Alter
//! implies Describe, an allow of AlterConfigs implies DescribeConfigs (denies imply nothing).
//! The cluster is the literal resource [`CLUSTER_NAME`]. Hosts: only `*` is accepted by
//! validation; an allow entry for another host never matches and a deny entry for another host
//! matches every host.

use std::fmt;
use std::sync::Arc;

use headwater_log::security::{
    AclEntry, CLUSTER_NAME, Operation, PatternType, Permission, ResourceType, WILDCARD,
};

use crate::principal::{Principal, Role};

/// Whether a topic is governed by the schema registry (tenants may write to it). Called at
/// every decision, so that a hot reload of the registry takes effect at once.
pub type GovernedTopics = Arc<dyn Fn(&str) -> bool + Send + Sync>;

/// The names of the governed topics, for listing the tenants' built-in Write entries.
pub type GovernedTopicNames = Arc<dyn Fn() -> Vec<String> + Send + Sync>;

/// Topic and group name prefixes no tenant may touch, whatever the configured ACLs say.
pub const RESERVED_PREFIXES: [&str; 2] = ["router.", "__"];

/// Topic operations refused to every tenant.
const TENANT_TOPIC_DENIED: [Operation; 4] = [
    Operation::Create,
    Operation::Delete,
    Operation::Alter,
    Operation::AlterConfigs,
];

/// Cluster operations refused to every tenant.
const TENANT_CLUSTER_DENIED: [Operation; 4] = [
    Operation::Create,
    Operation::Alter,
    Operation::ClusterAction,
    Operation::AlterConfigs,
];

/// Every resource type, in wire-code order.
const RESOURCE_TYPES: [ResourceType; 4] = [
    ResourceType::Topic,
    ResourceType::Group,
    ResourceType::Cluster,
    ResourceType::TransactionalId,
];

/// What an [`Authorizer`] is built from.
pub struct AuthorizerOptions {
    /// The configured entries (`log.acls`), already validated ([`AclEntry::validate`]); an
    /// entry whose principal is not `User:<name>` matches no one.
    pub entries: Vec<AclEntry>,
    /// Whether decisions are made at all: false on a listener without authentication, where
    /// everything is allowed.
    pub enforced: bool,
    /// The topics the schema registry names.
    pub governed_topics: GovernedTopics,
    /// The governed topics by name, to list the tenants' built-in Write entries in
    /// DescribeAcls; without it only a topic a filter names is listed.
    pub governed_topic_names: Option<GovernedTopicNames>,
    /// The principals whose built-in rules DescribeAcls lists (`log.principals`, tenants).
    pub known_principals: Vec<Principal>,
}

impl fmt::Debug for AuthorizerOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthorizerOptions")
            .field("entries", &self.entries.len())
            .field("enforced", &self.enforced)
            .field("known_principals", &self.known_principals.len())
            .finish_non_exhaustive()
    }
}

/// Decides every request of the Kafka listener; see the module documentation for the rules.
pub struct Authorizer {
    options: AuthorizerOptions,
}

impl fmt::Debug for Authorizer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Authorizer")
            .field("options", &self.options)
            .finish()
    }
}

/// The tenant `group` belongs to: the one with the longest name `t` among `tenants` such that
/// `group` starts with `t.`, or `None`. So with tenants `acme` and `acme.eu`, `acme.eu.x` is
/// `acme.eu`'s and `acme.x` (or `acme.eux.y`) is `acme`'s.
pub fn group_owner<'a>(group: &str, tenants: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    tenants
        .into_iter()
        .filter(|tenant| {
            group
                .strip_prefix(tenant)
                .is_some_and(|rest| rest.starts_with('.'))
        })
        .max_by_key(|tenant| tenant.len())
}

/// Whether `group` is `<tenant>.<something>`.
fn own_group(tenant: &str, group: &str) -> bool {
    group
        .strip_prefix(tenant)
        .and_then(|rest| rest.strip_prefix('.'))
        .is_some_and(|rest| !rest.is_empty())
}

/// Whether `entry` names `principal`: `User:<name>` or `User:*`.
fn names_principal(entry: &AclEntry, principal: &Principal) -> bool {
    entry
        .principal_name()
        .is_some_and(|name| name == WILDCARD || name == &*principal.name)
}

/// Whether `entry`'s pattern selects the resource `name` of type `resource`.
fn selects(entry: &AclEntry, resource: ResourceType, name: &str) -> bool {
    entry.resource_type == resource
        && match entry.pattern_type {
            PatternType::Literal => entry.name == WILDCARD || entry.name == name,
            PatternType::Prefixed => name.starts_with(entry.name.as_str()),
        }
}

/// The granted operations that allow `operation`: itself, `All`, and what implies it.
fn granting(operation: Operation) -> &'static [Operation] {
    use Operation::*;
    match operation {
        Describe => &[All, Describe, Read, Write, Delete, Alter],
        DescribeConfigs => &[All, DescribeConfigs, AlterConfigs],
        Read => &[All, Read],
        Write => &[All, Write],
        Create => &[All, Create],
        Delete => &[All, Delete],
        Alter => &[All, Alter],
        ClusterAction => &[All, ClusterAction],
        AlterConfigs => &[All, AlterConfigs],
        IdempotentWrite => &[All, IdempotentWrite],
        All => &[All],
    }
}

impl Authorizer {
    /// An authorizer over `options`.
    pub fn new(options: AuthorizerOptions) -> Self {
        Self { options }
    }

    /// An authorizer that allows everything (a listener without authentication).
    pub fn open() -> Self {
        Self::new(AuthorizerOptions {
            entries: Vec::new(),
            enforced: false,
            governed_topics: Arc::new(|_| false),
            governed_topic_names: None,
            known_principals: Vec::new(),
        })
    }

    /// Why the built-in rules refuse the tenant `tenant`, or `None` when they do not. No
    /// configured allow overrides these: names under [`RESERVED_PREFIXES`]; topic Create,
    /// Delete, Alter and AlterConfigs; cluster Create, Alter, ClusterAction and AlterConfigs; a
    /// group the tenant does not own: one not named `<tenant>.<something>`, or owned by a known
    /// tenant with a longer name ([`group_owner`]: `acme` may not use `acme.eu.x` when `acme.eu`
    /// is a tenant). `All` counts as every operation.
    pub fn tenant_refusal(
        &self,
        tenant: &str,
        resource: ResourceType,
        name: &str,
        operation: Operation,
    ) -> Option<&'static str> {
        let one_of =
            |denied: &[Operation]| operation == Operation::All || denied.contains(&operation);
        match resource {
            ResourceType::Topic | ResourceType::Group
                if RESERVED_PREFIXES.iter().any(|p| name.starts_with(p)) =>
            {
                Some("reserved name")
            }
            ResourceType::Topic if one_of(&TENANT_TOPIC_DENIED) => {
                Some("tenants may not create, delete or alter topics")
            }
            ResourceType::Cluster if one_of(&TENANT_CLUSTER_DENIED) => {
                Some("tenants may not administer the cluster")
            }
            ResourceType::Group if !self.owns_group(tenant, name) => Some(
                "a tenant's groups are named `<tenant>.<name>`, and not owned by a tenant with a \
                 longer name",
            ),
            _ => None,
        }
    }

    /// Whether `group` is `<tenant>.<something>` and no known tenant with a longer name owns it
    /// ([`group_owner`] among the known tenants and `tenant`).
    fn owns_group(&self, tenant: &str, group: &str) -> bool {
        let known = self
            .options
            .known_principals
            .iter()
            .filter(|principal| principal.role == Role::Tenant)
            .map(|principal| &*principal.name);
        own_group(tenant, group) && group_owner(group, known.chain([tenant])) == Some(tenant)
    }

    /// Whether decisions are enforced (false: everything is allowed).
    pub fn enforced(&self) -> bool {
        self.options.enforced
    }

    /// Whether `principal` may do `operation` on the resource `name` of type `resource` (the
    /// cluster is named [`CLUSTER_NAME`]).
    pub fn allows(
        &self,
        principal: &Principal,
        resource: ResourceType,
        name: &str,
        operation: Operation,
    ) -> bool {
        if !self.options.enforced {
            return true;
        }
        match principal.role {
            Role::Operator => true,
            Role::Anonymous => false,
            Role::Service => !self.configured(principal, resource, name, operation, false),
            Role::Tenant => {
                self.tenant_refusal(&principal.name, resource, name, operation)
                    .is_none()
                    && !self.configured(principal, resource, name, operation, false)
                    && (self.tenant_granted(resource, name, operation)
                        || self.configured(principal, resource, name, operation, true))
            }
        }
    }

    /// Whether the tenants' built-in allows grant `operation` (Write and its implied Describe
    /// on governed topics, IdempotentWrite on the cluster).
    fn tenant_granted(&self, resource: ResourceType, name: &str, operation: Operation) -> bool {
        match resource {
            ResourceType::Topic => {
                granting(operation).contains(&Operation::Write)
                    && (self.options.governed_topics)(name)
            }
            ResourceType::Cluster => {
                operation == Operation::IdempotentWrite && name == CLUSTER_NAME
            }
            ResourceType::Group | ResourceType::TransactionalId => false,
        }
    }

    /// Whether a configured allow (`allow`) or deny (`!allow`) entry matches.
    fn configured(
        &self,
        principal: &Principal,
        resource: ResourceType,
        name: &str,
        operation: Operation,
        allow: bool,
    ) -> bool {
        self.options.entries.iter().any(|entry| {
            let (permission, operations) = if allow {
                (Permission::Allow, granting(operation))
            } else {
                (Permission::Deny, &[Operation::All, operation][..])
            };
            entry.permission == permission
                && (!allow || entry.host == WILDCARD)
                && names_principal(entry, principal)
                && selects(entry, resource, name)
                && entry.operations.iter().any(|op| operations.contains(op))
        })
    }

    /// The configured entries (`log.acls`).
    pub fn entries(&self) -> Vec<AclEntry> {
        self.options.entries.clone()
    }

    /// The built-in rules of the known principals as Kafka entries (what DescribeAcls lists):
    /// operators and services `All` on every resource; per tenant, `Write` on each governed
    /// topic, cluster `IdempotentWrite`, and the denies of [`Self::tenant_refusal`] but the group
    /// one, which no Kafka entry can express.
    pub fn builtin_entries(&self) -> Vec<AclEntry> {
        let topics = self
            .options
            .governed_topic_names
            .as_ref()
            .map(|names| names())
            .unwrap_or_default();
        self.builtin_entries_with(&topics)
    }

    fn builtin_entries_with(&self, governed: &[String]) -> Vec<AclEntry> {
        let mut entries = Vec::new();
        for principal in &self.options.known_principals {
            let user = principal.kafka_name();
            let mut add = |resource_type, pattern_type, name: &str, operations, permission| {
                entries.push(AclEntry {
                    principal: user.clone(),
                    resource_type,
                    pattern_type,
                    name: name.to_owned(),
                    operations,
                    permission,
                    host: WILDCARD.to_owned(),
                });
            };
            use PatternType::{Literal, Prefixed};
            use Permission::{Allow, Deny};
            match principal.role {
                Role::Anonymous => {}
                Role::Operator | Role::Service => {
                    for resource in RESOURCE_TYPES {
                        let name = match resource {
                            ResourceType::Cluster => CLUSTER_NAME,
                            _ => WILDCARD,
                        };
                        add(resource, Literal, name, vec![Operation::All], Allow);
                    }
                }
                Role::Tenant => {
                    for topic in governed
                        .iter()
                        .filter(|t| (self.options.governed_topics)(t))
                    {
                        add(
                            ResourceType::Topic,
                            Literal,
                            topic,
                            vec![Operation::Write],
                            Allow,
                        );
                    }
                    let cluster = ResourceType::Cluster;
                    add(
                        cluster,
                        Literal,
                        CLUSTER_NAME,
                        vec![Operation::IdempotentWrite],
                        Allow,
                    );
                    for prefix in RESERVED_PREFIXES {
                        add(
                            ResourceType::Topic,
                            Prefixed,
                            prefix,
                            vec![Operation::All],
                            Deny,
                        );
                        add(
                            ResourceType::Group,
                            Prefixed,
                            prefix,
                            vec![Operation::All],
                            Deny,
                        );
                    }
                    let topic_ops = TENANT_TOPIC_DENIED.to_vec();
                    add(ResourceType::Topic, Literal, WILDCARD, topic_ops, Deny);
                    let cluster_ops = TENANT_CLUSTER_DENIED.to_vec();
                    add(cluster, Literal, CLUSTER_NAME, cluster_ops, Deny);
                }
            }
        }
        entries
    }
}

mod describe;

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};

    use super::*;

    pub(super) const TOPIC: ResourceType = ResourceType::Topic;
    pub(super) const GROUP: ResourceType = ResourceType::Group;
    pub(super) const CLUSTER: ResourceType = ResourceType::Cluster;
    pub(super) const TXN: ResourceType = ResourceType::TransactionalId;

    pub(super) fn acl(
        principal: &str,
        resource_type: ResourceType,
        name: &str,
        ops: &[Operation],
    ) -> AclEntry {
        AclEntry {
            principal: principal.to_owned(),
            resource_type,
            pattern_type: PatternType::Literal,
            name: name.to_owned(),
            operations: ops.to_vec(),
            permission: Permission::Allow,
            host: WILDCARD.to_owned(),
        }
    }

    pub(super) fn prefixed(mut entry: AclEntry) -> AclEntry {
        entry.pattern_type = PatternType::Prefixed;
        entry
    }

    pub(super) fn deny(mut entry: AclEntry) -> AclEntry {
        entry.permission = Permission::Deny;
        entry
    }

    pub(super) fn acme() -> Principal {
        Principal::new("acme", Role::Tenant)
    }

    pub(super) fn router() -> Principal {
        Principal::new("router", Role::Service)
    }

    pub(super) fn ops() -> Principal {
        Principal::new("ops", Role::Operator)
    }

    /// An enforced authorizer over `entries`, with `events` the one governed topic.
    pub(super) fn authorizer(entries: Vec<AclEntry>) -> Authorizer {
        Authorizer::new(AuthorizerOptions {
            entries,
            enforced: true,
            governed_topics: Arc::new(|topic| topic == "events"),
            governed_topic_names: Some(Arc::new(|| vec!["events".to_owned()])),
            known_principals: vec![acme(), router(), ops(), Principal::anonymous()],
        })
    }

    #[test]
    fn service_is_allowed_everything_but_configured_denies() {
        let auth = authorizer(vec![deny(acl(
            "User:router",
            TOPIC,
            "audit",
            &[Operation::Read],
        ))]);
        let service = router();
        for (resource, name) in [
            (TOPIC, "router.lake"),
            (TOPIC, "__consumer_offsets"),
            (GROUP, "router.lake"),
            (TXN, "tx-1"),
            (CLUSTER, CLUSTER_NAME),
        ] {
            for op in Operation::VALUES {
                assert!(
                    auth.allows(&service, resource, name, op),
                    "{resource:?} {name} {op:?}"
                );
            }
        }
        assert!(!auth.allows(&service, TOPIC, "audit", Operation::Read));
        assert!(auth.allows(&service, TOPIC, "audit", Operation::Write));
        let everyone = authorizer(vec![deny(acl("User:*", GROUP, "*", &[Operation::All]))]);
        assert!(!everyone.allows(&service, GROUP, "router.lake", Operation::Read));
    }

    #[test]
    fn tenant_writes_governed_topics_but_reads_nothing_by_default() {
        let auth = authorizer(vec![]);
        let tenant = acme();
        assert!(auth.allows(&tenant, TOPIC, "events", Operation::Write));
        assert!(auth.allows(&tenant, TOPIC, "events", Operation::Describe));
        assert!(!auth.allows(&tenant, TOPIC, "events", Operation::Read));
        assert!(!auth.allows(&tenant, TOPIC, "other", Operation::Write));
        assert!(!auth.allows(&tenant, TOPIC, "other", Operation::Describe));
        assert!(auth.allows(&tenant, CLUSTER, CLUSTER_NAME, Operation::IdempotentWrite));
        assert!(!auth.allows(&tenant, CLUSTER, CLUSTER_NAME, Operation::Describe));
        assert!(!auth.allows(&tenant, GROUP, "acme.reader", Operation::Read));
        assert!(!auth.allows(&tenant, TXN, "acme.tx", Operation::Write));
    }

    #[test]
    fn tenant_reserved_names_refused_despite_configured_allows() {
        let auth = authorizer(vec![
            acl("User:acme", GROUP, "router.lake", &[Operation::All]),
            acl("User:acme", TOPIC, "*", &[Operation::All]),
            acl("User:*", GROUP, "*", &[Operation::Read]),
        ]);
        let tenant = acme();
        assert!(!auth.allows(&tenant, GROUP, "router.lake", Operation::Read));
        assert!(!auth.allows(&tenant, TOPIC, "router.lake", Operation::Read));
        assert!(!auth.allows(&tenant, TOPIC, "router.lake", Operation::Describe));
        assert!(!auth.allows(&tenant, TOPIC, "__consumer_offsets", Operation::Describe));
        assert!(!auth.allows(&tenant, GROUP, "__x", Operation::Read));
        assert!(auth.allows(&tenant, TOPIC, "other", Operation::Read));
    }

    #[test]
    fn tenant_groups_only_its_own_and_only_when_granted() {
        let tenant = acme();
        let none = authorizer(vec![]);
        assert!(!none.allows(&tenant, GROUP, "acme.reader", Operation::Read));
        let granted = authorizer(vec![
            prefixed(acl("User:acme", GROUP, "acme.", &[Operation::Read])),
            acl("User:acme", GROUP, "*", &[Operation::Read]),
        ]);
        assert!(granted.allows(&tenant, GROUP, "acme.reader", Operation::Read));
        assert!(granted.allows(&tenant, GROUP, "acme.reader", Operation::Describe));
        assert!(!granted.allows(&tenant, GROUP, "globex.reader", Operation::Read));
        assert!(!granted.allows(&tenant, GROUP, "acmex.reader", Operation::Read));
        assert!(!granted.allows(&tenant, GROUP, "acme.", Operation::Read));
        assert!(!granted.allows(&tenant, GROUP, "reader", Operation::Read));
        assert!(!granted.allows(&tenant, GROUP, "acme.reader", Operation::Delete));
    }

    #[test]
    fn a_group_belongs_to_the_tenant_with_the_longest_matching_name() {
        let tenants = ["acme", "acme.eu", "acme.eu.west", "globex"];
        let owner = |group| group_owner(group, tenants);
        assert_eq!(owner("acme.reader"), Some("acme"));
        assert_eq!(owner("acme.eux.reader"), Some("acme"));
        assert_eq!(owner("acme.eu.reader"), Some("acme.eu"));
        assert_eq!(owner("acme.eu."), Some("acme.eu"));
        assert_eq!(owner("acme.eu.west.reader"), Some("acme.eu.west"));
        assert_eq!(owner("acmex.reader"), None);
        assert_eq!(owner("acme"), None);
        assert_eq!(owner("reader"), None);
    }

    #[test]
    fn tenant_groups_exclude_those_of_tenants_with_dotted_longer_names() {
        let eu = Principal::new("acme.eu", Role::Tenant);
        let west = Principal::new("acme.eu.west", Role::Tenant);
        // A service named like a tenant owns no group.
        let service = Principal::new("acme.svc", Role::Service);
        let auth = Authorizer::new(AuthorizerOptions {
            entries: vec![acl("User:*", GROUP, "*", &[Operation::Read])],
            enforced: true,
            governed_topics: Arc::new(|_| false),
            governed_topic_names: None,
            known_principals: vec![acme(), eu.clone(), west.clone(), service, router()],
        });
        let allowed =
            |principal: &Principal, group| auth.allows(principal, GROUP, group, Operation::Read);
        assert!(allowed(&acme(), "acme.reader"));
        assert!(allowed(&acme(), "acme.eux.reader"));
        assert!(allowed(&acme(), "acme.svc.reader"));
        assert!(!allowed(&acme(), "acme.eu.reader"), "acme.eu's group");
        assert!(!allowed(&acme(), "acme.eu.west.reader"));
        assert!(!allowed(&acme(), "acme.eu."));
        assert!(allowed(&eu, "acme.eu.reader"));
        assert!(!allowed(&eu, "acme.eu.west.reader"), "acme.eu.west's group");
        assert!(!allowed(&eu, "acme.reader"));
        assert!(allowed(&west, "acme.eu.west.reader"));
        assert!(!allowed(&west, "acme.eu.reader"));
        // A tenant the authorizer does not know still owns its own groups.
        let us = Principal::new("acme.us", Role::Tenant);
        assert!(allowed(&us, "acme.us.reader"));
        assert!(!allowed(&us, "acme.reader"));
        let refusal = auth.tenant_refusal("acme", GROUP, "acme.eu.reader", Operation::Read);
        assert!(
            refusal.is_some_and(|why| why.contains("longer name")),
            "{refusal:?}"
        );
    }

    #[test]
    fn tenant_cannot_administer_topics_or_the_cluster() {
        let auth = authorizer(vec![
            acl("User:acme", TOPIC, "*", &[Operation::All]),
            acl("User:acme", CLUSTER, CLUSTER_NAME, &[Operation::All]),
        ]);
        let tenant = acme();
        for op in [
            Operation::Create,
            Operation::Delete,
            Operation::Alter,
            Operation::AlterConfigs,
        ] {
            assert!(!auth.allows(&tenant, TOPIC, "events", op), "{op:?}");
        }
        for op in [
            Operation::Create,
            Operation::Alter,
            Operation::ClusterAction,
            Operation::AlterConfigs,
        ] {
            assert!(!auth.allows(&tenant, CLUSTER, CLUSTER_NAME, op), "{op:?}");
        }
        assert!(auth.allows(&tenant, TOPIC, "events", Operation::Read));
        assert!(auth.allows(&tenant, TOPIC, "events", Operation::DescribeConfigs));
        assert!(auth.allows(&tenant, CLUSTER, CLUSTER_NAME, Operation::Describe));
    }

    #[test]
    fn operator_is_allowed_despite_denies() {
        let auth = authorizer(vec![
            deny(acl("User:ops", TOPIC, "*", &[Operation::All])),
            deny(acl("User:*", CLUSTER, CLUSTER_NAME, &[Operation::All])),
        ]);
        for op in Operation::VALUES {
            assert!(auth.allows(&ops(), TOPIC, "router.lake", op));
            assert!(auth.allows(&ops(), CLUSTER, CLUSTER_NAME, op));
        }
    }

    #[test]
    fn anonymous_allowed_only_when_not_enforced() {
        let open = Authorizer::open();
        assert!(!open.enforced());
        let anonymous = Principal::anonymous();
        assert!(open.allows(&anonymous, TOPIC, "router.lake", Operation::Delete));
        assert!(open.allows(&anonymous, CLUSTER, CLUSTER_NAME, Operation::Alter));
        let auth = authorizer(vec![acl("User:*", TOPIC, "*", &[Operation::All])]);
        assert!(!auth.allows(&anonymous, TOPIC, "events", Operation::Describe));
        assert!(!auth.allows(&anonymous, TOPIC, "events", Operation::Write));
    }

    #[test]
    fn deny_wins_over_allow() {
        let auth = authorizer(vec![
            acl("User:*", TOPIC, "*", &[Operation::Read]),
            deny(acl("User:acme", TOPIC, "secret", &[Operation::Read])),
            deny(prefixed(acl("User:*", TOPIC, "hidden.", &[Operation::All]))),
        ]);
        let tenant = acme();
        assert!(auth.allows(&tenant, TOPIC, "logs", Operation::Read));
        assert!(!auth.allows(&tenant, TOPIC, "secret", Operation::Read));
        // A deny of Read does not deny the Describe it would imply.
        assert!(auth.allows(&tenant, TOPIC, "secret", Operation::Describe));
        assert!(!auth.allows(&tenant, TOPIC, "hidden.x", Operation::Describe));
        let globex = Principal::new("globex", Role::Tenant);
        assert!(auth.allows(&globex, TOPIC, "secret", Operation::Read));
        // A deny of a governed topic overrides the built-in Write.
        let narrowed = authorizer(vec![deny(acl(
            "User:acme",
            TOPIC,
            "events",
            &[Operation::Write],
        ))]);
        assert!(!narrowed.allows(&tenant, TOPIC, "events", Operation::Write));
    }

    #[test]
    fn literal_prefixed_and_wildcard_patterns() {
        let auth = authorizer(vec![
            acl("User:acme", TOPIC, "logs", &[Operation::Read]),
            prefixed(acl("User:acme", TOPIC, "metrics.", &[Operation::Read])),
            acl("User:acme", TXN, "*", &[Operation::Write]),
            acl("User:other", TOPIC, "*", &[Operation::Read]),
        ]);
        let tenant = acme();
        assert!(auth.allows(&tenant, TOPIC, "logs", Operation::Read));
        assert!(!auth.allows(&tenant, TOPIC, "logs2", Operation::Read));
        assert!(!auth.allows(&tenant, TOPIC, "log", Operation::Read));
        assert!(auth.allows(&tenant, TOPIC, "metrics.cpu", Operation::Read));
        assert!(!auth.allows(&tenant, TOPIC, "metrics", Operation::Read));
        assert!(auth.allows(&tenant, TXN, "anything", Operation::Write));
        assert!(auth.allows(&tenant, TXN, "anything", Operation::Describe));
        assert!(!auth.allows(&tenant, TOPIC, "anything", Operation::Read));
    }

    #[test]
    fn implied_operations() {
        let auth = authorizer(vec![
            acl("User:acme", TOPIC, "r", &[Operation::Read]),
            acl("User:acme", TOPIC, "c", &[Operation::AlterConfigs]),
            acl("User:acme", TOPIC, "d", &[Operation::DescribeConfigs]),
        ]);
        let tenant = acme();
        assert!(auth.allows(&tenant, TOPIC, "r", Operation::Describe));
        assert!(!auth.allows(&tenant, TOPIC, "r", Operation::DescribeConfigs));
        // AlterConfigs is refused to tenants, but still implies DescribeConfigs.
        assert!(!auth.allows(&tenant, TOPIC, "c", Operation::AlterConfigs));
        assert!(auth.allows(&tenant, TOPIC, "c", Operation::DescribeConfigs));
        assert!(!auth.allows(&tenant, TOPIC, "d", Operation::Describe));
        assert!(!auth.allows(&tenant, TOPIC, "d", Operation::AlterConfigs));
    }

    #[test]
    fn non_wildcard_host_allows_nothing_and_denies_everywhere() {
        let mut allow = acl("User:acme", TOPIC, "logs", &[Operation::Read]);
        allow.host = "10.0.0.1".to_owned();
        let mut refuse = deny(acl("User:router", TOPIC, "logs", &[Operation::Read]));
        refuse.host = "10.0.0.1".to_owned();
        let auth = authorizer(vec![allow, refuse]);
        assert!(!auth.allows(&acme(), TOPIC, "logs", Operation::Read));
        assert!(!auth.allows(&router(), TOPIC, "logs", Operation::Read));
    }

    #[test]
    fn governed_topics_are_consulted_at_call_time() {
        let governed = Arc::new(AtomicBool::new(false));
        let flag = governed.clone();
        let auth = Authorizer::new(AuthorizerOptions {
            entries: vec![],
            enforced: true,
            governed_topics: Arc::new(move |topic| {
                topic == "events" && flag.load(Ordering::SeqCst)
            }),
            governed_topic_names: None,
            known_principals: vec![],
        });
        assert!(!auth.allows(&acme(), TOPIC, "events", Operation::Write));
        governed.store(true, Ordering::SeqCst);
        assert!(auth.allows(&acme(), TOPIC, "events", Operation::Write));
        governed.store(false, Ordering::SeqCst);
        assert!(!auth.allows(&acme(), TOPIC, "events", Operation::Describe));
    }
}
