//! Document `_id`s: one per (tenant, source, event id), so that a re-sent event overwrites
//! itself (effectively once) and never another tenant's or another source's document.

use std::fmt::Write;

use headwater_schemas::Envelope;
use sha2::{Digest, Sha256};

/// The tenant of events whose `hw.tenant` is empty: the gateway's open-mode tenant, in ids and
/// in `{tenant}` of index patterns alike.
pub const NO_TENANT: &str = "default";

/// Longest `_id` Elasticsearch and OpenSearch accept, in bytes.
pub const MAX_ID_BYTES: usize = 512;

/// Prefix of a hashed `_id`; a plain `_id` starts with a digit, so the two never meet.
const HASHED: &str = "sha256:";

/// The tenant an event is indexed under: `hw.tenant`, or [`NO_TENANT`] when that is empty.
pub fn tenant_of(envelope: &Envelope) -> &str {
    if envelope.tenant.is_empty() {
        NO_TENANT
    } else {
        &envelope.tenant
    }
}

/// The `_id` of an event: `{tenant bytes}:{tenant}:{source bytes}:{source}:{id}` (e.g.
/// `4:acme:8:device-3:01HW…`), the lengths in decimal bytes so that no choice of tenant,
/// source or id can spell another's `_id`. Over [`MAX_ID_BYTES`] it is `sha256:` and the hex
/// SHA-256 of that text instead. `None` for an event without an id (Elasticsearch then picks
/// one, and a re-send can duplicate it).
pub fn document_id(envelope: &Envelope) -> Option<String> {
    if envelope.id.is_empty() {
        return None;
    }
    let tenant = tenant_of(envelope);
    let source = envelope.source.as_str();
    let plain = format!(
        "{}:{tenant}:{}:{source}:{}",
        tenant.len(),
        source.len(),
        envelope.id
    );
    if plain.len() <= MAX_ID_BYTES {
        return Some(plain);
    }
    let digest = Sha256::digest(plain.as_bytes());
    let mut hashed = String::with_capacity(HASHED.len() + 64);
    hashed.push_str(HASHED);
    for byte in digest {
        // Writing to a String cannot fail.
        let _ = write!(hashed, "{byte:02x}");
    }
    Some(hashed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(tenant: &str, source: &str, id: &str) -> Envelope {
        Envelope {
            tenant: tenant.into(),
            source: source.into(),
            id: id.into(),
            ..Envelope::default()
        }
    }

    fn id(tenant: &str, source: &str, event: &str) -> String {
        document_id(&env(tenant, source, event)).expect("an id")
    }

    #[test]
    fn tenant_source_and_id_make_the_id() {
        assert_eq!(id("acme", "device-3", "e1"), "4:acme:8:device-3:e1");
        // Deterministic: the same event gets the same `_id` every time it is sent.
        assert_eq!(id("acme", "device-3", "e1"), id("acme", "device-3", "e1"));
        assert_ne!(id("acme", "device-3", "e1"), id("globex", "device-3", "e1"));
        assert_ne!(id("acme", "device-3", "e1"), id("acme", "device-4", "e1"));
        assert_eq!(document_id(&env("acme", "device-3", "")), None);
    }

    #[test]
    fn no_tenant_is_the_default_tenant() {
        assert_eq!(id("", "s", "e1"), "7:default:1:s:e1");
        assert_eq!(id("", "s", "e1"), id(NO_TENANT, "s", "e1"));
    }

    #[test]
    fn separators_in_names_cannot_forge_an_id() {
        // With a bare `:` between the parts these would all be `a:b:c:d`.
        let ids = [
            id("a", "b:c", "d"),
            id("a:b", "c", "d"),
            id("a", "b", "c:d"),
            id("a:b:c", "", "d"),
            id("1:a", "b", "c:d"),
        ];
        for (i, x) in ids.iter().enumerate() {
            for y in &ids[i + 1..] {
                assert_ne!(x, y);
            }
        }
        // A tenant spelling another tenant's prefix still differs.
        assert_ne!(id("a", "1:b", "e"), id("a:1:b", "", "e"));
    }

    #[test]
    fn long_ids_are_hashed_within_the_limit() {
        let long = "x".repeat(600);
        let hashed = id("acme", "s", &long);
        assert!(hashed.starts_with("sha256:"), "{hashed}");
        assert_eq!(hashed.len(), "sha256:".len() + 64);
        assert_eq!(hashed, id("acme", "s", &long));
        assert_ne!(hashed, id("globex", "s", &long));
        // Just at the limit stays readable; one byte more is hashed.
        let fits = "y".repeat(MAX_ID_BYTES - "4:acme:1:s:".len());
        assert_eq!(id("acme", "s", &fits).len(), MAX_ID_BYTES);
        assert!(id("acme", "s", &format!("{fits}y")).starts_with("sha256:"));
    }
}
