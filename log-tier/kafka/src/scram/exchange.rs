//! [`ServerExchange`]: the server side of one SCRAM exchange, sans-I/O (client-first in,
//! server-first out, client-final in, server-final out), and the fake answer to an unknown user.

use std::sync::OnceLock;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use rand::RngCore;
use subtle::{Choice, ConstantTimeEq};

use super::{
    DEFAULT_ITERATIONS, MAX_MESSAGE_BYTES, Mechanism, SALT_BYTES, SERVER_NONCE_BYTES, ScramError,
    StoredCredential, decode_b64,
};

/// The server side of one SCRAM authentication, without I/O.
///
/// The listener makes one per SaslHandshake naming a SCRAM mechanism, passes the first
/// SaslAuthenticate token to [`client_first`](Self::client_first) and sends back its answer,
/// then the second token to [`client_final`](Self::client_final), whose answer ends a
/// successful exchange. Any error ends the exchange: later calls fail with
/// [`ScramError::OutOfOrder`].
#[derive(Debug)]
pub struct ServerExchange {
    mechanism: Mechanism,
    server_nonce: String,
    state: State,
}

#[derive(Debug)]
enum State {
    Initial,
    AwaitingFinal(Box<Pending>),
    Done,
    Failed,
}

/// What the client-final message is checked against.
#[derive(Debug)]
struct Pending {
    user: String,
    gs2_header: String,
    /// `client-first-message-bare "," server-first-message`, the start of the AuthMessage.
    auth_prefix: String,
    /// Client nonce then server nonce.
    nonce: String,
    credential: StoredCredential,
    /// False for an unknown user, whose credential is a fake that must never succeed.
    known: bool,
}

/// The parts of a client-first message.
struct ClientFirst<'a> {
    gs2_header: &'a str,
    user: String,
    client_nonce: &'a str,
    bare: &'a str,
}

impl ServerExchange {
    /// An exchange for `mechanism`, with a fresh random server nonce.
    pub fn new(mechanism: Mechanism) -> Self {
        let mut nonce = [0; SERVER_NONCE_BYTES];
        rand::rng().fill_bytes(&mut nonce);
        Self {
            mechanism,
            server_nonce: B64.encode(nonce),
            state: State::Initial,
        }
    }

    /// An exchange whose server nonce is `server_nonce`, for test vectors.
    #[cfg(test)]
    fn with_server_nonce(mechanism: Mechanism, server_nonce: &str) -> Self {
        Self {
            server_nonce: server_nonce.to_owned(),
            ..Self::new(mechanism)
        }
    }

    /// The mechanism of this exchange.
    pub fn mechanism(&self) -> Mechanism {
        self.mechanism
    }

    /// Reads the client-first message and answers the server-first message
    /// (`r=<nonce>,s=<salt>,i=<iterations>`). `lookup` gives the user's credential; a user it
    /// does not know, or knows for another mechanism, gets a fake but well-formed answer and
    /// fails at [`client_final`](Self::client_final) like a wrong password.
    pub fn client_first(
        &mut self,
        msg: &[u8],
        lookup: impl Fn(&str) -> Option<StoredCredential>,
    ) -> Result<Vec<u8>, ScramError> {
        let state = std::mem::replace(&mut self.state, State::Failed);
        if !matches!(state, State::Initial) {
            return Err(ScramError::OutOfOrder("a second client-first message"));
        }
        let first = parse_client_first(message_text(msg)?)?;
        let (credential, known) = match lookup(&first.user) {
            Some(credential) if credential.mechanism == self.mechanism => (credential, true),
            _ => (fake_credential(self.mechanism, &first.user), false),
        };
        let nonce = format!("{}{}", first.client_nonce, self.server_nonce);
        let server_first = format!(
            "r={nonce},s={},i={}",
            B64.encode(&credential.salt),
            credential.iterations
        );
        self.state = State::AwaitingFinal(Box::new(Pending {
            user: first.user,
            gs2_header: first.gs2_header.to_owned(),
            auth_prefix: format!("{},{server_first}", first.bare),
            nonce,
            credential,
            known,
        }));
        Ok(server_first.into_bytes())
    }

