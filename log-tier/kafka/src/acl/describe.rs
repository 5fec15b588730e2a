//! DescribeAcls: the configured and built-in entries a filter selects, filtered as Kafka's
//! `ResourcePatternFilter` and `AccessControlEntryFilter` do.

use std::collections::{BTreeMap, BTreeSet};

use headwater_log::security::{
    AclEntry, CLUSTER_NAME, Operation, PatternType, Permission, ResourceType, WILDCARD,
};
use kafka_protocol::ResponseError;
use kafka_protocol::messages::describe_acls_response::{AclDescription, DescribeAclsResource};
use kafka_protocol::messages::{DescribeAclsRequest, DescribeAclsResponse};
use kafka_protocol::protocol::StrBytes;

use super::Authorizer;
use crate::principal::Principal;

impl Authorizer {
    /// The DescribeAcls answer: the configured and built-in entries matching the request's
    /// filter, as Kafka filters them. Needs cluster Describe (else
    /// `CLUSTER_AUTHORIZATION_FAILED`); an `UNKNOWN` or invalid filter code is
    /// `INVALID_REQUEST`.
    pub fn describe_acls(
        &self,
        principal: &Principal,
        request: &DescribeAclsRequest,
    ) -> DescribeAclsResponse {
        if !self.allows(
            principal,
            ResourceType::Cluster,
            CLUSTER_NAME,
            Operation::Describe,
        ) {
            return describe_error(
                ResponseError::ClusterAuthorizationFailed,
                format!("{principal} may not describe ACLs: it needs describe on the cluster"),
            );
        }
        let filter = match Filter::parse(request) {
            Ok(filter) => filter,
            Err(message) => return describe_error(ResponseError::InvalidRequest, message),
        };
        let governed = self
            .options
            .governed_topic_names
            .as_ref()
            .map(|names| names())
            .unwrap_or_default()
            .into_iter()
            .chain(filter.name.clone())
            .collect::<BTreeSet<String>>()
            .into_iter()
            .collect::<Vec<_>>();
        let builtin = self.builtin_entries_with(&governed);
        type Key = (i8, String, i8);
        let mut found: BTreeMap<Key, BTreeSet<(String, String, i8, i8)>> = BTreeMap::new();
        for entry in self.options.entries.iter().chain(&builtin) {
            if !filter.selects(entry) {
                continue;
            }
            for op in &entry.operations {
                if filter.describes(entry, *op) {
                    let key = (
                        entry.resource_type.code(),
                        entry.name.clone(),
                        entry.pattern_type.code(),
                    );
                    let ace = (
                        entry.principal.clone(),
                        entry.host.clone(),
                        op.code(),
                        entry.permission.code(),
                    );
                    found.entry(key).or_default().insert(ace);
                }
            }
        }
        let resources = found
            .into_iter()
            .map(|((resource_type, name, pattern_type), aces)| {
                let acls = aces
                    .into_iter()
                    .map(|(principal, host, operation, permission)| {
                        AclDescription::default()
                            .with_principal(StrBytes::from_string(principal))
                            .with_host(StrBytes::from_string(host))
                            .with_operation(operation)
                            .with_permission_type(permission)
                    })
                    .collect();
                DescribeAclsResource::default()
                    .with_resource_type(resource_type)
                    .with_resource_name(StrBytes::from_string(name))
                    .with_pattern_type(pattern_type)
                    .with_acls(acls)
            })
            .collect();
        DescribeAclsResponse::default().with_resources(resources)
    }
}

/// A DescribeAcls answer carrying only `error` and `message`.
fn describe_error(error: ResponseError, message: String) -> DescribeAclsResponse {
    DescribeAclsResponse::default()
        .with_error_code(error.code())
        .with_error_message(Some(StrBytes::from_string(message)))
}

/// One field of a filter: any value, one value, or a valid Kafka value this broker never
/// stores (nothing matches).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field<T> {
    Any,
    Is(T),
    Never,
}

impl<T: PartialEq> Field<T> {
    fn accepts(&self, value: T) -> bool {
        match self {
            Self::Any => true,
            Self::Is(wanted) => *wanted == value,
            Self::Never => false,
        }
    }
}

/// A resource pattern filter's pattern type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PatternFilter {
    /// Names compared as they are, whatever the pattern type.
    Any,
    /// Entries that apply to the named resource.
    Match,
    /// Entries of this pattern type, names compared as they are.
    Is(PatternType),
}

