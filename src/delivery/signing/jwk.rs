//! Ed25519 keys as JWKs: generation, the RFC 7638 thumbprint used as `kid`, and
//! the public JWK form published in the JWKS and read back by receivers.
//!
//! The private part is a 32-byte seed (RFC 8032), the form stored in
//! `walhook.signing_keys.private_key`; it never leaves this type except through
//! [`SigningKey::private_bytes`] for storage.

use super::{PublicKey, SigningError, SigningKey, VerifyError};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};

impl SigningKey {
    /// A fresh key from the operating system's random source.
    pub fn generate() -> Self {
        Self::from_dalek(ed25519_dalek::SigningKey::generate(&mut rand::rngs::OsRng))
    }

    /// A key from its 32-byte Ed25519 seed.
    pub fn from_private_bytes(bytes: &[u8]) -> Result<Self, SigningError> {
        let seed: &[u8; 32] = bytes
            .try_into()
            .map_err(|_| SigningError::BadPrivateKey(bytes.len()))?;
        Ok(Self::from_dalek(ed25519_dalek::SigningKey::from_bytes(
            seed,
        )))
    }

    fn from_dalek(key: ed25519_dalek::SigningKey) -> Self {
        let kid = thumbprint(&key.verifying_key().to_bytes());
        Self { kid, key }
    }

    /// The 32-byte seed, for storage only.
    pub fn private_bytes(&self) -> [u8; 32] {
        self.key.to_bytes()
    }

    /// The 32-byte Ed25519 public key.
    pub fn public_bytes(&self) -> [u8; 32] {
        self.key.verifying_key().to_bytes()
    }

    /// The public JWK: `kty`, `crv`, `x`, `kid`, `use`, `alg`; never `d`.
    pub fn public_jwk(&self) -> serde_json::Value {
        serde_json::json!({
            "kty": "OKP",
            "crv": "Ed25519",
            "x": URL_SAFE_NO_PAD.encode(self.public_bytes()),
            "kid": self.kid,
            "use": "sig",
            "alg": "EdDSA",
        })
    }
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

/// RFC 7638 thumbprint of an Ed25519 public key: SHA-256 over the canonical
/// `{"crv":"Ed25519","kty":"OKP","x":"..."}`, base64url without padding.
pub fn thumbprint(public: &[u8; 32]) -> String {
    let canonical = format!(
        r#"{{"crv":"Ed25519","kty":"OKP","x":"{}"}}"#,
        URL_SAFE_NO_PAD.encode(public)
    );
    URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes()))
}

/// The Ed25519 keys of a JWKS document (`{"keys":[...]}`), as `(kid, x)`.
/// Keys of other types are skipped; an Ed25519 key without `kid` gets its
/// thumbprint.
pub fn parse_jwks(jwks: &serde_json::Value) -> Result<Vec<PublicKey>, VerifyError> {
    let list = jwks
        .get("keys")
        .and_then(|k| k.as_array())
        .ok_or(VerifyError::BadJwks("no \"keys\" array"))?;
    let mut out = Vec::new();
    for jwk in list {
        if jwk.get("kty").and_then(|v| v.as_str()) != Some("OKP")
            || jwk.get("crv").and_then(|v| v.as_str()) != Some("Ed25519")
        {
            continue;
        }
        let x = jwk
            .get("x")
            .and_then(|v| v.as_str())
            .ok_or(VerifyError::BadJwks("Ed25519 key without \"x\""))?;
        let bytes: [u8; 32] = URL_SAFE_NO_PAD
            .decode(x)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or(VerifyError::BadJwks("\"x\" is not 32 bytes of base64url"))?;
        let kid = match jwk.get("kid").and_then(|v| v.as_str()) {
            Some(kid) => kid.to_owned(),
            None => thumbprint(&bytes),
        };
        out.push((kid, bytes));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thumbprint_matches_rfc8037_a3() {
        // RFC 8037 A.1 key; A.3 gives its thumbprint.
        let d = URL_SAFE_NO_PAD
            .decode("nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A")
            .unwrap();
        let key = SigningKey::from_private_bytes(&d).unwrap();
        assert_eq!(
            URL_SAFE_NO_PAD.encode(key.public_bytes()),
            "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"
        );
        assert_eq!(key.kid, "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k");
    }

    #[test]
    fn private_bytes_round_trip_and_bad_lengths_are_refused() {
        let key = SigningKey::generate();
        let again = SigningKey::from_private_bytes(&key.private_bytes()).unwrap();
        assert_eq!(again.kid, key.kid);
        assert_ne!(SigningKey::generate().kid, key.kid);
        assert!(matches!(
            SigningKey::from_private_bytes(&[0; 31]),
            Err(SigningError::BadPrivateKey(31))
        ));
    }

    #[test]
    fn debug_never_prints_the_private_key() {
        let key = SigningKey::generate();
        let shown = format!("{key:?}");
        assert!(shown.contains(&key.kid));
        let seed = key.private_bytes();
        for encoded in [
            URL_SAFE_NO_PAD.encode(seed),
            base64::engine::general_purpose::STANDARD.encode(seed),
            format!("{seed:?}"),
        ] {
            assert!(!shown.contains(&encoded), "{shown} leaks {encoded}");
        }
        assert!(!shown.contains("key:"), "{shown}");
    }

    #[test]
    fn parse_jwks_skips_other_keys_and_refuses_garbage() {
        let jwks = serde_json::json!({"keys": [
            {"kty": "RSA", "n": "AQAB", "e": "AQAB"},
            {"kty": "OKP", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"},
        ]});
        let keys = parse_jwks(&jwks).unwrap();
        assert_eq!(keys.len(), 1);
        assert_eq!(keys[0].0, "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k");
        assert!(parse_jwks(&serde_json::json!({})).is_err());
        let short = serde_json::json!({"keys": [{"kty": "OKP", "crv": "Ed25519", "x": "AAAA"}]});
        assert!(parse_jwks(&short).is_err());
    }
}
