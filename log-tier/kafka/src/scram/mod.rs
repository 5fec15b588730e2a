//! SCRAM-SHA-256 and SCRAM-SHA-512 (RFC 5802, RFC 7677) for the Kafka listener, sans-I/O: the
//! stored credential that configuration holds (never a password), and the server side of the
//! exchange, fed the client's SaslAuthenticate bytes and answering the bytes to send back.
//!
//! As Kafka brokers do: no channel binding (gs2 header `n,,` or `y,,`), an authzid must equal
//! the user, user names and passwords are used as UTF-8 without SASLprep, stored iterations are
//! 4096 to 16384, and the `tokenauth` extension (delegation tokens) is refused. Unlike Kafka, an
//! unknown user is not told so early: it gets a server-first message with a fake salt derived
//! from its name and fails at the client-final message with the wrong-password error (RFC 5802
//! §5.1).
//!
//! The credential text form ([`StoredCredential`]'s `Display` and `FromStr`) is the mechanism
//! name, a colon, then Kafka's own form (`ScramCredentialUtils`, as `kafka-configs` shows it),
//! base64 with padding:
//!
//! ```text
//! SCRAM-SHA-512:salt=<base64>,stored_key=<base64>,server_key=<base64>,iterations=4096
//! ```
//!
//! [`StoredCredential`] and its text form live in `credential.rs`, [`ServerExchange`] in
//! `exchange.rs`; this module holds the [`Mechanism`], its hash functions and [`ScramError`].

mod credential;
mod exchange;

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256, Sha512};

pub use credential::StoredCredential;
pub use exchange::ServerExchange;

/// Fewest iterations a stored credential may have (Kafka's `ScramMechanism` minimum).
pub const MIN_ITERATIONS: u32 = 4096;
/// Most iterations a stored credential may have (Kafka's `ScramControlManager` maximum).
pub const MAX_ITERATIONS: u32 = 16384;
/// Iterations of a generated credential, and of the fake answer to an unknown user.
pub const DEFAULT_ITERATIONS: u32 = 4096;
/// Largest client message accepted, in bytes; real ones are well under 1 KiB.
pub const MAX_MESSAGE_BYTES: usize = 4096;
/// Salt length of a generated credential, in bytes.
const SALT_BYTES: usize = 32;
/// Random bytes of the server nonce (RFC 5802 asks for at least 18 in base64).
const SERVER_NONCE_BYTES: usize = 24;

/// A SCRAM mechanism, as named in SaslHandshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mechanism {
    /// `SCRAM-SHA-256` (RFC 7677).
    Sha256,
    /// `SCRAM-SHA-512`.
    Sha512,
}

impl Mechanism {
    /// Every mechanism served.
    pub const ALL: [Self; 2] = [Self::Sha256, Self::Sha512];

    /// The SASL mechanism name, `SCRAM-SHA-256` or `SCRAM-SHA-512`.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Sha256 => "SCRAM-SHA-256",
            Self::Sha512 => "SCRAM-SHA-512",
        }
    }

    /// The mechanism named exactly `name` (SASL names are upper case), or `None`.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|mechanism| mechanism.name() == name)
    }

    /// Fewest iterations a stored credential of this mechanism may have: 4096, as in Kafka.
    pub const fn min_iterations(self) -> u32 {
        MIN_ITERATIONS
    }

    /// Length of the hash, of the keys and of the proof, in bytes.
    const fn key_len(self) -> usize {
        match self {
            Self::Sha256 => 32,
            Self::Sha512 => 64,
        }
    }

    /// H(data).
    fn hash(self, data: &[u8]) -> Vec<u8> {
        match self {
            Self::Sha256 => Sha256::digest(data).to_vec(),
            Self::Sha512 => Sha512::digest(data).to_vec(),
        }
    }

    /// HMAC(key, data).
    fn hmac(self, key: &[u8], data: &[u8]) -> Vec<u8> {
        match self {
            Self::Sha256 => mac::<Hmac<Sha256>>(key, data),
            Self::Sha512 => mac::<Hmac<Sha512>>(key, data),
        }
    }

    /// SaltedPassword = Hi(password, salt, iterations), PBKDF2 with this HMAC.
    fn salted_password(self, password: &[u8], salt: &[u8], iterations: u32) -> Vec<u8> {
        let mut out = vec![0; self.key_len()];
        match self {
            Self::Sha256 => pbkdf2::pbkdf2_hmac::<Sha256>(password, salt, iterations, &mut out),
            Self::Sha512 => pbkdf2::pbkdf2_hmac::<Sha512>(password, salt, iterations, &mut out),
        }
        out
    }
}

