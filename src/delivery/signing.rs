//! Signatures on outgoing deliveries: the last pure step before a POST leaves.
//!
//! Every delivery carries two independent signature schemes so a receiver can use
//! whichever library it has (README, Signatures):
//!
//! - [Standard Webhooks](https://www.standardwebhooks.com/): `webhook-signature`
//!   holds `v1,<HMAC-SHA256>` per subscription secret and `v1a,<Ed25519>` per
//!   unretired signing key, all over `{webhook-id}.{webhook-timestamp}.{body}`
//!   (see [`standard_webhooks`]);
//! - RFC 9421 HTTP Message Signatures with Ed25519 and the current key, covering
//!   method, target URI, `content-digest` (RFC 9530), `content-type`, `webhook-id`
//!   and `webhook-timestamp` (see [`http_signature`]).
//!
//! Keys are identified by their RFC 7638 JWK thumbprint and published as a JWKS
//! (see [`jwk`]). Signing is a pure function of the request bytes and the keys:
//! no clock, no I/O, so the exact bytes signed are the bytes sent. The verifiers
//! here are for receivers (the demo receiver of `walhook dev`, the example
//! receiver and the tests); walhook itself never verifies.

use sha2::Digest;

pub mod http_signature;
pub mod jwk;
pub mod standard_webhooks;

pub use http_signature::verify_http_signature;
pub use jwk::parse_jwks;
pub use standard_webhooks::{VerifiedSchemes, verify_standard_webhook};

pub use crate::crypto::{SignatureMemo, SigningKey};

/// What is signed: the request as it will be sent.
pub struct RequestToSign<'a> {
    pub method: &'a str,
    pub target_uri: &'a str,
    pub content_type: &'a str,
    pub webhook_id: &'a str,
    pub timestamp: i64,
    pub body: &'a [u8],
    /// [`body_sha256`] of `body`: an event's deliveries share it, so its
    /// body is hashed once however many subscriptions it goes to.
    pub body_sha256: [u8; 32],
}

/// The SHA-256 of a request body.
pub fn body_sha256(body: &[u8]) -> [u8; 32] {
    sha2::Sha256::digest(body).into()
}

/// Which signature schemes a delivery carries
/// (`walhook.subscriptions.signature_schemes`; all three by default). Each
/// scheme left out is one signature less per delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Schemes {
    /// `v1`: HMAC-SHA256 with the subscription secret(s).
    pub v1: bool,
    /// `v1a`: Ed25519 with every unretired key.
    pub v1a: bool,
    /// RFC 9421 HTTP Message Signature (with its RFC 9530 `content-digest`).
    pub rfc9421: bool,
}

impl Schemes {
    pub const ALL: Schemes = Schemes {
        v1: true,
        v1a: true,
        rfc9421: true,
    };

    /// From the column's names; the database refuses unknown names and an
    /// empty list, so an unknown name here is ignored and nothing known means
    /// all.
    pub fn from_names<S: AsRef<str>>(names: &[S]) -> Schemes {
        let has = |scheme: &str| names.iter().any(|n| n.as_ref() == scheme);
        let schemes = Schemes {
            v1: has("v1"),
            v1a: has("v1a"),
            rfc9421: has("rfc9421"),
        };
        if schemes
            == (Schemes {
                v1: false,
                v1a: false,
                rfc9421: false,
            })
        {
            Schemes::ALL
        } else {
            schemes
        }
    }
}

impl Default for Schemes {
    fn default() -> Self {
        Schemes::ALL
    }
}

/// Header values to add to the request; a scheme not asked for is `None`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedHeaders {
    /// `webhook-signature` (`v1` and/or `v1a` entries)
    pub webhook_signature: Option<String>,
    /// The RFC 9421 headers.
    pub http_signature: Option<HttpSignatureHeaders>,
}

/// `content-digest`, `signature-input` and `signature`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpSignatureHeaders {
    pub content_digest: String,
    pub signature_input: String,
    pub signature: String,
}

/// Why a request could not be signed; none of these is retryable.
#[derive(Debug, thiserror::Error)]
pub enum SigningError {
    #[error("subscription secret is not of the form whsec_<base64>")]
    BadSecret,
    #[error(
        "no unretired signing key: run `walhook keys rotate` (or restart walhook, which creates one)"
    )]
    NoSigningKey,
}