/// A DescribeAcls filter, decoded.
#[derive(Debug)]
struct Filter {
    resource_type: Field<ResourceType>,
    pattern: PatternFilter,
    name: Option<String>,
    principal: Option<String>,
    host: Option<String>,
    operation: Field<Operation>,
    permission: Field<Permission>,
}

impl Filter {
    /// The filter of `request`, or why it is invalid.
    fn parse(request: &DescribeAclsRequest) -> Result<Self, String> {
        let resource_type = match request.resource_type_filter {
            ResourceType::ANY_CODE => Field::Any,
            // DelegationToken (6) and User (7): valid, never stored.
            6 | 7 => Field::Never,
            code => ResourceType::from_code(code)
                .map(Field::Is)
                .ok_or_else(|| format!("invalid resource type filter {code}"))?,
        };
        let pattern = match request.pattern_type_filter {
            PatternType::ANY_CODE => PatternFilter::Any,
            PatternType::MATCH_CODE => PatternFilter::Match,
            code => PatternType::from_code(code)
                .map(PatternFilter::Is)
                .ok_or_else(|| format!("invalid pattern type filter {code}"))?,
        };
        let operation = match request.operation {
            Operation::ANY_CODE => Field::Any,
            // CreateTokens (13) and DescribeTokens (14): valid, never stored.
            13 | 14 => Field::Never,
            code => Operation::from_code(code)
                .map(Field::Is)
                .ok_or_else(|| format!("invalid operation filter {code}"))?,
        };
        let permission = match request.permission_type {
            Permission::ANY_CODE => Field::Any,
            code => Permission::from_code(code)
                .map(Field::Is)
                .ok_or_else(|| format!("invalid permission type filter {code}"))?,
        };
        let text = |value: &Option<StrBytes>| value.as_ref().map(|s| s.as_str().to_owned());
        Ok(Self {
            resource_type,
            pattern,
            name: text(&request.resource_name_filter),
            principal: text(&request.principal_filter),
            host: text(&request.host_filter),
            operation,
            permission,
        })
    }

    /// Whether the resource pattern of `entry` passes, as Kafka's `ResourcePatternFilter`.
    fn selects(&self, entry: &AclEntry) -> bool {
        if !self.resource_type.accepts(entry.resource_type) {
            return false;
        }
        if let PatternFilter::Is(pattern) = self.pattern
            && pattern != entry.pattern_type
        {
            return false;
        }
        let Some(name) = &self.name else {
            return true;
        };
        match (self.pattern, entry.pattern_type) {
            (PatternFilter::Any | PatternFilter::Is(_), _) => *name == entry.name,
            (PatternFilter::Match, PatternType::Literal) => {
                *name == entry.name || entry.name == WILDCARD
            }
            (PatternFilter::Match, PatternType::Prefixed) => name.starts_with(entry.name.as_str()),
        }
    }

