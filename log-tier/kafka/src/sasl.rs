//! SASL/PLAIN on the Kafka listener: the credential seam ([`SaslAuthenticator`]), the PLAIN
//! token (RFC 4616), and each connection's handshake state.
//!
//! The flow, as Kafka brokers do it: ApiVersions may come first; SaslHandshake names the
//! mechanism (v1: the token follows in SaslAuthenticate requests; v0: as one raw
//! length-prefixed frame); after a good token every API is served. Any other request before
//! that, an unknown mechanism, a bad token or wrong credentials end the connection.

use std::collections::BTreeMap;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::{ApiKey, SaslAuthenticateResponse, SaslHandshakeResponse};
use kafka_protocol::protocol::StrBytes;
use subtle::ConstantTimeEq;

/// The only mechanism served.
pub const PLAIN: &str = "PLAIN";

/// Checks SASL/PLAIN credentials.
pub trait SaslAuthenticator: Send + Sync {
    /// The tenant `user` authenticates as with `password`, or `None` when refused.
    fn authenticate(&self, user: &str, password: &str) -> Option<String>;
}

/// In-memory credentials: user name (the tenant) → password, compared in constant time.
#[derive(Default)]
pub struct StaticCredentials {
    users: BTreeMap<String, Vec<u8>>,
}

impl StaticCredentials {
    /// Credentials from `(user, password)` pairs.
    pub fn new<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        let users = pairs
            .into_iter()
            .map(|(user, password)| (user.to_owned(), password.as_bytes().to_vec()))
            .collect();
        Self { users }
    }
}

impl SaslAuthenticator for StaticCredentials {
    fn authenticate(&self, user: &str, password: &str) -> Option<String> {
        let stored = self.users.get(user)?;
        bool::from(stored.as_slice().ct_eq(password.as_bytes())).then(|| user.to_owned())
    }
}

/// Why a SASL exchange failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SaslError {
    /// The token is not `authzid NUL user NUL password`.
    #[error("invalid SASL/PLAIN token: expected authzid, user and password separated by NUL")]
    Malformed,
    /// A part of the token is not UTF-8.
    #[error("invalid SASL/PLAIN token: not UTF-8")]
    NotUtf8,
    /// The user name or the password is empty.
    #[error("invalid SASL/PLAIN token: empty user name or password")]
    Empty,
    /// The client asked to act as someone else.
    #[error("the authorization id differs from the user name")]
    AuthzidMismatch,
    /// The authenticator refused the user and password.
    #[error("invalid username or password")]
    BadCredentials,
}

/// The user and password of a PLAIN token.
#[derive(Debug, PartialEq, Eq)]
pub struct PlainCredentials<'a> {
    /// Authentication identity (the tenant).
    pub user: &'a str,
    /// Password (the API key).
    pub password: &'a str,
}

/// Parses an RFC 4616 PLAIN token `[authzid] NUL authcid NUL passwd`; a non-empty authzid
/// must equal the user name (as Kafka requires).
pub fn parse_plain(token: &[u8]) -> Result<PlainCredentials<'_>, SaslError> {
    let mut parts = token.split(|b| *b == 0);
    let (Some(authzid), Some(user), Some(password), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(SaslError::Malformed);
    };
    let text = |bytes| std::str::from_utf8(bytes).map_err(|_| SaslError::NotUtf8);
    let (authzid, user, password) = (text(authzid)?, text(user)?, text(password)?);
    if user.is_empty() || password.is_empty() {
        return Err(SaslError::Empty);
    }
    if !authzid.is_empty() && authzid != user {
        return Err(SaslError::AuthzidMismatch);
    }
    Ok(PlainCredentials { user, password })
}

/// Where a connection is in the SASL exchange.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SaslState {
    /// SASL is off on this listener: every served API is open.
    Off,
    /// Waiting for SaslHandshake.
    Handshake,
    /// Handshake done: the token comes in SaslAuthenticate (`framed`, handshake v1) or as one
    /// raw frame (handshake v0).
    Token {
        /// Whether the token is wrapped in a SaslAuthenticate request.
        framed: bool,
    },
    /// Authenticated.
    Authenticated {
        /// The tenant the credentials map to.
        tenant: String,
    },
}

