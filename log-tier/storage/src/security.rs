//! Access control lists of the Kafka listener (`log.acls`), in Kafka's model: who (a
//! principal) may or may not do what (an operation) to which resources (a type and a literal
//! or prefixed name). Configuration types and their Kafka wire codes only; the decisions are
//! made by `headwater_kafka::acl::Authorizer`.
//!
//! ```yaml
//! log:
//!   acls:
//!     - principal: "User:acme"
//!       resource_type: group
//!       pattern_type: prefixed
//!       name: "acme."
//!       operations: [read]
//!     - principal: "User:*"
//!       resource_type: topic
//!       name: "audit"
//!       operations: [all]
//!       permission: deny
//! ```

use serde::{Deserialize, Serialize};

/// The name of the one cluster resource, as in Kafka.
pub const CLUSTER_NAME: &str = "kafka-cluster";

/// The principal prefix: Kafka principals are `User:<name>`.
pub const USER_PREFIX: &str = "User:";

/// A resource name (literal) or principal name matching every resource or user.
pub const WILDCARD: &str = "*";

/// The kind of resource an ACL entry protects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResourceType {
    /// A topic.
    Topic,
    /// A consumer group.
    Group,
    /// The cluster itself (its name is always `kafka-cluster`).
    Cluster,
    /// A transactional id.
    TransactionalId,
}

impl ResourceType {
    /// Kafka's `ANY` resource type in a filter.
    pub const ANY_CODE: i8 = 1;

    /// Kafka's wire code.
    pub const fn code(self) -> i8 {
        match self {
            Self::Topic => 2,
            Self::Group => 3,
            Self::Cluster => 4,
            Self::TransactionalId => 5,
        }
    }

    /// The type of a wire code, `None` for `ANY`, `UNKNOWN` and codes not served.
    pub const fn from_code(code: i8) -> Option<Self> {
        match code {
            2 => Some(Self::Topic),
            3 => Some(Self::Group),
            4 => Some(Self::Cluster),
            5 => Some(Self::TransactionalId),
            _ => None,
        }
    }

    /// The configuration spelling (`transactional_id`).
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Topic => "topic",
            Self::Group => "group",
            Self::Cluster => "cluster",
            Self::TransactionalId => "transactional_id",
        }
    }

    /// The operations Kafka applies to this resource type (`All` aside).
    pub const fn operations(self) -> &'static [Operation] {
        use Operation::*;
        match self {
            Self::Topic => &[
                Read,
                Write,
                Create,
                Delete,
                Alter,
                Describe,
                DescribeConfigs,
                AlterConfigs,
            ],
            Self::Group => &[Read, Delete, Describe],
            Self::Cluster => &[
                Create,
                Alter,
                Describe,
                ClusterAction,
                DescribeConfigs,
                AlterConfigs,
                IdempotentWrite,
            ],
            Self::TransactionalId => &[Write, Describe],
        }
    }
}

/// How an entry's `name` selects resources.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum PatternType {
    /// The resource named exactly `name`; a literal `*` is every resource of the type.
    #[default]
    Literal,
    /// Every resource whose name starts with `name`.
    Prefixed,
}

impl PatternType {
    /// Kafka's `ANY` pattern type in a filter: the filter's name is compared as is.
    pub const ANY_CODE: i8 = 1;
    /// Kafka's `MATCH` pattern type in a filter: every entry that would apply to the named
    /// resource (the literal name, the literal `*`, and prefixes of it).
    pub const MATCH_CODE: i8 = 2;

    /// Kafka's wire code.
    pub const fn code(self) -> i8 {
        match self {
            Self::Literal => 3,
            Self::Prefixed => 4,
        }
    }

    /// The pattern type of a wire code, `None` for `ANY`, `MATCH` and `UNKNOWN`.
    pub const fn from_code(code: i8) -> Option<Self> {
        match code {
            3 => Some(Self::Literal),
            4 => Some(Self::Prefixed),
            _ => None,
        }
    }

    /// The configuration spelling.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Literal => "literal",
            Self::Prefixed => "prefixed",
        }
    }
}

