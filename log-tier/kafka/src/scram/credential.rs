//! [`StoredCredential`]: what the server keeps of a SCRAM password, how it is derived from one,
//! and its text form (`SCRAM-SHA-512:salt=..,stored_key=..,server_key=..,iterations=..`).

use std::fmt;
use std::str::FromStr;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use rand::RngCore;

use super::{MAX_ITERATIONS, MIN_ITERATIONS, Mechanism, SALT_BYTES, ScramError, decode_b64};

/// What the server keeps of a SCRAM password (RFC 5802 §3): enough to check a proof and to
/// prove itself, not enough to log in. Built by [`derive`](Self::derive),
/// [`generate`](Self::generate) or parsing the text form; `Display` prints that form, `Debug`
/// leaves the keys out.
#[derive(Clone, PartialEq, Eq)]
// The fields are readable across `scram`: the exchange checks proofs with the keys and
// answers an unknown user with a fake credential of its own making.
pub struct StoredCredential {
    pub(super) mechanism: Mechanism,
    pub(super) salt: Vec<u8>,
    pub(super) iterations: u32,
    pub(super) stored_key: Vec<u8>,
    pub(super) server_key: Vec<u8>,
}

impl StoredCredential {
    /// The credential of `password` with `salt` and `iterations` (4096 to 16384).
    pub fn derive(
        mechanism: Mechanism,
        password: &str,
        iterations: u32,
        salt: &[u8],
    ) -> Result<Self, ScramError> {
        check(iterations, salt)?;
        let salted = mechanism.salted_password(password.as_bytes(), salt, iterations);
        let client_key = mechanism.hmac(&salted, b"Client Key");
        Ok(Self {
            mechanism,
            salt: salt.to_vec(),
            iterations,
            stored_key: mechanism.hash(&client_key),
            server_key: mechanism.hmac(&salted, b"Server Key"),
        })
    }

    /// The credential of `password` with a random 32-byte salt, for operators' tooling.
    pub fn generate(
        mechanism: Mechanism,
        password: &str,
        iterations: u32,
    ) -> Result<Self, ScramError> {
        let mut salt = [0; SALT_BYTES];
        rand::rng().fill_bytes(&mut salt);
        Self::derive(mechanism, password, iterations, &salt)
    }

    /// The mechanism this credential serves.
    pub fn mechanism(&self) -> Mechanism {
        self.mechanism
    }

    /// The salt sent to the client.
    pub fn salt(&self) -> &[u8] {
        &self.salt
    }

    /// The PBKDF2 iteration count sent to the client.
    pub fn iterations(&self) -> u32 {
        self.iterations
    }

    /// StoredKey = H(HMAC(SaltedPassword, "Client Key")).
    pub fn stored_key(&self) -> &[u8] {
        &self.stored_key
    }

    /// ServerKey = HMAC(SaltedPassword, "Server Key").
    pub fn server_key(&self) -> &[u8] {
        &self.server_key
    }
}

/// Refuses iterations out of range and an empty salt.
fn check(iterations: u32, salt: &[u8]) -> Result<(), ScramError> {
    if !(MIN_ITERATIONS..=MAX_ITERATIONS).contains(&iterations) {
        return Err(ScramError::Iterations(iterations));
    }
    if salt.is_empty() {
        return Err(ScramError::InvalidCredential("the salt is empty"));
    }
    Ok(())
}

impl fmt::Debug for StoredCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoredCredential")
            .field("mechanism", &self.mechanism)
            .field("iterations", &self.iterations)
            .finish_non_exhaustive()
    }
}

impl fmt::Display for StoredCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:salt={},stored_key={},server_key={},iterations={}",
            self.mechanism,
            B64.encode(&self.salt),
            B64.encode(&self.stored_key),
            B64.encode(&self.server_key),
            self.iterations
        )
    }
}

impl FromStr for StoredCredential {
    type Err = ScramError;