    /// Reads the client-final message, checks the proof and answers the authenticated user and
    /// the server-final message (`v=<server signature>`).
    pub fn client_final(&mut self, msg: &[u8]) -> Result<(String, Vec<u8>), ScramError> {
        let State::AwaitingFinal(pending) = std::mem::replace(&mut self.state, State::Failed)
        else {
            return Err(ScramError::OutOfOrder(
                "a client-final message without a client-first message before it",
            ));
        };
        let answer = pending.finish(self.mechanism, message_text(msg)?)?;
        self.state = State::Done;
        Ok(answer)
    }
}

impl Pending {
    fn finish(self, mechanism: Mechanism, msg: &str) -> Result<(String, Vec<u8>), ScramError> {
        let (without_proof, proof) = msg.rsplit_once(',').unwrap_or(("", msg));
        let proof = attribute(
            Some(proof),
            "p=",
            "client-final: expected the proof p= last",
        )?;
        let mut attributes = without_proof.split(',');
        let binding = attribute(attributes.next(), "c=", "client-final: expected c= first")?;
        let nonce = attribute(
            attributes.next(),
            "r=",
            "client-final: expected r= after c=",
        )?;
        for extension in attributes {
            parse_extension(extension)?;
        }
        let binding = decode_b64("the channel binding (c=)", binding)?;
        let proof = decode_b64("the proof (p=)", proof)?;
        if proof.len() != mechanism.key_len() {
            return Err(ScramError::Malformed(
                "client-final: the proof is not as long as the mechanism's hash",
            ));
        }
        if binding != self.gs2_header.as_bytes() {
            return Err(ScramError::ChannelBindingMismatch);
        }
        if nonce != self.nonce {
            return Err(ScramError::NonceMismatch);
        }
        let auth_message = format!("{},{without_proof}", self.auth_prefix);
        let credential = &self.credential;
        let client_signature = mechanism.hmac(&credential.stored_key, auth_message.as_bytes());
        let client_key: Vec<u8> = proof
            .iter()
            .zip(&client_signature)
            .map(|(p, s)| p ^ s)
            .collect();
        let valid = mechanism.hash(&client_key).ct_eq(&credential.stored_key)
            & Choice::from(u8::from(self.known));
        if !bool::from(valid) {
            return Err(ScramError::InvalidCredentials);
        }
        let server_signature = mechanism.hmac(&credential.server_key, auth_message.as_bytes());
        let server_final = format!("v={}", B64.encode(server_signature));
        Ok((self.user, server_final.into_bytes()))
    }
}

/// The message as text, refused when too long or not UTF-8.
fn message_text(msg: &[u8]) -> Result<&str, ScramError> {
    if msg.len() > MAX_MESSAGE_BYTES {
        return Err(ScramError::TooLong { len: msg.len() });
    }
    std::str::from_utf8(msg).map_err(|_| ScramError::NotUtf8)
}

/// `gs2-header client-first-message-bare`, RFC 5802 §7, with Kafka's extensions after the nonce.
fn parse_client_first(msg: &str) -> Result<ClientFirst<'_>, ScramError> {
    let mut parts = msg.splitn(3, ',');
    let (Some(flag), Some(authzid), Some(bare)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(ScramError::Malformed(
            "client-first: expected a gs2 header such as n,,",
        ));
    };
    match flag {
        "n" | "y" => {}
        _ if flag.starts_with("p=") => return Err(ScramError::ChannelBindingUnsupported),
        _ => {
            return Err(ScramError::Malformed(
                "client-first: the channel binding flag must be n, y or p=",
            ));
        }
    }
    let authzid = match authzid {
        "" => None,
        _ => Some(decode_saslname(attribute(
            Some(authzid),
            "a=",
            "client-first: the authorization id must be a=<name>",
        )?)?),
    };
    let gs2_header = &msg[..msg.len() - bare.len()];
    let mut attributes = bare.split(',');
    let first = attributes.next().unwrap_or_default();
    if first.starts_with("m=") {
        return Err(ScramError::MandatoryExtension);
    }
    let user = attribute(
        Some(first),
        "n=",
        "client-first: expected n= after the gs2 header",
    )?;
    let user = decode_saslname(user)?;
    let client_nonce = attribute(
        attributes.next(),
        "r=",
        "client-first: expected r= after n=",
    )?;
    if client_nonce.is_empty() || !client_nonce.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(ScramError::Malformed(
            "client-first: the nonce must be printable ASCII",
        ));
    }
    for extension in attributes {
        let (name, value) = parse_extension(extension)?;
        if name == "tokenauth" && value.eq_ignore_ascii_case("true") {
            return Err(ScramError::TokenAuthUnsupported);
        }
    }
    if authzid.is_some_and(|authzid| authzid != user) {
        return Err(ScramError::AuthzidMismatch);
    }
    Ok(ClientFirst {
        gs2_header,
        user,
        client_nonce,
        bare,
    })
}