/// What a principal does to a resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Operation {
    /// Every operation.
    All,
    /// Fetch from a topic; join and commit in a group.
    Read,
    /// Produce to a topic or with a transactional id.
    Write,
    /// Create a topic (or any topic, on the cluster).
    Create,
    /// Delete a topic, or a group's offsets.
    Delete,
    /// Add partitions to a topic; alter the cluster (ACLs).
    Alter,
    /// Metadata, offsets, group and ACL listings. Implied by Read, Write, Delete and Alter.
    Describe,
    /// Broker-to-broker requests.
    ClusterAction,
    /// Read configuration. Implied by AlterConfigs.
    DescribeConfigs,
    /// Change configuration.
    AlterConfigs,
    /// Idempotent produce (InitProducerId without a transactional id).
    IdempotentWrite,
}

impl Operation {
    /// Kafka's `ANY` operation in a filter.
    pub const ANY_CODE: i8 = 1;

    /// Every operation, `All` first, in wire-code order.
    pub const VALUES: [Self; 11] = [
        Self::All,
        Self::Read,
        Self::Write,
        Self::Create,
        Self::Delete,
        Self::Alter,
        Self::Describe,
        Self::ClusterAction,
        Self::DescribeConfigs,
        Self::AlterConfigs,
        Self::IdempotentWrite,
    ];

    /// Kafka's wire code (`AclOperation`).
    pub const fn code(self) -> i8 {
        match self {
            Self::All => 2,
            Self::Read => 3,
            Self::Write => 4,
            Self::Create => 5,
            Self::Delete => 6,
            Self::Alter => 7,
            Self::Describe => 8,
            Self::ClusterAction => 9,
            Self::DescribeConfigs => 10,
            Self::AlterConfigs => 11,
            Self::IdempotentWrite => 12,
        }
    }

    /// The operation of a wire code, `None` for `ANY`, `UNKNOWN` and codes not served.
    pub const fn from_code(code: i8) -> Option<Self> {
        match code {
            2 => Some(Self::All),
            3 => Some(Self::Read),
            4 => Some(Self::Write),
            5 => Some(Self::Create),
            6 => Some(Self::Delete),
            7 => Some(Self::Alter),
            8 => Some(Self::Describe),
            9 => Some(Self::ClusterAction),
            10 => Some(Self::DescribeConfigs),
            11 => Some(Self::AlterConfigs),
            12 => Some(Self::IdempotentWrite),
            _ => None,
        }
    }

    /// The configuration spelling (`idempotent_write`).
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::All => "all",
            Self::Read => "read",
            Self::Write => "write",
            Self::Create => "create",
            Self::Delete => "delete",
            Self::Alter => "alter",
            Self::Describe => "describe",
            Self::ClusterAction => "cluster_action",
            Self::DescribeConfigs => "describe_configs",
            Self::AlterConfigs => "alter_configs",
            Self::IdempotentWrite => "idempotent_write",
        }
    }
}

/// Whether an entry grants or refuses its operations. A matching deny always wins.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Permission {
    /// Grant the operations.
    #[default]
    Allow,
    /// Refuse the operations, whatever any allow says.
    Deny,
}

impl Permission {
    /// Kafka's `ANY` permission type in a filter.
    pub const ANY_CODE: i8 = 1;

    /// Kafka's wire code (`AclPermissionType`).
    pub const fn code(self) -> i8 {
        match self {
            Self::Deny => 2,
            Self::Allow => 3,
        }
    }

    /// The permission of a wire code, `None` for `ANY` and `UNKNOWN`.
    pub const fn from_code(code: i8) -> Option<Self> {
        match code {
            2 => Some(Self::Deny),
            3 => Some(Self::Allow),
            _ => None,
        }
    }
}

/// One entry of `log.acls`: `permission` of `operations` on the resources `resource_type` +
/// `pattern_type` + `name` select, for `principal`. Checked by [`AclEntry::validate`].
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AclEntry {
    /// `User:<name>` (a tenant, service or operator name), or `User:*` for every
    /// authenticated principal. Required.
    pub principal: String,
    /// The kind of resource. Required.
    pub resource_type: ResourceType,
    /// How `name` selects resources. Default `literal`.
    #[serde(default)]
    pub pattern_type: PatternType,
    /// Resource name (literal), name prefix (prefixed), or `*` (literal) for every resource of
    /// the type; the cluster's name is `kafka-cluster`. Required.
    pub name: String,
    /// The operations granted or refused; at least one. Required.
    pub operations: Vec<Operation>,
    /// Allow or deny. Default `allow`.
    #[serde(default)]
    pub permission: Permission,
    /// Client host the entry applies to; only `*` (every host) is accepted. Default `*`.
    #[serde(default = "any_host")]
    pub host: String,
}