    /// Whether `operation` of `entry` passes, as Kafka's `AccessControlEntryFilter`.
    fn describes(&self, entry: &AclEntry, operation: Operation) -> bool {
        self.principal
            .as_ref()
            .is_none_or(|p| *p == entry.principal)
            && self.host.as_ref().is_none_or(|h| *h == entry.host)
            && self.operation.accepts(operation)
            && self.permission.accepts(entry.permission)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::acl::AuthorizerOptions;
    use crate::acl::tests::*;

    /// A DescribeAcls request matching everything, to narrow with `with_*`.
    fn any_filter() -> DescribeAclsRequest {
        DescribeAclsRequest::default()
            .with_resource_type_filter(ResourceType::ANY_CODE)
            .with_resource_name_filter(None)
            .with_pattern_type_filter(PatternType::ANY_CODE)
            .with_principal_filter(None)
            .with_host_filter(None)
            .with_operation(Operation::ANY_CODE)
            .with_permission_type(Permission::ANY_CODE)
    }

    /// `(type, name, pattern, principal, operation, permission)` of every description.
    fn flatten(response: &DescribeAclsResponse) -> Vec<(i8, String, i8, String, i8, i8)> {
        assert_eq!(response.error_code, 0, "{:?}", response.error_message);
        let mut rows = Vec::new();
        for resource in &response.resources {
            for ace in &resource.acls {
                assert_eq!(ace.host.as_str(), "*");
                rows.push((
                    resource.resource_type,
                    resource.resource_name.as_str().to_owned(),
                    resource.pattern_type,
                    ace.principal.as_str().to_owned(),
                    ace.operation,
                    ace.permission_type,
                ));
            }
        }
        rows
    }

    fn describe_fixture() -> Authorizer {
        authorizer(vec![
            prefixed(acl("User:acme", GROUP, "acme.", &[Operation::Read])),
            acl(
                "User:acme",
                TOPIC,
                "logs",
                &[Operation::Read, Operation::Describe],
            ),
            deny(acl("User:*", TOPIC, "secret", &[Operation::All])),
            acl("User:ops", CLUSTER, CLUSTER_NAME, &[Operation::Describe]),
        ])
    }

    #[test]
    fn describe_needs_cluster_describe() {
        let auth = describe_fixture();
        let refused = auth.describe_acls(&acme(), &any_filter());
        assert_eq!(refused.error_code, 31);
        assert!(refused.resources.is_empty());
        let message = refused
            .error_message
            .as_ref()
            .map(|m| m.as_str().to_owned());
        assert_eq!(
            message.as_deref(),
            Some("User:acme may not describe ACLs: it needs describe on the cluster")
        );
        assert_eq!(
            auth.describe_acls(&Principal::anonymous(), &any_filter())
                .error_code,
            31
        );
        assert_eq!(auth.describe_acls(&router(), &any_filter()).error_code, 0);
        let granted = authorizer(vec![acl(
            "User:acme",
            CLUSTER,
            CLUSTER_NAME,
            &[Operation::Describe],
        )]);
        assert_eq!(granted.describe_acls(&acme(), &any_filter()).error_code, 0);
        let open = Authorizer::open();
        assert_eq!(
            open.describe_acls(&Principal::anonymous(), &any_filter())
                .error_code,
            0
        );
    }

    #[test]
    fn describe_lists_configured_and_builtin_entries() {
        let auth = describe_fixture();
        assert_eq!(auth.entries().len(), 4);
        let rows = flatten(&auth.describe_acls(&ops(), &any_filter()));
        let configured = (3, "acme.".to_owned(), 4, "User:acme".to_owned(), 3, 3);
        assert!(rows.contains(&configured), "{rows:?}");
        let governed = (2, "events".to_owned(), 3, "User:acme".to_owned(), 4, 3);
        assert!(rows.contains(&governed), "{rows:?}");
        let reserved = (2, "router.".to_owned(), 4, "User:acme".to_owned(), 2, 2);
        assert!(rows.contains(&reserved), "{rows:?}");
        let service = (5, "*".to_owned(), 3, "User:router".to_owned(), 2, 3);
        assert!(rows.contains(&service), "{rows:?}");
        assert!(
            !rows.iter().any(|row| row.3 == "User:ANONYMOUS"),
            "{rows:?}"
        );
        // Two operations of one entry, two descriptions of one resource.
        let logs: Vec<_> = rows.iter().filter(|row| row.1 == "logs").collect();
        assert_eq!(logs.len(), 2, "{rows:?}");
    }

    #[test]
    fn describe_filters_by_type_principal_and_permission() {
        let auth = describe_fixture();
        let groups = any_filter().with_resource_type_filter(GROUP.code());
        let rows = flatten(&auth.describe_acls(&ops(), &groups));
        assert!(rows.iter().all(|row| row.0 == GROUP.code()), "{rows:?}");
        assert!(rows.iter().any(|row| row.1 == "acme."), "{rows:?}");

        let by_principal =
            any_filter().with_principal_filter(Some(StrBytes::from_static_str("User:acme")));
        let rows = flatten(&auth.describe_acls(&ops(), &by_principal));
        assert!(rows.iter().all(|row| row.3 == "User:acme"), "{rows:?}");
        assert!(rows.iter().any(|row| row.1 == "logs"), "{rows:?}");

        let denies = any_filter()
            .with_principal_filter(Some(StrBytes::from_static_str("User:*")))
            .with_permission_type(Permission::Deny.code());
        let rows = flatten(&auth.describe_acls(&ops(), &denies));
        assert_eq!(
            rows,
            [(2, "secret".to_owned(), 3, "User:*".to_owned(), 2, 2)]
        );

        let reads = any_filter()
            .with_operation(Operation::Read.code())
            .with_resource_type_filter(TOPIC.code());
        let rows = flatten(&auth.describe_acls(&ops(), &reads));
        assert_eq!(
            rows,
            [(2, "logs".to_owned(), 3, "User:acme".to_owned(), 3, 3)]
        );

        let tokens = any_filter().with_resource_type_filter(6);
        assert!(flatten(&auth.describe_acls(&ops(), &tokens)).is_empty());
        let unknown = any_filter().with_pattern_type_filter(0);
        assert_eq!(auth.describe_acls(&ops(), &unknown).error_code, 42);
        let garbage = any_filter().with_operation(99);
        assert_eq!(auth.describe_acls(&ops(), &garbage).error_code, 42);
    }

    #[test]
    fn describe_pattern_filters_as_kafka() {
        let auth = describe_fixture();
        let named = |pattern: i8, name: &'static str| {
            any_filter()
                .with_pattern_type_filter(pattern)
                .with_resource_name_filter(Some(StrBytes::from_static_str(name)))
        };
        // Match: every entry that applies to the named resource.
        let rows =
            flatten(&auth.describe_acls(&ops(), &named(PatternType::MATCH_CODE, "acme.reader")));
        let names: BTreeSet<&str> = rows.iter().map(|row| row.1.as_str()).collect();
        assert_eq!(names, BTreeSet::from(["acme.", "*"]), "{rows:?}");
        let rows =
            flatten(&auth.describe_acls(&ops(), &named(PatternType::MATCH_CODE, "router.lake")));
        assert!(
            rows.contains(&(2, "router.".to_owned(), 4, "User:acme".to_owned(), 2, 2)),
            "{rows:?}"
        );
        assert!(
            rows.contains(&(3, "router.".to_owned(), 4, "User:acme".to_owned(), 2, 2)),
            "{rows:?}"
        );
        assert!(
            rows.contains(&(2, "*".to_owned(), 3, "User:router".to_owned(), 2, 3)),
            "{rows:?}"
        );
        // Prefixed and Any: names compared as they are.
        let rows = flatten(
            &auth.describe_acls(&ops(), &named(PatternType::Prefixed.code(), "acme.reader")),
        );
        assert!(rows.is_empty(), "{rows:?}");
        let rows =
            flatten(&auth.describe_acls(&ops(), &named(PatternType::Prefixed.code(), "acme.")));
        assert_eq!(
            rows,
            [(3, "acme.".to_owned(), 4, "User:acme".to_owned(), 3, 3)]
        );
        let rows = flatten(&auth.describe_acls(&ops(), &named(PatternType::ANY_CODE, "logs")));
        assert_eq!(rows.len(), 2, "{rows:?}");
        let rows = flatten(&auth.describe_acls(&ops(), &named(PatternType::Literal.code(), "*")));
        assert!(
            rows.iter().all(|row| row.1 == "*" && row.2 == 3),
            "{rows:?}"
        );
        assert!(!rows.is_empty());
    }