/// The value of `attribute` if it starts with `key` (such as `r=`), else `Malformed(expected)`.
fn attribute<'a>(
    attribute: Option<&'a str>,
    key: &str,
    expected: &'static str,
) -> Result<&'a str, ScramError> {
    attribute
        .and_then(|attribute| attribute.strip_prefix(key))
        .ok_or(ScramError::Malformed(expected))
}

/// An extension `name=value`; the name is letters (Kafka's are words, like `tokenauth`).
fn parse_extension(extension: &str) -> Result<(&str, &str), ScramError> {
    extension
        .split_once('=')
        .filter(|(name, _)| !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphabetic()))
        .ok_or(ScramError::Malformed(
            "an extension must be name=value with a name of letters",
        ))
}

/// A saslname with `=2C` and `=3D` decoded to `,` and `=`; empty names, NUL and other `=`
/// escapes are refused.
fn decode_saslname(name: &str) -> Result<String, ScramError> {
    let mut decoded = String::with_capacity(name.len());
    let mut rest = name;
    while let Some(at) = rest.find(['=', '\0']) {
        decoded.push_str(&rest[..at]);
        rest = &rest[at..];
        if let Some(after) = rest.strip_prefix("=2C") {
            decoded.push(',');
            rest = after;
        } else if let Some(after) = rest.strip_prefix("=3D") {
            decoded.push('=');
            rest = after;
        } else {
            return Err(ScramError::Malformed(
                "a user name may escape only =2C and =3D, and holds no NUL",
            ));
        }
    }
    decoded.push_str(rest);
    if decoded.is_empty() {
        return Err(ScramError::Malformed("the user name is empty"));
    }
    Ok(decoded)
}