fn any_host() -> String {
    WILDCARD.to_owned()
}

impl AclEntry {
    /// The user name of `principal` (`acme` for `User:acme`, `*` for `User:*`), `None` when it
    /// is not a `User:` principal.
    pub fn principal_name(&self) -> Option<&str> {
        self.principal
            .strip_prefix(USER_PREFIX)
            .filter(|name| !name.is_empty())
    }

    /// What is wrong with the entry, as `(field, message)` pairs with the field relative to
    /// the entry (`principal`, `operations`, ...); empty when it is valid. See
    /// [`validate_acls`] for keys under `log.acls[i]`.
    pub fn validate(&self) -> Vec<(String, String)> {
        let mut errors = Vec::new();
        let mut error = |key: &str, message: String| errors.push((key.to_owned(), message));
        match self.principal_name() {
            None => error(
                "principal",
                format!(
                    "`{}` is not `User:<name>` (or `User:*` for every principal)",
                    self.principal
                ),
            ),
            Some(name) if name.chars().any(|c| c.is_whitespace() || c.is_control()) => error(
                "principal",
                format!("`{}` contains whitespace", self.principal),
            ),
            Some(_) => {}
        }
        if self.name.is_empty() {
            error("name", "must not be empty".to_owned());
        }
        if self.resource_type == ResourceType::Cluster {
            if self.name != CLUSTER_NAME {
                error(
                    "name",
                    format!(
                        "the cluster resource is named `{CLUSTER_NAME}`, not `{}`",
                        self.name
                    ),
                );
            }
            if self.pattern_type != PatternType::Literal {
                error(
                    "pattern_type",
                    "must be `literal` for the cluster resource".to_owned(),
                );
            }
        } else if self.pattern_type == PatternType::Prefixed && self.name == WILDCARD {
            error(
                "name",
                "a prefixed `*` matches only names starting with `*`; use pattern_type \
                 `literal` with name `*` for every resource"
                    .to_owned(),
            );
        }
        if self.operations.is_empty() {
            error("operations", "must list at least one operation".to_owned());
        }
        let applicable = self.resource_type.operations();
        for op in &self.operations {
            if *op != Operation::All && !applicable.contains(op) {
                let names: Vec<&str> = applicable.iter().map(|op| op.as_str()).collect();
                error(
                    "operations",
                    format!(
                        "`{}` does not apply to a {}; use all or one of {}",
                        op.as_str(),
                        self.resource_type.as_str(),
                        names.join(", ")
                    ),
                );
            }
        }
        if self.host != WILDCARD {
            error(
                "host",
                format!("only `*` (every host) is supported, not `{}`", self.host),
            );
        }
        errors
    }
}

