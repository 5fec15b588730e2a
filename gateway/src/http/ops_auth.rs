//! The optional key in front of the operational read endpoints (`gateway.auth.ops_keys`):
//! `/metrics` and the schema API. `/healthz` and `/readyz` never go behind it (probes carry
//! no key).

use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::auth::presented_key;
use crate::config::AuthConfig;
use crate::error::IngestError;

/// The SHA-256 digests of the ops keys.
#[derive(Clone)]
struct OpsKeys(Arc<[[u8; 32]]>);

impl OpsKeys {
    /// Digests that are not 64 hex digits were refused by `GatewayConfig::validate`, and are
    /// skipped here.
    fn new(config: &AuthConfig) -> Self {
        let digests: Vec<[u8; 32]> = config
            .ops_keys
            .iter()
            .filter_map(|digest| {
                let mut hash = [0u8; 32];
                hex::decode_to_slice(digest, &mut hash).ok()?;
                Some(hash)
            })
            .collect();
        Self(digests.into())
    }

    /// Missing key: 401 ([`IngestError::MissingKey`]); a key that is no ops key, a tenant's
    /// ingest key included: 401 ([`IngestError::UnknownKey`]), as the ingest endpoints answer
    /// an unknown key.
    fn check(&self, request: &Request) -> Result<(), IngestError> {
        let key = presented_key(request.headers()).ok_or(IngestError::MissingKey)?;
        let hash: [u8; 32] = Sha256::digest(key.as_bytes()).into();
        // Every digest is compared, without an early exit: timing says nothing about which
        // key or how much of it matched.
        let mut found = false;
        for stored in self.0.iter() {
            found |= bool::from(stored.ct_eq(&hash));
        }
        if found {
            Ok(())
        } else {
            Err(IngestError::UnknownKey)
        }
    }
}

/// Puts every route of `router` behind the ops keys of `auth`; with none configured, returns
/// `router` unchanged (open, the default).
pub(super) fn guard<S>(router: Router<S>, auth: &AuthConfig) -> Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    if auth.ops_keys.is_empty() {
        return router;
    }
    router.route_layer(middleware::from_fn_with_state(
        OpsKeys::new(auth),
        require_ops_key,
    ))
}

async fn require_ops_key(State(keys): State<OpsKeys>, request: Request, next: Next) -> Response {
    match keys.check(&request) {
        Ok(()) => next.run(request).await,
        Err(error) => error.into_response(),
    }
}