/// The credential an unknown user is answered with: salt and keys derived from the user name
/// and a per-process random secret, so that asking twice gives the same salt, as for a real
/// user. [`Pending::known`] makes sure it never authenticates.
fn fake_credential(mechanism: Mechanism, user: &str) -> StoredCredential {
    static SECRET: OnceLock<[u8; 32]> = OnceLock::new();
    let secret = SECRET.get_or_init(|| {
        let mut secret = [0; 32];
        rand::rng().fill_bytes(&mut secret);
        secret
    });
    let derive = |label: &str| {
        let input = [label, mechanism.name(), user].join("\0");
        mechanism.hmac(secret, input.as_bytes())
    };
    let mut salt = derive("salt");
    salt.truncate(SALT_BYTES);
    StoredCredential {
        mechanism,
        salt,
        iterations: DEFAULT_ITERATIONS,
        stored_key: derive("stored key"),
        server_key: derive("server key"),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::LazyLock;

    use proptest::prelude::*;

    use super::*;
    use crate::scram::Mechanism::{Sha256, Sha512};
    use crate::scram::ScramError::*;
    use crate::scram::credential::tests::{RFC_SALT, rfc_credential};

    /// RFC 7677 §3: the nonce of user "user" (client part, then server part).
    const RFC_NONCE: &str = "rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";

    static ALICE: LazyLock<StoredCredential> =
        LazyLock::new(|| StoredCredential::generate(Sha512, "s3cret", 4096).unwrap());

    /// Knows alice, for SCRAM-SHA-512 only.
    fn alice(user: &str) -> Option<StoredCredential> {
        (user == "alice").then(|| ALICE.clone())
    }

    /// The client side, written from RFC 5802 §3: the client-final message for `password`, and
    /// the server-final message the client expects.
    fn client_final(
        mechanism: Mechanism,
        password: &str,
        client_first: &str,
        server_first: &[u8],
    ) -> (String, Vec<u8>) {
        let server_first = std::str::from_utf8(server_first).unwrap();
        let [nonce, salt, iterations] = server_first.split(',').collect::<Vec<_>>()[..] else {
            panic!("{server_first}");
        };
        let salt = B64.decode(&salt[2..]).unwrap();
        let iterations = iterations[2..].parse().unwrap();
        let salted = mechanism.salted_password(password.as_bytes(), &salt, iterations);
        let client_key = mechanism.hmac(&salted, b"Client Key");
        let (header, bare) = client_first.split_at(client_first.find(",n=").unwrap() + 1);
        let without_proof = format!("c={},{nonce}", B64.encode(header));
        let auth_message = format!("{bare},{server_first},{without_proof}");
        let signature = mechanism.hmac(&mechanism.hash(&client_key), auth_message.as_bytes());
        let proof: Vec<u8> = client_key
            .iter()
            .zip(signature)
            .map(|(k, s)| k ^ s)
            .collect();
        let server_key = mechanism.hmac(&salted, b"Server Key");
        let v = mechanism.hmac(&server_key, auth_message.as_bytes());
        let expected = format!("v={}", B64.encode(v)).into_bytes();
        (format!("{without_proof},p={}", B64.encode(proof)), expected)
    }

    /// A whole exchange of `client_first` with `password` against `lookup`.
    fn exchange(
        mechanism: Mechanism,
        client_first: &str,
        password: &str,
        lookup: impl Fn(&str) -> Option<StoredCredential>,
    ) -> Result<String, ScramError> {
        let mut server = ServerExchange::new(mechanism);
        let server_first = server.client_first(client_first.as_bytes(), lookup)?;
        let (msg, expected) = client_final(mechanism, password, client_first, &server_first);
        let (user, server_final) = server.client_final(msg.as_bytes())?;
        assert_eq!(
            server_final, expected,
            "the client checks the server signature"
        );
        Ok(user)
    }

    /// The RFC 7677 exchange with `mechanism` and the client proof `proof`: the server-final.
    fn rfc_exchange(mechanism: Mechanism, proof: &str) -> Vec<u8> {
        let (client_nonce, server_nonce) = RFC_NONCE.split_at(20);
        let mut server = ServerExchange::with_server_nonce(mechanism, server_nonce);
        let credential = rfc_credential(mechanism);
        let lookup = |user: &str| (user == "user").then(|| credential.clone());
        let first = format!("n,,n=user,r={client_nonce}");
        let server_first = server.client_first(first.as_bytes(), lookup).unwrap();
        let expected = format!("r={RFC_NONCE},s={RFC_SALT},i=4096");
        assert_eq!(String::from_utf8(server_first).unwrap(), expected);
        let msg = format!("c=biws,r={RFC_NONCE},p={proof}");
        let (user, server_final) = server.client_final(msg.as_bytes()).unwrap();
        assert_eq!(user, "user");
        server_final
    }

    #[test]
    fn rfc7677_sha256_vector() {
        let server_final = rfc_exchange(Sha256, "dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=");
        let expected = b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=";
        assert_eq!(server_final, expected);
    }

    #[test]
    fn sha512_known_answer() {
        // The RFC 7677 inputs run through SCRAM-SHA-512 by Python's hashlib and hmac.
        let server_final = rfc_exchange(
            Sha512,
            "gMGXRcevScNtxZ6/8lQYpGtnsNAc3mGcmNomv+xnoOMw+3R2xNJdMNnzMlTN8PPC6wdp6dybEmDYXYTxwnYPJQ==",
        );
        let expected = "v=ZQnYEgWQMFmmsM8aQMF0nDDCy/AgCzkwk8CmMZYcMg0vSVlKDanekLtifDSeVGT4+5ZxXnJq\
                        199RVG2rR7N7Zw==";
        assert_eq!(String::from_utf8(server_final).unwrap(), expected);
    }

    #[test]
    fn round_trips_with_escaped_names_authzid_and_y_flag() {
        let credential = StoredCredential::generate(Sha512, "pässword", 4096).unwrap();
        let lookup = |user: &str| (user == "a,b=c").then(|| credential.clone());
        for first in ["n,,n=a=2Cb=3Dc,r=x", "n,a=a=2Cb=3Dc,n=a=2Cb=3Dc,r=x"] {
            let user = exchange(Sha512, first, "pässword", lookup);
            assert_eq!(user.as_deref(), Ok("a,b=c"), "{first}");
        }
        let first = "y,,n=alice,r=fyko+d2lbbFgONRv9qkxdawL,ext=1,tokenauth=false";
        assert_eq!(
            exchange(Sha512, first, "s3cret", alice).as_deref(),
            Ok("alice")
        );
        let credential = StoredCredential::generate(Sha256, "pw", 4096).unwrap();
        let user = exchange(Sha256, "n,,n=bob,r=x", "pw", |_| Some(credential.clone()));
        assert_eq!(user.as_deref(), Ok("bob"));
    }

    #[test]
    fn wrong_password_and_unknown_user_fail_alike() {
        // Alice has no SCRAM-SHA-256 credential: the same answer.
        let attempts = [
            (Sha512, "alice", "guess"),
            (Sha512, "eve", "s3cret"),
            (Sha256, "alice", "s3cret"),
        ];
        for (mechanism, user, password) in attempts {
            let result = exchange(mechanism, &format!("n,,n={user},r=abc"), password, alice);
            assert_eq!(result, Err(InvalidCredentials), "{mechanism} {user}");
        }
        let message = InvalidCredentials.to_string();
        assert_eq!(message, "invalid username or password");
    }

    #[test]
    fn unknown_user_gets_a_well_formed_stable_server_first() {
        let server_first = |user: &str| {
            let first = format!("n,,n={user},r=abc");
            let answer = ServerExchange::new(Sha512).client_first(first.as_bytes(), alice);
            let answer = String::from_utf8(answer.unwrap()).unwrap();
            answer.split(',').map(str::to_owned).collect::<Vec<_>>()
        };
        let first = server_first("mallory");
        let nonce = first[0].strip_prefix("r=abc").unwrap();
        assert!(nonce.len() >= 24 && nonce.bytes().all(|b| b.is_ascii_graphic()));
        let salt = B64.decode(first[1].strip_prefix("s=").unwrap()).unwrap();
        assert_eq!(salt.len(), ALICE.salt().len());
        assert_eq!(first[2], format!("i={DEFAULT_ITERATIONS}"));
        assert_eq!(first.len(), 3);
        let again = server_first("mallory");
        assert_eq!(again[1], first[1], "the same salt twice");
        assert_ne!(again[0], first[0], "a fresh nonce");
        assert_ne!(server_first("eve")[1], first[1]);
    }

    /// The error of alice's good client-final message changed by `tamper`.
    fn final_error(tamper: impl Fn(&str) -> String) -> ScramError {
        let mut server = ServerExchange::new(Sha512);
        let server_first = server.client_first(b"n,,n=alice,r=abc", alice).unwrap();
        let (msg, _) = client_final(Sha512, "s3cret", "n,,n=alice,r=abc", &server_first);
        let error = server.client_final(tamper(&msg).as_bytes()).unwrap_err();
        let again = server.client_final(msg.as_bytes());
        assert!(
            matches!(again, Err(OutOfOrder(_))),
            "a failed exchange stays failed"
        );
        error
    }

    #[test]
    fn tampered_client_final_is_refused() {
        type Tamper = fn(&str) -> String;
        let flip: Tamper = |msg| {
            let (head, proof) = msg.rsplit_once("p=").unwrap();
            let mut proof = B64.decode(proof).unwrap();
            proof[0] ^= 1;
            format!("{head}p={}", B64.encode(proof))
        };
        let cases: [(Tamper, ScramError); 5] = [
            (flip, InvalidCredentials),
            (|m| m.replacen(",r=abc", ",r=abd", 1), NonceMismatch),
            (
                |m| m.replacen("c=biws", "c=eSws", 1),
                ChannelBindingMismatch,
            ),
            (|m| m.replacen(",p=", ",x=1,p=", 1), InvalidCredentials),
            (|_| "é".repeat(3000), TooLong { len: 6000 }),
        ];
        for (tamper, expected) in cases {
            assert_eq!(final_error(tamper), expected);
        }
        assert!(matches!(final_error(|m| format!("{m}!")), Base64 { .. }));
        let malformed: [Tamper; 7] = [
            |_| String::new(),
            |_| "c=biws".into(),
            |_| "p=AAAA".into(),
            |_| "r=x,c=biws,p=AAAA".into(),
            |_| "c=biws,p=AAAA".into(),
            |m| format!("{},p=AAAA", m.rsplit_once(",p=").unwrap().0),
            |m| m.replacen(",p=", ",1=1,p=", 1),
        ];
        for tamper in malformed {
            let error = final_error(tamper);
            assert!(matches!(error, Malformed(_)), "{error}");
        }
    }

    #[test]
    fn client_first_refusals() {
        let first_error = |msg: &[u8]| ServerExchange::new(Sha512).client_first(msg, alice);
        let refusals: [(&[u8], _); 7] = [
            (b"p=tls-unique,,n=alice,r=abc", ChannelBindingUnsupported),
            (b"n,a=admin,n=alice,r=abc", AuthzidMismatch),
            (b"n,,n=alice,r=abc,tokenauth=true", TokenAuthUnsupported),
            (b"n,,n=alice,r=abc,tokenauth=TRUE", TokenAuthUnsupported),
            (b"n,,m=ext,n=alice,r=abc", MandatoryExtension),
            (b"n,,n=alice,r=\xff", NotUtf8),
            (&[b'a'; 4097], TooLong { len: 4097 }),
        ];
        for (msg, expected) in refusals {
            assert_eq!(first_error(msg), Err(expected), "{}", msg.escape_ascii());
        }
        let malformed = "|n|n,|n,,|x,,n=alice,r=abc|n,b=x,n=alice,r=abc|n,,r=abc|n,,n=,r=abc|\
                         n,,n=al=ice,r=abc|n,,n=al=2cice,r=abc|n,,n=al\0ice,r=abc|n,,n=alice|\
                         n,,n=alice,r=|n,,n=alice,r=a b|n,,n=alice,s=abc|n,,n=alice,r=abc,1x=2|\
                         n,,n=alice,r=abc,|n,,n=alice,r=abc,novalue|n,a=,n=alice,r=abc";
        for msg in malformed.split('|') {
            let error = first_error(msg.as_bytes());
            assert!(matches!(error, Err(Malformed(_))), "{msg:?}: {error:?}");
        }
    }

    #[test]
    fn messages_out_of_order_are_refused() {
        let early = ServerExchange::new(Sha256).client_final(b"c=biws,r=a,p=AAAA");
        assert!(matches!(early, Err(OutOfOrder(_))));
        let mut server = ServerExchange::new(Sha512);
        let server_first = server.client_first(b"n,,n=alice,r=abc", alice).unwrap();
        let again = ServerExchange::new(Sha512).client_first(b"n,,n=alice,r=abc", alice);
        assert_ne!(again.unwrap(), server_first, "a fresh server nonce");
        let (msg, _) = client_final(Sha512, "s3cret", "n,,n=alice,r=abc", &server_first);
        server.client_final(msg.as_bytes()).unwrap();
        let replay = server.client_final(msg.as_bytes());
        assert!(matches!(replay, Err(OutOfOrder(_))));
        let again = server.client_first(b"n,,n=alice,r=abc", alice);
        assert!(matches!(again, Err(OutOfOrder(_))));
        assert_eq!(server.mechanism(), Sha512);
    }

    proptest! {
        #[test]
        fn arbitrary_client_first_never_panics(
            bytes in proptest::collection::vec(any::<u8>(), 0..5000),
            text in "[nyp,=ar2CD3tokenauth\\x00é]{0,40}",
        ) {
            for msg in [bytes.as_slice(), text.as_bytes()] {
                let _ = ServerExchange::new(Sha512).client_first(msg, alice);
            }
        }

        #[test]
        fn arbitrary_client_final_never_panics(
            bytes in proptest::collection::vec(any::<u8>(), 0..5000),
            text in "[cr=p,biwsAZ+/0-9]{0,80}",
        ) {
            for msg in [bytes.as_slice(), text.as_bytes()] {
                let mut server = ServerExchange::new(Sha512);
                server.client_first(b"n,,n=alice,r=abc", alice).unwrap();
                let _ = server.client_final(msg);
            }
        }
    }
}