/// Validates every entry of `log.acls`, keys as `log.acls[<i>].<field>`.
pub fn validate_acls(entries: &[AclEntry]) -> Vec<(String, String)> {
    entries
        .iter()
        .enumerate()
        .flat_map(|(i, entry)| {
            entry
                .validate()
                .into_iter()
                .map(move |(key, message)| (format!("log.acls[{i}].{key}"), message))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    // headwater-log has no YAML crate; JSON is YAML's subset and goes through the same serde
    // derive, so `deny_unknown_fields`, defaults and spellings are what YAML gets.
    fn parse(json: &str) -> Result<Vec<AclEntry>, serde_json::Error> {
        serde_json::from_str(json)
    }

    fn entry(principal: &str, resource_type: ResourceType, name: &str) -> AclEntry {
        AclEntry {
            principal: principal.to_owned(),
            resource_type,
            pattern_type: PatternType::Literal,
            name: name.to_owned(),
            operations: vec![Operation::Read],
            permission: Permission::Allow,
            host: "*".to_owned(),
        }
    }

    #[test]
    fn parses_with_defaults() {
        let acls = parse(
            r#"[{"principal": "User:acme", "resource_type": "group", "pattern_type": "prefixed",
                 "name": "acme.", "operations": ["read", "describe"]},
                {"principal": "User:*", "resource_type": "transactional_id", "name": "*",
                 "operations": ["all"], "permission": "deny"},
                {"principal": "User:ops", "resource_type": "cluster", "name": "kafka-cluster",
                 "operations": ["idempotent_write", "cluster_action", "describe_configs",
                                "alter_configs"]}]"#,
        )
        .unwrap();
        assert_eq!(acls[0].pattern_type, PatternType::Prefixed);
        assert_eq!(acls[0].permission, Permission::Allow);
        assert_eq!(acls[0].host, "*");
        assert_eq!(acls[1].resource_type, ResourceType::TransactionalId);
        assert_eq!(acls[1].pattern_type, PatternType::Literal);
        assert_eq!(acls[1].permission, Permission::Deny);
        assert_eq!(acls[2].operations[0], Operation::IdempotentWrite);
        assert!(
            validate_acls(&acls).is_empty(),
            "{:?}",
            validate_acls(&acls)
        );
    }

    #[test]
    fn rejects_unknown_fields_and_values() {
        let unknown = parse(
            r#"[{"principal": "User:a", "resource_type": "topic", "name": "t",
                 "operations": ["read"], "resource": "x"}]"#,
        )
        .unwrap_err();
        assert!(
            unknown.to_string().contains("unknown field `resource`"),
            "{unknown}"
        );
        let missing = parse(r#"[{"principal": "User:a", "resource_type": "topic", "name": "t"}]"#)
            .unwrap_err();
        assert!(
            missing.to_string().contains("missing field `operations`"),
            "{missing}"
        );
        let bad_op = parse(
            r#"[{"principal": "User:a", "resource_type": "topic", "name": "t",
                 "operations": ["produce"]}]"#,
        )
        .unwrap_err();
        assert!(
            bad_op.to_string().contains("unknown variant `produce`"),
            "{bad_op}"
        );
    }

    #[test]
    fn validate_names_each_problem() {
        let mut bad = entry("acme", ResourceType::Cluster, "cluster");
        bad.pattern_type = PatternType::Prefixed;
        bad.operations = vec![];
        bad.host = "10.0.0.1".to_owned();
        let errors = bad.validate();
        let keys: Vec<&str> = errors.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            keys,
            ["principal", "name", "pattern_type", "operations", "host"]
        );
        assert!(errors[0].1.contains("is not `User:<name>`"), "{errors:?}");
        assert!(errors[1].1.contains("named `kafka-cluster`"), "{errors:?}");
        assert!(errors[3].1.contains("at least one"), "{errors:?}");
        assert!(errors[4].1.contains("only `*`"), "{errors:?}");

        let read_cluster = entry("User:a", ResourceType::Cluster, CLUSTER_NAME);
        let errors = validate_acls(&[entry("User:a", ResourceType::Topic, "t"), read_cluster]);
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(errors[0].0, "log.acls[1].operations");
        assert!(
            errors[0].1.contains("`read` does not apply to a cluster"),
            "{errors:?}"
        );

        let mut star_prefix = entry("User:", ResourceType::Group, "*");
        star_prefix.pattern_type = PatternType::Prefixed;
        let errors = star_prefix.validate();
        assert_eq!(errors[0].0, "principal", "{errors:?}");
        assert!(errors[1].1.contains("prefixed `*`"), "{errors:?}");
        assert!(
            entry("User:*", ResourceType::Topic, "*")
                .validate()
                .is_empty()
        );
        assert!(
            !entry("User:a b", ResourceType::Topic, "t")
                .validate()
                .is_empty()
        );
    }

    #[test]
    fn wire_codes_round_trip() {
        for op in Operation::VALUES {
            assert_eq!(Operation::from_code(op.code()), Some(op));
        }
        assert_eq!(Operation::IdempotentWrite.code(), 12);
        assert_eq!(Operation::from_code(Operation::ANY_CODE), None);
        for rt in [
            ResourceType::Topic,
            ResourceType::Group,
            ResourceType::Cluster,
            ResourceType::TransactionalId,
        ] {
            assert_eq!(ResourceType::from_code(rt.code()), Some(rt));
        }
        assert_eq!(ResourceType::TransactionalId.code(), 5);
        assert_eq!(PatternType::Prefixed.code(), 4);
        assert_eq!(PatternType::from_code(PatternType::MATCH_CODE), None);
        assert_eq!(Permission::Allow.code(), 3);
        assert_eq!(Permission::from_code(2), Some(Permission::Deny));
    }
}