/// Why a receiver rejects a delivery. Messages name the header at fault; they
/// never contain secrets or the body.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("missing header {0}")]
    MissingHeader(&'static str),
    #[error("header {0} is malformed")]
    Malformed(&'static str),
    #[error("timestamp is {0} seconds away from now, outside the tolerance")]
    Stale(i64),
    #[error("no credential to verify with: give a whsec_ secret or public keys")]
    NoCredentials,
    #[error("secret is not of the form whsec_<base64>")]
    BadSecret,
    #[error("no v1 (HMAC-SHA256) signature matches the secret")]
    NoMatchingHmac,
    #[error("no v1a (Ed25519) signature matches a known key")]
    NoMatchingEd25519,
    #[error("content-digest does not match the body")]
    DigestMismatch,
    #[error("signature covers {0}, which the request lacks")]
    MissingComponent(String),
    #[error("signature does not cover required component {0}")]
    NotCovered(&'static str),
    #[error("signature algorithm {0:?} is not ed25519")]
    BadAlgorithm(String),
    #[error("signature key {0:?} is not in the JWKS")]
    UnknownKey(String),
    #[error("RFC 9421 signature does not verify")]
    BadSignature,
    #[error("JWKS is malformed: {0}")]
    BadJwks(&'static str),
    #[error("cannot fetch the JWKS: {0}")]
    JwksUnavailable(String),
}

/// How a receiver reads a request header (case-insensitive name, first value).
/// A closure so axum, reqwest and test code can all call the verifiers.
pub type HeaderLookup<'a> = &'a dyn Fn(&str) -> Option<String>;

/// A public key as a receiver knows it: `(kid, Ed25519 public key bytes)`.
pub type PublicKey = (String, [u8; 32]);

/// Sign, for each scheme in `schemes`, with every symmetric secret
/// (`whsec_...`, current first) and every unretired key (current first; RFC
/// 9421 uses the current one). Ed25519 signatures made recently over the
/// same content come from `memo`.
pub fn sign(
    req: &RequestToSign<'_>,
    secrets: &[&str],
    keys: &[SigningKey],
    schemes: Schemes,
    memo: &mut SignatureMemo,
) -> Result<SignedHeaders, SigningError> {
    debug_assert_eq!(
        req.body_sha256,
        body_sha256(req.body),
        "body_sha256 is the body's"
    );
    let current = keys.first();
    if (schemes.v1a || schemes.rfc9421) && current.is_none() {
        return Err(SigningError::NoSigningKey);
    }
    let webhook_signature = if schemes.v1 || schemes.v1a {
        Some(standard_webhooks::signature_header(
            req.webhook_id,
            req.timestamp,
            req.body,
            &req.body_sha256,
            if schemes.v1 { secrets } else { &[] },
            if schemes.v1a { keys } else { &[] },
            memo,
        )?)
    } else {
        None
    };
    let http_signature = match current.filter(|_| schemes.rfc9421) {
        Some(key) => {
            let (content_digest, signature_input, signature) = http_signature::sign(req, key, memo);
            Some(HttpSignatureHeaders {
                content_digest,
                signature_input,
                signature,
            })
        }
        None => None,
    };
    Ok(SignedHeaders {
        webhook_signature,
        http_signature,
    })
}

/// The public JWKS served at `/.well-known/jwks.json`: public parts only.
pub fn jwks(keys: &[SigningKey]) -> serde_json::Value {
    serde_json::json!({ "keys": keys.iter().map(SigningKey::public_jwk).collect::<Vec<_>>() })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(body: &[u8]) -> RequestToSign<'_> {
        RequestToSign {
            method: "POST",
            target_uri: "https://receiver.example/hooks?tenant=a%20b",
            content_type: "application/json",
            webhook_id: "7d7c9a3e-0f6b-4a53-8d0a-0c6c3f0b9e21",
            timestamp: 1_700_000_000,
            body,
            body_sha256: body_sha256(body),
        }
    }

    fn lookup(h: &SignedHeaders) -> impl Fn(&str) -> Option<String> + '_ {
        let http = h.http_signature.as_ref();
        move |name: &str| match name {
            "webhook-id" => Some("7d7c9a3e-0f6b-4a53-8d0a-0c6c3f0b9e21".into()),
            "webhook-timestamp" => Some("1700000000".into()),
            "webhook-signature" => h.webhook_signature.clone(),
            "content-type" => Some("application/json".into()),
            "content-digest" => http.map(|s| s.content_digest.clone()),
            "signature-input" => http.map(|s| s.signature_input.clone()),
            "signature" => http.map(|s| s.signature.clone()),
            _ => None,
        }
    }

    #[test]
    fn sign_produces_both_schemes_and_they_verify() {
        let keys = [SigningKey::generate(), SigningKey::generate()];
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let body = br#"{"apiresource":"/organisations/1","revision":3}"#;
        let h = sign(
            &request(body),
            &[secret],
            &keys,
            Schemes::ALL,
            &mut SignatureMemo::default(),
        )
        .unwrap();
        let parts: Vec<&str> = h.webhook_signature.as_deref().unwrap().split(' ').collect();
        assert_eq!(parts.len(), 3);
        assert!(parts[0].starts_with("v1,") && parts[1].starts_with("v1a,"));
        assert!(
            h.http_signature
                .as_ref()
                .unwrap()
                .signature_input
                .contains(&format!("keyid=\"{}\"", keys[0].kid))
        );
        let public: Vec<PublicKey> = keys
            .iter()
            .map(|k| (k.kid.clone(), k.public_bytes()))
            .collect();
        let l = lookup(&h);
        let v =
            verify_standard_webhook(&l, body, Some(secret), &public, 1_700_000_010, 300).unwrap();
        assert!(v.hmac);
        assert_eq!(v.ed25519_kid.as_deref(), Some(keys[0].kid.as_str()));
        let uri = request(body).target_uri;
        verify_http_signature("POST", uri, &l, body, &public, 1_700_000_010, 300).unwrap();
    }

    #[test]
    fn sign_without_keys_is_an_error_and_bad_secret_is_refused() {
        let body = b"{}";
        assert!(matches!(
            sign(
                &request(body),
                &["whsec_AAAA"],
                &[],
                Schemes::ALL,
                &mut SignatureMemo::default()
            ),
            Err(SigningError::NoSigningKey)
        ));
        let keys = [SigningKey::generate()];
        for bad in ["AAAA", "whsec_", "whsec_not base64!"] {
            assert!(matches!(
                sign(
                    &request(body),
                    &[bad],
                    &keys,
                    Schemes::ALL,
                    &mut SignatureMemo::default()
                ),
                Err(SigningError::BadSecret)
            ));
        }
    }

    #[test]
    fn only_the_chosen_schemes_are_signed() {
        let keys = [SigningKey::generate()];
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let body = b"{}";
        let mut memo = SignatureMemo::default();
        let mut only = |names: &[&str]| {
            let schemes = Schemes::from_names(names);
            sign(&request(body), &[secret], &keys, schemes, &mut memo).unwrap()
        };
        let v1 = only(&["v1"]);
        assert!(v1.webhook_signature.as_deref().unwrap().starts_with("v1,"));
        assert!(!v1.webhook_signature.as_deref().unwrap().contains("v1a,"));
        assert!(v1.http_signature.is_none());
        let v1a = only(&["v1a"]);
        assert!(
            v1a.webhook_signature
                .as_deref()
                .unwrap()
                .starts_with("v1a,")
        );
        assert!(v1a.http_signature.is_none());
        let rfc = only(&["rfc9421"]);
        assert!(rfc.webhook_signature.is_none());
        assert!(rfc.http_signature.is_some());
        // an HMAC-only subscription needs no signing key
        let hmac_only = sign(
            &request(body),
            &[secret],
            &[],
            Schemes::from_names(&["v1"]),
            &mut SignatureMemo::default(),
        )
        .unwrap();
        assert!(hmac_only.webhook_signature.is_some());
        assert_eq!(Schemes::from_names::<&str>(&[]), Schemes::ALL);
    }

    #[test]
    fn jwks_lists_public_parts_only() {
        let keys = [SigningKey::generate(), SigningKey::generate()];
        let set = jwks(&keys);
        let list = set["keys"].as_array().unwrap();
        assert_eq!(list.len(), 2);
        for (jwk, key) in list.iter().zip(&keys) {
            assert_eq!(jwk["kty"], "OKP");
            assert_eq!(jwk["crv"], "Ed25519");
            assert_eq!(jwk["use"], "sig");
            assert_eq!(jwk["alg"], "EdDSA");
            assert_eq!(jwk["kid"], key.kid.as_str());
            assert!(jwk.get("d").is_none());
        }
        let parsed = parse_jwks(&set).unwrap();
        assert_eq!(parsed[1], (keys[1].kid.clone(), keys[1].public_bytes()));
    }
}