    #[test]
    fn describe_lists_a_named_governed_topic_without_a_name_list() {
        let auth = Authorizer::new(AuthorizerOptions {
            entries: vec![],
            enforced: true,
            governed_topics: Arc::new(|topic| topic.starts_with("events")),
            governed_topic_names: None,
            known_principals: vec![acme()],
        });
        let all = auth.describe_acls(&ops(), &any_filter());
        assert!(!flatten(&all).iter().any(|row| row.1.starts_with("events")));
        let named = any_filter()
            .with_resource_name_filter(Some(StrBytes::from_static_str("events.a")))
            .with_pattern_type_filter(PatternType::MATCH_CODE);
        let rows = flatten(&auth.describe_acls(&ops(), &named));
        let write = (2, "events.a".to_owned(), 3, "User:acme".to_owned(), 4, 3);
        assert!(rows.contains(&write), "{rows:?}");
        // The other rows applying to `events.a`: the tenants' denies on every topic.
        assert!(
            rows.iter()
                .all(|row| *row == write || (row.1 == "*" && row.5 == 2)),
            "{rows:?}"
        );
    }

    #[test]
    fn builtin_entries_are_valid_kafka_entries() {
        let auth = describe_fixture();
        let entries = auth.builtin_entries();
        assert!(!entries.is_empty());
        for entry in &entries {
            assert!(
                entry.validate().is_empty(),
                "{entry:?}: {:?}",
                entry.validate()
            );
        }
    }
}
