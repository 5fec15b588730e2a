//! SASL on the Kafka listener: the credential seam ([`CredentialStore`]), the PLAIN token
//! (RFC 4616), SCRAM-SHA-256/512 (RFC 5802/7677, see [`crate::scram`]), and each connection's
//! handshake state.
//!
//! The flow, as Kafka brokers do it: ApiVersions may come first; SaslHandshake names the
//! mechanism (v1: the tokens follow in SaslAuthenticate requests; v0: as raw length-prefixed
//! frames, PLAIN only); after a good exchange every API is served as the authenticated
//! [`Principal`]. Any other request before that, an unknown mechanism, a bad token or wrong
//! credentials end the connection.

use std::collections::BTreeMap;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::{ApiKey, SaslAuthenticateResponse, SaslHandshakeResponse};
use kafka_protocol::protocol::StrBytes;
use subtle::ConstantTimeEq;

use crate::principal::{Principal, Role};
use crate::scram::{self, ScramError, ServerExchange, StoredCredential};

/// The PLAIN mechanism's name.
pub const PLAIN: &str = "PLAIN";

/// A SASL mechanism the listener can serve.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mechanism {
    /// PLAIN (RFC 4616): the password crosses the connection, so TLS or loopback only.
    Plain,
    /// SCRAM-SHA-256 or SCRAM-SHA-512.
    Scram(scram::Mechanism),
}

impl Mechanism {
    /// Every mechanism, SCRAM first.
    pub const ALL: [Self; 3] = [
        Self::Scram(scram::Mechanism::Sha256),
        Self::Scram(scram::Mechanism::Sha512),
        Self::Plain,
    ];

    /// The name in SaslHandshake.
    pub fn name(self) -> &'static str {
        match self {
            Self::Plain => PLAIN,
            Self::Scram(m) => m.name(),
        }
    }

    /// The mechanism called `name`.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.name() == name)
    }
}

/// Who the listener's credentials belong to.
pub trait CredentialStore: Send + Sync {
    /// The principal `user` authenticates as with the PLAIN `password`, or `None` when
    /// refused. Compare secrets in constant time.
    fn plain(&self, user: &str, password: &str) -> Option<Principal>;

    /// The stored SCRAM credential of `user` for `mechanism`.
    fn scram(&self, mechanism: scram::Mechanism, user: &str) -> Option<StoredCredential>;

    /// The principal of `user` after a successful SCRAM exchange.
    fn principal(&self, user: &str) -> Option<Principal>;
}

/// In-memory credentials, for tests and small setups: PLAIN passwords (compared in constant
/// time) and SCRAM credentials, each user with a role.
#[derive(Default)]
pub struct StaticCredentials {
    plain: BTreeMap<String, (Vec<u8>, Role)>,
    scram: BTreeMap<(String, &'static str), StoredCredential>,
    roles: BTreeMap<String, Role>,
}

impl StaticCredentials {
    /// Tenants with PLAIN passwords, from `(user, password)` pairs.
    pub fn new<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        let mut credentials = Self::default();
        for (user, password) in pairs {
            credentials = credentials.with_plain(user, password, Role::Tenant);
        }
        credentials
    }

    /// Adds a PLAIN user with `role`.
    pub fn with_plain(mut self, user: &str, password: &str, role: Role) -> Self {
        self.plain
            .insert(user.to_owned(), (password.as_bytes().to_vec(), role));
        self.roles.insert(user.to_owned(), role);
        self
    }

    /// Adds a SCRAM credential of `user` with `role`.
    pub fn with_scram(mut self, user: &str, credential: StoredCredential, role: Role) -> Self {
        let name = credential.mechanism().name();
        self.scram.insert((user.to_owned(), name), credential);
        self.roles.insert(user.to_owned(), role);
        self
    }
}

impl CredentialStore for StaticCredentials {
    fn plain(&self, user: &str, password: &str) -> Option<Principal> {
        let (stored, role) = self.plain.get(user)?;
        bool::from(stored.as_slice().ct_eq(password.as_bytes()))
            .then(|| Principal::new(user, *role))
    }

