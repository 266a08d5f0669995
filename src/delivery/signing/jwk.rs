//! Ed25519 keys as JWKs: the public JWK form published in the JWKS and read
//! back by receivers. The key type itself is [`crate::crypto::SigningKey`].

use super::{PublicKey, SigningKey, VerifyError};
use crate::crypto::thumbprint;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

impl SigningKey {
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
