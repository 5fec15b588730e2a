//! Who a Kafka connection acts as: a name and the role the authorizer ([`crate::acl`]) gives
//! it. Kafka spells a principal `User:<name>`.

use std::fmt;
use std::sync::Arc;

use headwater_log::security::USER_PREFIX;

/// What a principal is to the authorizer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    /// No authentication at all (SASL off, loopback only): trusted when the listener does not
    /// enforce ACLs, refused everything when it does.
    Anonymous,
    /// A tenant: produces to schema-governed topics; reads and uses groups only as configured
    /// ACLs allow.
    Tenant,
    /// A Headwater service (gateway, router) or another trusted program: every resource,
    /// narrowed only by configured deny entries.
    Service,
    /// An operator: a super user, never refused.
    Operator,
}

/// An authenticated (or anonymous) identity on the Kafka listener.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Principal {
    /// The user name (`acme` in `User:acme`); for a tenant, the tenant.
    pub name: Arc<str>,
    /// What the principal may do before configured ACLs.
    pub role: Role,
}

/// The name of the anonymous principal, as Kafka's `User:ANONYMOUS`.
pub const ANONYMOUS: &str = "ANONYMOUS";

impl Principal {
    /// A principal named `name` with `role`.
    pub fn new(name: impl Into<Arc<str>>, role: Role) -> Self {
        Self {
            name: name.into(),
            role,
        }
    }

    /// The principal of an unauthenticated connection, `User:ANONYMOUS`.
    pub fn anonymous() -> Self {
        Self::new(ANONYMOUS, Role::Anonymous)
    }

    /// The Kafka form, `User:<name>`.
    pub fn kafka_name(&self) -> String {
        format!("{USER_PREFIX}{}", self.name)
    }

    /// The tenant this principal is, for [`Role::Tenant`].
    pub fn tenant(&self) -> Option<&str> {
        (self.role == Role::Tenant).then_some(&*self.name)
    }
}

/// Prints the Kafka form, `User:<name>`.
impl fmt::Display for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{USER_PREFIX}{}", self.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kafka_forms() {
        let anonymous = Principal::anonymous();
        assert_eq!(anonymous.kafka_name(), "User:ANONYMOUS");
        assert_eq!(anonymous.role, Role::Anonymous);
        assert_eq!(anonymous.tenant(), None);
        let acme = Principal::new("acme", Role::Tenant);
        assert_eq!(acme.kafka_name(), "User:acme");
        assert_eq!(acme.to_string(), "User:acme");
        assert_eq!(acme.tenant(), Some("acme"));
        assert_eq!(Principal::new("router", Role::Service).tenant(), None);
    }
}