    /// Parses the text form; the fields may come in any order, each once. Errors never quote
    /// the text (an operator may have pasted a password).
    fn from_str(text: &str) -> Result<Self, ScramError> {
        use ScramError::InvalidCredential as Invalid;
        const FIELDS: [&str; 4] = ["salt", "stored_key", "server_key", "iterations"];
        let expected = "expected <mechanism>:salt=..,stored_key=..,server_key=..,iterations=..";
        let (name, fields) = text.trim().split_once(':').ok_or(Invalid(expected))?;
        let mechanism = Mechanism::from_name(name).ok_or(ScramError::UnknownMechanism)?;
        let mut values = [None; FIELDS.len()];
        for field in fields.split(',') {
            let (key, value) = field.split_once('=').ok_or(Invalid(expected))?;
            let slot = FIELDS.iter().position(|name| *name == key);
            let slot = slot
                .and_then(|slot| values.get_mut(slot))
                .ok_or(Invalid(expected))?;
            if slot.replace(value).is_some() {
                return Err(Invalid("a field is repeated"));
            }
        }
        let [
            Some(salt),
            Some(stored_key),
            Some(server_key),
            Some(iterations),
        ] = values
        else {
            return Err(Invalid(expected));
        };
        let iterations = iterations
            .parse()
            .map_err(|_| Invalid("iterations is not a number"))?;
        let salt = decode_b64("salt", salt)?;
        check(iterations, &salt)?;
        let stored_key = decode_b64("stored_key", stored_key)?;
        let server_key = decode_b64("server_key", server_key)?;
        let len = mechanism.key_len();
        if stored_key.len() != len || server_key.len() != len {
            return Err(Invalid(
                "stored_key or server_key is not as long as the hash",
            ));
        }
        Ok(Self {
            mechanism,
            salt,
            iterations,
            stored_key,
            server_key,
        })
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::scram::Mechanism::{Sha256, Sha512};
    use crate::scram::ScramError::*;

    /// RFC 7677 §3: user "user", password "pencil".
    pub(in crate::scram) const RFC_SALT: &str = "W22ZaJ0SNY7soEsUEjb6gQ==";

    pub(in crate::scram) fn rfc_credential(mechanism: Mechanism) -> StoredCredential {
        let salt = B64.decode(RFC_SALT).unwrap();
        StoredCredential::derive(mechanism, "pencil", 4096, &salt).unwrap()
    }

    #[test]
    fn derive_matches_independent_numbers() {
        // SaltedPassword, StoredKey and ServerKey of the RFC 7677 inputs, from Python's hashlib
        // and hmac (which reproduce the RFC's proof and signature).
        let salted = Sha256.salted_password(b"pencil", &B64.decode(RFC_SALT).unwrap(), 4096);
        let (sha256, sha512) = (rfc_credential(Sha256), rfc_credential(Sha512));
        let keys = [&salted[..], sha256.stored_key(), sha256.server_key()];
        let keys = [
            keys[0],
            keys[1],
            keys[2],
            sha512.stored_key(),
            sha512.server_key(),
        ];
        let expected = [
            "xKSVEDI6tPlSysH6mUQZOeeOp01r6B3fcJbodRPcYV0=",
            "WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=",
            "wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU=",
            "6AAub3065EYRmyFpM2RNwqK+eGnrkYuEWbXn19LsEmBqzu8QaCXNc1FwpnX9NhH2hK/60dzj9DoO5DvVkOHbvg==",
            "jZHbYjC1aHh0/hKbxyBuGFjDrgjgKTT1esA7awWiKcRZ0o/0b1yWEebBeSVkkCFewf91nLDfKF24mvD5nmE6rA==",
        ];
        assert_eq!(keys.map(|key| B64.encode(key)), expected);
    }

    #[test]
    fn credential_text_form_round_trips() {
        for mechanism in Mechanism::ALL {
            let credential = StoredCredential::generate(mechanism, "pw", 8192).unwrap();
            let text = credential.to_string();
            let prefix = format!("{}:salt=", mechanism.name());
            let well_formed = text.starts_with(&prefix) && text.ends_with(",iterations=8192");
            assert!(well_formed, "{text}");
            assert_eq!(text.parse::<StoredCredential>().unwrap(), credential);
            assert_eq!(credential.salt().len(), SALT_BYTES);
            let debug = format!("{credential:?}");
            let stored_key = B64.encode(credential.stored_key());
            assert!(!debug.contains(&stored_key), "{debug}");
        }
        let rfc = rfc_credential(Sha256);
        let (stored, server) = (B64.encode(rfc.stored_key()), B64.encode(rfc.server_key()));
        let reordered = format!(
            " SCRAM-SHA-256:iterations=4096,server_key={server},stored_key={stored},salt={RFC_SALT}\n"
        );
        assert_eq!(reordered.parse::<StoredCredential>().unwrap(), rfc);
    }

    #[test]
    fn credential_text_form_refusals() {
        let good = rfc_credential(Sha256).to_string();
        let parse = |text: &str| text.parse::<StoredCredential>().unwrap_err();
        let unknown = parse(&good.replace("SCRAM-SHA-256", "SCRAM-SHA-1"));
        assert_eq!(unknown, UnknownMechanism);
        assert_eq!(parse(&good.replace("=4096", "=4095")), Iterations(4095));
        assert_eq!(parse(&good.replace("=4096", "=16385")), Iterations(16385));
        let bad_salt = parse(&good.replace("salt=W", "salt=!"));
        assert!(matches!(bad_salt, Base64 { field: "salt", .. }));
        let refusals = [
            "hunter2".to_owned(),
            // The SHA-256 keys are too short for SCRAM-SHA-512.
            good.replace("SCRAM-SHA-256", "SCRAM-SHA-512"),
            good.replace(",iterations=4096", ""),
            format!("{good},iterations=4096"),
            format!("{good},extra=1"),
            good.replace("iterations=4096", "iterations=many"),
            good.replace(",iterations", ",iterations4096"),
            good.replace(&format!("salt={RFC_SALT}"), "salt="),
        ];
        for text in refusals {
            let error = parse(&text);
            assert!(matches!(error, InvalidCredential(_)), "{text}: {error}");
            assert!(!error.to_string().contains("hunter2"));
        }
    }

    #[test]
    fn derive_generate_and_mechanisms() {
        let low = StoredCredential::generate(Sha256, "pw", 4095);
        assert_eq!(low, Err(Iterations(4095)));
        let empty_salt = StoredCredential::derive(Sha256, "pw", 4096, &[]);
        assert!(matches!(empty_salt, Err(InvalidCredential(_))));
        let a = StoredCredential::generate(Sha256, "pw", 4096).unwrap();
        let b = StoredCredential::generate(Sha256, "pw", 4096).unwrap();
        assert_ne!(a.salt(), b.salt());
        assert_eq!((a.mechanism(), a.iterations()), (Sha256, 4096));
        for mechanism in Mechanism::ALL {
            assert_eq!(Mechanism::from_name(mechanism.name()), Some(mechanism));
            assert_eq!(mechanism.to_string(), mechanism.name());
            assert_eq!(mechanism.min_iterations(), 4096);
        }
        let names = (Sha256.name(), Sha512.name());
        assert_eq!(names, ("SCRAM-SHA-256", "SCRAM-SHA-512"));
        assert_eq!(Mechanism::from_name("scram-sha-256"), None);
        assert_eq!(Mechanism::from_name("SCRAM-SHA-1"), None);
    }
}