impl fmt::Display for Mechanism {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

fn mac<M: Mac + hmac::digest::KeyInit>(key: &[u8], data: &[u8]) -> Vec<u8> {
    let Ok(mut mac) = <M as Mac>::new_from_slice(key) else {
        unreachable!("HMAC accepts keys of any length");
    };
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

/// Why a SCRAM exchange failed, or a stored credential was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScramError {
    /// A client message is longer than [`MAX_MESSAGE_BYTES`].
    #[error("SCRAM message too long: {len} bytes, at most {max}", max = MAX_MESSAGE_BYTES)]
    TooLong {
        /// Length of the refused message, in bytes.
        len: usize,
    },
    /// A client message is not UTF-8.
    #[error("malformed SCRAM message: not UTF-8")]
    NotUtf8,
    /// A client message does not follow RFC 5802; the text says which part.
    #[error("malformed SCRAM message: {0}")]
    Malformed(&'static str),
    /// The client asked for channel binding (`p=`), which no mechanism served offers.
    #[error("SCRAM channel binding (p=) is not supported: use a mechanism without -PLUS")]
    ChannelBindingUnsupported,
    /// The client-final `c=` is not the base64 of the client-first gs2 header.
    #[error("SCRAM channel binding (c=) differs from the client-first gs2 header")]
    ChannelBindingMismatch,
    /// The client sent a mandatory extension (`m=`).
    #[error("mandatory SCRAM extensions (m=) are not supported")]
    MandatoryExtension,
    /// The client asked for delegation-token authentication (`tokenauth=true`).
    #[error("delegation tokens (tokenauth=true) are not supported")]
    TokenAuthUnsupported,
    /// The client asked to act as someone else.
    #[error("the authorization id differs from the user name")]
    AuthzidMismatch,
    /// The client-final nonce is not the one of this exchange.
    #[error("the SCRAM nonce differs from the one of this exchange")]
    NonceMismatch,
    /// Wrong password or unknown user: the two are told apart nowhere.
    #[error("invalid username or password")]
    InvalidCredentials,
    /// A message came in the wrong order, or after the exchange ended.
    #[error("SCRAM exchange out of order: {0}")]
    OutOfOrder(&'static str),
    /// A stored credential names a mechanism other than SCRAM-SHA-256 or SCRAM-SHA-512.
    #[error("unknown SCRAM mechanism: expected SCRAM-SHA-256 or SCRAM-SHA-512")]
    UnknownMechanism,
    /// A stored credential's iterations are outside [`MIN_ITERATIONS`]..=[`MAX_ITERATIONS`].
    #[error(
        "SCRAM iterations {0} out of range: at least {min}, at most {max}",
        min = MIN_ITERATIONS,
        max = MAX_ITERATIONS
    )]
    Iterations(u32),
    /// A base64 field (of a message or of a stored credential) does not decode.
    #[error("invalid base64 in {field}")]
    Base64 {
        /// Which field.
        field: &'static str,
        /// The decoder's complaint.
        #[source]
        source: base64::DecodeError,
    },
    /// A stored credential's text form is wrong; the text says how.
    #[error("invalid stored SCRAM credential: {0}")]
    InvalidCredential(&'static str),
}

fn decode_b64(field: &'static str, text: &str) -> Result<Vec<u8>, ScramError> {
    B64.decode(text)
        .map_err(|source| ScramError::Base64 { field, source })
}
