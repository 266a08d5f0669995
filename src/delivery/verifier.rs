//! The receiving side, for walhook's own demo receiver and `examples/receiver.rs`:
//! verify a delivery's three signatures — Standard Webhooks `v1` (HMAC with the
//! subscription secret), `v1a` (Ed25519) and RFC 9421 — with public keys taken
//! from walhook's JWKS endpoint. The JWKS is fetched on first use and again,
//! once, when a signature names a key it does not hold (a rotation happened).

use std::sync::{Arc, RwLock};

use super::signing::{
    HeaderLookup, PublicKey, VerifyError, parse_jwks, verify_http_signature,
    verify_standard_webhook,
};

/// Standard Webhooks' default clock-skew tolerance: five minutes.
pub const TOLERANCE_SECS: i64 = 5 * 60;

/// Verifies deliveries for one subscription.
pub struct Verifier {
    secret: String,
    jwks_url: String,
    http: reqwest::Client,
    keys: RwLock<Arc<Vec<PublicKey>>>,
}

/// What a verified delivery was signed with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// The kid of the Ed25519 key whose `v1a` and RFC 9421 signatures matched.
    pub kid: String,
}

impl Verifier {
    /// `secret` is the subscription's `whsec_...`; `jwks_url` walhook's
    /// `/.well-known/jwks.json`.
    pub fn new(secret: String, jwks_url: String) -> Verifier {
        Verifier {
            secret,
            jwks_url,
            http: reqwest::Client::new(),
            keys: RwLock::new(Arc::new(Vec::new())),
        }
    }

    /// Fetch the JWKS now; returns how many Ed25519 keys it holds.
    pub async fn refresh(&self) -> Result<usize, VerifyError> {
        let unavailable = |e: reqwest::Error| VerifyError::JwksUnavailable(e.to_string());
        let body = self
            .http
            .get(&self.jwks_url)
            .send()
            .await
            .and_then(|r| r.error_for_status())
            .map_err(unavailable)?
            .bytes()
            .await
            .map_err(unavailable)?;
        let jwks: serde_json::Value =
            serde_json::from_slice(&body).map_err(|_| VerifyError::BadJwks("not JSON"))?;
        let keys = parse_jwks(&jwks)?;
        let count = keys.len();
        *self.keys.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(keys);
        Ok(count)
    }

    fn keys(&self) -> Arc<Vec<PublicKey>> {
        self.keys.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Verify all three signatures of a request. `target_uri` is the URL walhook
    /// posted to (the subscription's URL with its query). `headers` is a
    /// [`HeaderLookup`] that can cross an await (the JWKS fetch).
    pub async fn verify(
        &self,
        method: &str,
        target_uri: &str,
        headers: &(dyn Fn(&str) -> Option<String> + Sync),
        body: &[u8],
    ) -> Result<Verified, VerifyError> {
        if self.keys().is_empty() {
            self.refresh().await?;
        }
        match self.verify_with_current_keys(method, target_uri, headers, body) {
            Err(VerifyError::UnknownKey(_) | VerifyError::NoMatchingEd25519) => {
                self.refresh().await?;
                self.verify_with_current_keys(method, target_uri, headers, body)
            }
            result => result,
        }
    }

    fn verify_with_current_keys(
        &self,
        method: &str,
        target_uri: &str,
        headers: HeaderLookup<'_>,
        body: &[u8],
    ) -> Result<Verified, VerifyError> {
        let now = chrono::Utc::now().timestamp();
        let keys = self.keys();
        if keys.is_empty() {
            return Err(VerifyError::BadJwks("no Ed25519 key"));
        }
        // with both a secret and keys, v1 and v1a must each match
        let schemes = verify_standard_webhook(
            headers,
            body,
            Some(&self.secret),
            &keys,
            now,
            TOLERANCE_SECS,
        )?;
        verify_http_signature(
            method,
            target_uri,
            headers,
            body,
            &keys,
            now,
            TOLERANCE_SECS,
        )?;
        Ok(Verified {
            kid: schemes.ed25519_kid.unwrap_or_default(),
        })
    }
}