    fn scram(&self, mechanism: scram::Mechanism, user: &str) -> Option<StoredCredential> {
        self.scram
            .get(&(user.to_owned(), mechanism.name()))
            .cloned()
    }

    fn principal(&self, user: &str) -> Option<Principal> {
        self.roles.get(user).map(|role| Principal::new(user, *role))
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
    /// The credentials were refused.
    #[error("invalid username or password")]
    BadCredentials,
    /// The SCRAM exchange failed.
    #[error("{0}")]
    Scram(#[from] ScramError),
    /// A token arrived where the exchange did not expect one.
    #[error("unexpected SASL token")]
    Unexpected,
}

/// The user and password of a PLAIN token.
#[derive(Debug, PartialEq, Eq)]
pub struct PlainCredentials<'a> {
    /// Authentication identity.
    pub user: &'a str,
    /// Password (for a tenant, one of its API keys).
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
#[derive(Debug)]
pub enum SaslState {
    /// SASL is off on this listener: every served API is open.
    Off,
    /// Waiting for SaslHandshake.
    Handshake,
    /// Handshake done: the first token comes in SaslAuthenticate (`framed`, handshake v1) or
    /// as one raw frame (handshake v0, PLAIN only).
    Token {
        /// Whether the token is wrapped in a SaslAuthenticate request.
        framed: bool,
        /// The mechanism chosen.
        mechanism: Mechanism,
    },
    /// SCRAM: server-first sent, waiting for the client-final message.
    ScramFinal(Box<ServerExchange>),
    /// Authenticated.
    Authenticated {
        /// Who the credentials belong to.
        principal: Principal,
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
        matches!(self, Self::Token { framed: false, .. })
    }

    fn name(&self) -> &'static str {
        match self {
            Self::Off => "off",
            Self::Handshake => "handshake",
            Self::Token { .. } | Self::ScramFinal(_) => "authenticate",
            Self::Authenticated { .. } => "authenticated",
        }
    }

    /// Whether a request of `api` may be served now.
    pub fn admit(&self, api: ApiKey) -> Result<(), Refused> {
        let sasl_api = matches!(api, ApiKey::SaslHandshake | ApiKey::SaslAuthenticate);
        let allowed = match self {
            Self::Off | Self::Authenticated { .. } => !sasl_api,
            Self::Handshake => matches!(api, ApiKey::ApiVersions | ApiKey::SaslHandshake),
            Self::Token { framed, .. } => *framed && api == ApiKey::SaslAuthenticate,
            Self::ScramFinal(_) => api == ApiKey::SaslAuthenticate,
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

    /// Answers SaslHandshake `version` asking for `name`: an offered mechanism moves on to
    /// the token, anything else gets UNSUPPORTED_SASL_MECHANISM and the connection closes.
    /// SCRAM needs handshake v1 (its tokens travel in SaslAuthenticate).
    pub fn handshake(
        &mut self,
        name: &str,
        version: i16,
        offered: &[Mechanism],
    ) -> (SaslHandshakeResponse, After) {
        let mut response = SaslHandshakeResponse::default();
        response.mechanisms = offered
            .iter()
            .map(|m| StrBytes::from_static_str(m.name()))
            .collect();
        let chosen = Mechanism::from_name(name).filter(|m| offered.contains(m));
        match chosen {
            Some(mechanism) if version >= 1 || mechanism == Mechanism::Plain => {
                *self = Self::Token {
                    framed: version >= 1,
                    mechanism,
                };
                (response, After::Continue)
            }
            _ => {
                response.error_code = ResponseError::UnsupportedSaslMechanism.code();
                (response, After::Close)
            }
        }
    }

    /// Takes one client token: checks a PLAIN token, or advances the SCRAM exchange. Returns
    /// the server's token (empty for PLAIN and raw frames).
    pub fn authenticate(
        &mut self,
        token: &[u8],
        store: &dyn CredentialStore,
    ) -> Result<Vec<u8>, SaslError> {
        match std::mem::replace(self, Self::Handshake) {
            Self::Token {
                mechanism: Mechanism::Plain,
                ..
            } => {
                let credentials = parse_plain(token)?;
                let principal = store
                    .plain(credentials.user, credentials.password)
                    .ok_or(SaslError::BadCredentials)?;
                *self = Self::Authenticated { principal };
                Ok(Vec::new())
            }
            Self::Token {
                mechanism: Mechanism::Scram(mechanism),
                ..
            } => {
                let mut exchange = Box::new(ServerExchange::new(mechanism));
                let server_first =
                    exchange.client_first(token, |user| store.scram(mechanism, user))?;
                *self = Self::ScramFinal(exchange);
                Ok(server_first)
            }
            Self::ScramFinal(mut exchange) => {
                let (user, server_final) = exchange.client_final(token)?;
                let principal = store.principal(&user).ok_or(SaslError::BadCredentials)?;
                *self = Self::Authenticated { principal };
                Ok(server_final)
            }
            other => {
                *self = other;
                Err(SaslError::Unexpected)
            }
        }
    }

    /// The authenticated principal, if any.
    pub fn principal(&self) -> Option<&Principal> {
        match self {
            Self::Authenticated { principal } => Some(principal),
            _ => None,
        }
    }

    /// Answers a SaslAuthenticate request, and says whether the connection goes on.
    pub fn authenticate_response(
        &mut self,
        token: &[u8],
        store: &dyn CredentialStore,
    ) -> (SaslAuthenticateResponse, After) {
        let mut response = SaslAuthenticateResponse::default();
        match self.authenticate(token, store) {
            Ok(server_token) => {
                response.auth_bytes = server_token.into();
                (response, After::Continue)
            }
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
        let scram =
            StoredCredential::derive(scram::Mechanism::Sha512, "s3cret", 4096, b"salt").unwrap();
        StaticCredentials::new([("acme", "secret-1")]).with_scram("router", scram, Role::Service)
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
        let (response, after) = state.handshake(PLAIN, 1, &Mechanism::ALL);
        assert_eq!((response.error_code, after), (0, After::Continue));
        assert_eq!(response.mechanisms.len(), 3);
        assert!(matches!(
            state,
            SaslState::Token {
                framed: true,
                mechanism: Mechanism::Plain
            }
        ));
        assert!(state.admit(ApiKey::ApiVersions).is_err());
        assert!(state.admit(ApiKey::SaslHandshake).is_err());
        let (response, after) = state.authenticate_response(b"\0acme\0secret-1", &credentials());
        assert_eq!((response.error_code, after), (0, After::Continue));
        assert!(state.is_open());
        assert_eq!(
            state.principal(),
            Some(&Principal::new("acme", Role::Tenant))
        );
        assert!(state.admit(ApiKey::Produce).is_ok());
        assert!(
            state.admit(ApiKey::SaslHandshake).is_err(),
            "no re-authentication"
        );
    }

    #[test]
    fn v0_handshake_expects_a_raw_plain_token_and_refuses_scram() {
        let mut state = SaslState::new(true);
        state.handshake(PLAIN, 0, &Mechanism::ALL);
        assert!(state.expects_raw_token());
        assert!(state.admit(ApiKey::SaslAuthenticate).is_err());
        assert_eq!(
            state.authenticate(b"\0acme\0secret-1", &credentials()),
            Ok(Vec::new())
        );
        assert_eq!(state.principal().map(|p| &*p.name), Some("acme"));
        let mut state = SaslState::new(true);
        let (response, after) = state.handshake("SCRAM-SHA-512", 0, &Mechanism::ALL);
        assert_eq!((response.error_code, after), (33, After::Close));
    }

    /// The client side of SCRAM, written out for the test.
    fn client_final(server_first: &str, client_first_bare: &str, password: &[u8]) -> String {
        use base64::Engine as _;
        use hmac::{Hmac, Mac};
        use sha2::{Digest, Sha512};
        let b64 = base64::engine::general_purpose::STANDARD;
        let fields: BTreeMap<&str, &str> = server_first
            .split(',')
            .filter_map(|f| f.split_once('='))
            .collect();
        let salt = b64.decode(fields["s"]).unwrap();
        let iterations: u32 = fields["i"].parse().unwrap();
        let mut salted = [0u8; 64];
        pbkdf2::pbkdf2_hmac::<Sha512>(password, &salt, iterations, &mut salted);
        let hmac = |key: &[u8], data: &[u8]| {
            let mut mac = Hmac::<Sha512>::new_from_slice(key).unwrap();
            mac.update(data);
            mac.finalize().into_bytes().to_vec()
        };
        let client_key = hmac(&salted, b"Client Key");
        let stored_key = Sha512::digest(&client_key);
        let without_proof = format!("c=biws,r={}", fields["r"]);
        let auth = format!("{client_first_bare},{server_first},{without_proof}");
        let signature = hmac(&stored_key, auth.as_bytes());
        let proof: Vec<u8> = client_key
            .iter()
            .zip(signature)
            .map(|(a, b)| a ^ b)
            .collect();
        format!("{without_proof},p={}", b64.encode(proof))
    }

    #[test]
    fn scram_authenticates_a_service_in_two_round_trips() {
        for (password, ok) in [(&b"s3cret"[..], true), (b"wrong", false)] {
            let mut state = SaslState::new(true);
            let (response, _) = state.handshake("SCRAM-SHA-512", 1, &Mechanism::ALL);
            assert_eq!(response.error_code, 0);
            let bare = "n=router,r=abcdefghijklmnop";
            let (first, after) =
                state.authenticate_response(format!("n,,{bare}").as_bytes(), &credentials());
            assert_eq!((first.error_code, after), (0, After::Continue));
            assert!(!state.is_open());
            assert!(state.admit(ApiKey::SaslAuthenticate).is_ok());
            let server_first = String::from_utf8(first.auth_bytes.to_vec()).unwrap();
            let last = client_final(&server_first, bare, password);
            let (done, after) = state.authenticate_response(last.as_bytes(), &credentials());
            if ok {
                assert_eq!((done.error_code, after), (0, After::Continue));
                assert!(done.auth_bytes.starts_with(b"v="));
                assert_eq!(
                    state.principal(),
                    Some(&Principal::new("router", Role::Service))
                );
            } else {
                assert_eq!((done.error_code, after), (58, After::Close));
                assert!(!state.is_open());
            }
        }
    }

    #[test]
    fn failures_close_the_connection() {
        let mut state = SaslState::new(true);
        let (response, after) = state.handshake("GSSAPI", 1, &Mechanism::ALL);
        assert_eq!(response.error_code, 33);
        assert_eq!(after, After::Close);
        let mut state = SaslState::new(true);
        let (response, _) =
            state.handshake(PLAIN, 1, &[Mechanism::Scram(scram::Mechanism::Sha256)]);
        assert_eq!(response.error_code, 33, "PLAIN not offered");
        let mut state = SaslState::new(true);
        state.handshake(PLAIN, 1, &Mechanism::ALL);
        let (response, after) = state.authenticate_response(b"\0acme\0wrong", &credentials());
        assert_eq!((response.error_code, after), (58, After::Close));
        assert!(!state.is_open());
        let mut state = SaslState::new(true);
        state.handshake(PLAIN, 1, &Mechanism::ALL);
        let (_, after) = state.authenticate_response(b"\0nobody\0secret-1", &credentials());
        assert_eq!(after, After::Close);
        let mut state = SaslState::new(true);
        state.handshake(PLAIN, 1, &Mechanism::ALL);
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
        fn arbitrary_tokens_never_panic(token in proptest::collection::vec(any::<u8>(), 0..64), scram: bool) {
            let mechanism = if scram { Mechanism::Scram(scram::Mechanism::Sha256) } else { Mechanism::Plain };
            let mut state = SaslState::Token { framed: true, mechanism };
            let (response, after) = state.authenticate_response(&token, &credentials());
            prop_assert_eq!(response.error_code == 0, after == After::Continue);
            let (response, after) = state.authenticate_response(&token, &credentials());
            prop_assert_eq!(response.error_code == 0, after == After::Continue);
        }
    }
}