/// A request the current state does not allow; the connection closes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{api:?} is not allowed in SASL state {state}")]
pub struct Refused {
    /// The request's API.
    pub api: ApiKey,
    /// The state it arrived in.
    pub state: &'static str,
}

/// What follows an answer to a SASL request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum After {
    /// Keep serving the connection.
    Continue,
    /// Send the answer, then close (as Kafka does after a failed exchange).
    Close,
}

impl SaslState {
    /// The state a new connection starts in.
    pub fn new(required: bool) -> Self {
        if required { Self::Handshake } else { Self::Off }
    }

    /// Whether every API may be served (SASL off, or authenticated).
    pub fn is_open(&self) -> bool {
        matches!(self, Self::Off | Self::Authenticated { .. })
    }

    /// Whether the next frame is a raw token (after a v0 handshake) rather than a request.
    pub fn expects_raw_token(&self) -> bool {
        matches!(self, Self::Token { framed: false })
    }

    fn name(&self) -> &'static str {
        match self {
            Self::Off => "off",
            Self::Handshake => "handshake",
            Self::Token { .. } => "authenticate",
            Self::Authenticated { .. } => "authenticated",
        }
    }

    /// Whether a request of `api` may be served now.
    pub fn admit(&self, api: ApiKey) -> Result<(), Refused> {
        let sasl_api = matches!(api, ApiKey::SaslHandshake | ApiKey::SaslAuthenticate);
        let allowed = match self {
            Self::Off | Self::Authenticated { .. } => !sasl_api,
            Self::Handshake => matches!(api, ApiKey::ApiVersions | ApiKey::SaslHandshake),
            Self::Token { framed } => *framed && api == ApiKey::SaslAuthenticate,
        };
        if allowed {
            Ok(())
        } else {
            Err(Refused {
                api,
                state: self.name(),
            })
        }
    }

    /// Answers SaslHandshake `version` asking for `mechanism`: PLAIN moves on to the token,
    /// anything else gets UNSUPPORTED_SASL_MECHANISM and the connection closes.
    pub fn handshake(&mut self, mechanism: &str, version: i16) -> (SaslHandshakeResponse, After) {
        let mut response = SaslHandshakeResponse::default();
        response.mechanisms = vec![StrBytes::from_static_str(PLAIN)];
        if mechanism == PLAIN {
            *self = Self::Token {
                framed: version >= 1,
            };
            (response, After::Continue)
        } else {
            response.error_code = ResponseError::UnsupportedSaslMechanism.code();
            (response, After::Close)
        }
    }

    /// Checks a PLAIN token; on success the connection is authenticated as the tenant.
    pub fn authenticate(
        &mut self,
        token: &[u8],
        authenticator: &dyn SaslAuthenticator,
    ) -> Result<(), SaslError> {
        let credentials = parse_plain(token)?;
        let tenant = authenticator
            .authenticate(credentials.user, credentials.password)
            .ok_or(SaslError::BadCredentials)?;
        *self = Self::Authenticated { tenant };
        Ok(())
    }

    /// The authenticated tenant, if any.
    pub fn tenant(&self) -> Option<&str> {
        match self {
            Self::Authenticated { tenant } => Some(tenant),
            _ => None,
        }
    }

    /// Answers a SaslAuthenticate request, and says whether the connection goes on.
    pub fn authenticate_response(
        &mut self,
        token: &[u8],
        authenticator: &dyn SaslAuthenticator,
    ) -> (SaslAuthenticateResponse, After) {
        let mut response = SaslAuthenticateResponse::default();
        match self.authenticate(token, authenticator) {
            Ok(_) => (response, After::Continue),
            Err(error) => {
                response.error_code = ResponseError::SaslAuthenticationFailed.code();
                let message = format!("Authentication failed: {error}");
                response.error_message = Some(StrBytes::from_string(message));
                (response, After::Close)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn credentials() -> StaticCredentials {
        StaticCredentials::new([("acme", "secret-1")])
    }

    #[test]
    fn plain_tokens_parse_with_and_without_authzid() {
        let parsed = parse_plain(b"\0acme\0secret-1").unwrap();
        assert_eq!((parsed.user, parsed.password), ("acme", "secret-1"));
        assert_eq!(parse_plain(b"acme\0acme\0pw").unwrap().user, "acme");
        assert_eq!(
            parse_plain(b"root\0acme\0pw"),
            Err(SaslError::AuthzidMismatch)
        );
        for malformed in [&b""[..], b"acme", b"\0acme", b"a\0b\0c\0d", b"\0\0\0"] {
            assert_eq!(
                parse_plain(malformed),
                Err(SaslError::Malformed),
                "{malformed:?}"
            );
        }
        assert_eq!(parse_plain(b"\0\0pw"), Err(SaslError::Empty));
        assert_eq!(parse_plain(b"\0acme\0"), Err(SaslError::Empty));
        assert_eq!(parse_plain(b"\0ac\xffme\0pw"), Err(SaslError::NotUtf8));
    }

    #[test]
    fn handshake_then_authenticate_opens_the_connection() {
        let mut state = SaslState::new(true);
        assert!(state.admit(ApiKey::ApiVersions).is_ok());
        assert!(state.admit(ApiKey::Metadata).is_err());
        assert!(state.admit(ApiKey::SaslAuthenticate).is_err());
        let (response, after) = state.handshake(PLAIN, 1);
        assert_eq!((response.error_code, after), (0, After::Continue));
        assert_eq!(state, SaslState::Token { framed: true });
        assert!(state.admit(ApiKey::ApiVersions).is_err());
        assert!(state.admit(ApiKey::SaslHandshake).is_err());
        let (response, after) = state.authenticate_response(b"\0acme\0secret-1", &credentials());
        assert_eq!((response.error_code, after), (0, After::Continue));
        assert!(state.is_open());
        assert_eq!(
            state,
            SaslState::Authenticated {
                tenant: "acme".to_owned()
            }
        );
        assert!(state.admit(ApiKey::Produce).is_ok());
        assert!(
            state.admit(ApiKey::SaslHandshake).is_err(),
            "no re-authentication"
        );
    }

    #[test]
    fn v0_handshake_expects_a_raw_token() {
        let mut state = SaslState::new(true);
        state.handshake(PLAIN, 0);
        assert!(state.expects_raw_token());
        assert!(state.admit(ApiKey::SaslAuthenticate).is_err());
        assert_eq!(
            state.authenticate(b"\0acme\0secret-1", &credentials()),
            Ok(())
        );
        assert_eq!(state.tenant(), Some("acme"));
    }

    #[test]
    fn failures_close_the_connection() {
        let mut state = SaslState::new(true);
        let (response, after) = state.handshake("SCRAM-SHA-256", 1);
        assert_eq!(response.error_code, 33);
        assert_eq!(after, After::Close);
        let mut state = SaslState::new(true);
        state.handshake(PLAIN, 1);
        let (response, after) = state.authenticate_response(b"\0acme\0wrong", &credentials());
        assert_eq!((response.error_code, after), (58, After::Close));
        assert!(!state.is_open());
        let (_, after) = state.authenticate_response(b"\0nobody\0secret-1", &credentials());
        assert_eq!(after, After::Close);
        let (response, _) = state.authenticate_response(b"garbage", &credentials());
        assert!(
            response
                .error_message
                .unwrap()
                .contains("invalid SASL/PLAIN")
        );
    }

    #[test]
    fn sasl_off_serves_everything_but_sasl() {
        let state = SaslState::new(false);
        assert!(state.is_open());
        assert!(state.admit(ApiKey::Fetch).is_ok());
        assert!(state.admit(ApiKey::SaslHandshake).is_err());
    }

    proptest! {
        #[test]
        fn arbitrary_tokens_never_panic(token in proptest::collection::vec(any::<u8>(), 0..64)) {
            let mut state = SaslState::Token { framed: true };
            let (response, after) = state.authenticate_response(&token, &credentials());
            prop_assert_eq!(response.error_code == 0, after == After::Continue);
        }
    }
}
