//! Standard Webhooks signatures (`webhook-signature`), signing and verifying.
//!
//! Signed content is `{webhook-id}.{webhook-timestamp}.{body}` over the exact
//! body bytes. The header holds space-separated `v1,<base64 HMAC-SHA256>` (key:
//! the base64-decoded part of the `whsec_` secret) and `v1a,<base64 Ed25519>`
//! entries; a receiver accepts when any entry matches a credential it holds, which
//! is what makes secret and key rotation seamless.

use super::{HeaderLookup, PublicKey, SignatureMemo, SigningError, SigningKey, VerifyError};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

const SECRET_PREFIX: &str = "whsec_";

/// Which schemes a verified delivery carried a matching signature for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedSchemes {
    /// A `v1` entry matched the secret.
    pub hmac: bool,
    /// The kid of the key whose `v1a` entry matched.
    pub ed25519_kid: Option<String>,
}

/// The HMAC key of a `whsec_<base64>` secret; `None` when malformed or empty.
fn decode_secret(secret: &str) -> Option<Vec<u8>> {
    let b64 = secret.strip_prefix(SECRET_PREFIX)?;
    STANDARD.decode(b64).ok().filter(|k| !k.is_empty())
}

fn signed_content(webhook_id: &str, timestamp: &str, body: &[u8]) -> Vec<u8> {
    let mut content = Vec::with_capacity(webhook_id.len() + timestamp.len() + body.len() + 2);
    content.extend_from_slice(webhook_id.as_bytes());
    content.push(b'.');
    content.extend_from_slice(timestamp.as_bytes());
    content.push(b'.');
    content.extend_from_slice(body);
    content
}

fn hmac(key: &[u8]) -> Hmac<Sha256> {
    // HMAC accepts keys of any length; this cannot fail.
    <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes any key length")
}

/// The memo's name for `key`'s `v1a` signature over
/// `{webhook_id}.{timestamp}.{body}` (form `v` of
/// [`SignatureMemo::sign_identified`]): the body by its SHA-256, so the
/// deliveries of a fan-out find the signature without hashing the body
/// again. The id goes with its length and the timestamp is an integer, so
/// the parts determine the content.
fn v1a_id(key: &SigningKey, webhook_id: &str, timestamp: &str, body_sha256: &[u8; 32]) -> [u8; 32] {
    Sha256::new()
        .chain_update(key.kid.as_bytes())
        .chain_update(b"\0v")
        .chain_update((webhook_id.len() as u64).to_be_bytes())
        .chain_update(webhook_id.as_bytes())
        .chain_update(b".")
        .chain_update(timestamp.as_bytes())
        .chain_update(b".")
        .chain_update(body_sha256)
        .finalize()
        .into()
}

/// The `webhook-signature` value: one `v1` per secret, then one `v1a` per key,
/// in the order given (current first). `body_sha256` is the SHA-256 of `body`.
pub(super) fn signature_header(
    webhook_id: &str,
    timestamp: i64,
    body: &[u8],
    body_sha256: &[u8; 32],
    secrets: &[&str],
    keys: &[SigningKey],
    memo: &mut SignatureMemo,
) -> Result<String, SigningError> {
    let timestamp = timestamp.to_string();
    let content = signed_content(webhook_id, &timestamp, body);
    let mut entries = Vec::with_capacity(secrets.len() + keys.len());
    for secret in secrets {
        let key = decode_secret(secret).ok_or(SigningError::BadSecret)?;
        let mut mac = hmac(&key);
        mac.update(&content);
        entries.push(format!(
            "v1,{}",
            STANDARD.encode(mac.finalize().into_bytes())
        ));
    }
    for key in keys {
        let id = v1a_id(key, webhook_id, &timestamp, body_sha256);
        let sig = memo.sign_identified(id, key, &content);
        entries.push(format!("v1a,{}", STANDARD.encode(sig)));
    }
    Ok(entries.join(" "))
}

/// Check `webhook-timestamp` against `now` (seconds since the epoch); returns it.
pub(super) fn check_timestamp(
    raw: &str,
    now: i64,
    tolerance_secs: i64,
) -> Result<i64, VerifyError> {
    let ts: i64 = raw
        .trim()
        .parse()
        .map_err(|_| VerifyError::Malformed("webhook-timestamp"))?;
    let skew = now.saturating_sub(ts);
    if skew.saturating_abs() > tolerance_secs {
        return Err(VerifyError::Stale(skew));
    }
    Ok(ts)
}

/// Verify a delivery's Standard Webhooks signatures.
///
/// Every credential given must be matched: with `secret` a `v1` entry must match
/// it, with `public_keys` a `v1a` entry must match one of them. The secret may be
/// given with or without its `whsec_` prefix. `webhook-timestamp` must be within
/// `tolerance_secs` of `now` (Standard Webhooks uses 5 minutes).
pub fn verify_standard_webhook(
    headers: HeaderLookup<'_>,
    body: &[u8],
    secret: Option<&str>,
    public_keys: &[PublicKey],
    now: i64,
    tolerance_secs: i64,
) -> Result<VerifiedSchemes, VerifyError> {
    if secret.is_none() && public_keys.is_empty() {
        return Err(VerifyError::NoCredentials);
    }
    let id = headers("webhook-id").ok_or(VerifyError::MissingHeader("webhook-id"))?;
    let ts = headers("webhook-timestamp").ok_or(VerifyError::MissingHeader("webhook-timestamp"))?;
    let sigs =
        headers("webhook-signature").ok_or(VerifyError::MissingHeader("webhook-signature"))?;
    let ts = check_timestamp(&ts, now, tolerance_secs)?;
    let content = signed_content(&id, &ts.to_string(), body);

    let mut v1 = Vec::new();
    let mut v1a = Vec::new();
    for entry in sigs.split_whitespace() {
        let Some((version, sig)) = entry.split_once(',') else {
            continue;
        };
        let Ok(sig) = STANDARD.decode(sig) else {
            continue;
        };
        match version {
            "v1" => v1.push(sig),
            "v1a" => v1a.push(sig),
            _ => {}
        }
    }

    let mut verified = VerifiedSchemes {
        hmac: false,
        ed25519_kid: None,
    };
    if let Some(secret) = secret {
        let prefixed;
        let secret = if secret.starts_with(SECRET_PREFIX) {
            secret
        } else {
            prefixed = format!("{SECRET_PREFIX}{secret}");
            &prefixed
        };
        let key = decode_secret(secret).ok_or(VerifyError::BadSecret)?;
        verified.hmac = v1.iter().any(|sig| {
            let mut mac = hmac(&key);
            mac.update(&content);
            mac.verify_slice(sig).is_ok()
        });
        if !verified.hmac {
            return Err(VerifyError::NoMatchingHmac);
        }
    }
    if !public_keys.is_empty() {
        verified.ed25519_kid = public_keys
            .iter()
            .find(|(_, public)| v1a.iter().any(|sig| ed25519_ok(public, &content, sig)))
            .map(|(kid, _)| kid.clone());
        if verified.ed25519_kid.is_none() {
            return Err(VerifyError::NoMatchingEd25519);
        }
    }
    Ok(verified)
}

/// Strict Ed25519 verification of `sig` over `message`.
pub(super) fn ed25519_ok(public: &[u8; 32], message: &[u8], sig: &[u8]) -> bool {
    let Ok(key) = ed25519_dalek::VerifyingKey::from_bytes(public) else {
        return false;
    };
    let Ok(sig) = ed25519_dalek::Signature::from_slice(sig) else {
        return false;
    };
    key.verify_strict(message, &sig).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    // The Standard Webhooks specification's test vector (also used by its
    // reference libraries' tests).
    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const TS: i64 = 1_614_265_330;
    const BODY: &[u8] = br#"{"test": 2432232314}"#;
    const EXPECTED: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

    fn sha(body: &[u8]) -> [u8; 32] {
        crate::delivery::signing::body_sha256(body)
    }

    fn headers(id: &str, ts: i64, sig: &str) -> impl Fn(&str) -> Option<String> {
        let (id, ts, sig) = (id.to_owned(), ts.to_string(), sig.to_owned());
        move |name: &str| match name {
            "webhook-id" => Some(id.clone()),
            "webhook-timestamp" => Some(ts.clone()),
            "webhook-signature" => Some(sig.clone()),
            _ => None,
        }
    }

    #[test]
    fn hmac_matches_the_spec_vector() {
        assert_eq!(
            signature_header(
                ID,
                TS,
                BODY,
                &sha(BODY),
                &[SECRET],
                &[],
                &mut SignatureMemo::default()
            )
            .unwrap(),
            EXPECTED
        );
        let h = headers(ID, TS, EXPECTED);
        let v = verify_standard_webhook(&h, BODY, Some(SECRET), &[], TS, 300).unwrap();
        assert!(v.hmac);
        // Reference libraries accept the secret without its prefix too.
        let bare = SECRET.strip_prefix("whsec_").unwrap();
        verify_standard_webhook(&h, BODY, Some(bare), &[], TS, 300).unwrap();
    }

    #[test]
    fn entries_are_ordered_secrets_then_keys_current_first() {
        let keys = [SigningKey::generate(), SigningKey::generate()];
        let other = "whsec_c2VjcmV0LW9mLWEtcm90YXRlZC1lbmRwb2ludA==";
        let header = signature_header(
            ID,
            TS,
            BODY,
            &sha(BODY),
            &[SECRET, other],
            &keys,
            &mut SignatureMemo::default(),
        )
        .unwrap();
        let entries: Vec<&str> = header.split(' ').collect();
        assert_eq!(entries.len(), 4);
        assert_eq!(entries[0], EXPECTED);
        assert!(entries[1].starts_with("v1,") && entries[1] != EXPECTED);
        assert!(entries[2].starts_with("v1a,") && entries[3].starts_with("v1a,"));
        // The old key's entry verifies against a key set listing only the old key.
        let old = [(keys[1].kid.clone(), keys[1].public_bytes())];
        let v =
            verify_standard_webhook(&headers(ID, TS, &header), BODY, None, &old, TS, 300).unwrap();
        assert_eq!(v.ed25519_kid.as_deref(), Some(keys[1].kid.as_str()));
    }

    #[test]
    fn a_memo_shared_across_bodies_gives_each_its_own_v1a() {
        let key = SigningKey::generate();
        let public = [(key.kid.clone(), key.public_bytes())];
        let mut memo = SignatureMemo::default();
        let other: &[u8] = br#"{"test": 2432232315}"#;
        for body in [BODY, other, BODY, other] {
            let header = signature_header(
                ID,
                TS,
                body,
                &sha(body),
                &[],
                std::slice::from_ref(&key),
                &mut memo,
            )
            .unwrap();
            let v =
                verify_standard_webhook(&headers(ID, TS, &header), body, None, &public, TS, 300)
                    .unwrap();
            assert_eq!(v.ed25519_kid.as_deref(), Some(key.kid.as_str()));
        }
        assert_eq!(memo.kept(), 2);
    }

    #[test]
    fn tampering_staleness_and_wrong_credentials_fail() {
        let key = SigningKey::generate();
        let public = [(key.kid.clone(), key.public_bytes())];
        let header = signature_header(
            ID,
            TS,
            BODY,
            &sha(BODY),
            &[SECRET],
            std::slice::from_ref(&key),
            &mut SignatureMemo::default(),
        )
        .unwrap();
        let ok = headers(ID, TS, &header);
        verify_standard_webhook(&ok, BODY, Some(SECRET), &public, TS + 299, 300).unwrap();

        let tampered = br#"{"test": 2432232315}"#;
        assert_eq!(
            verify_standard_webhook(&ok, tampered, Some(SECRET), &[], TS, 300),
            Err(VerifyError::NoMatchingHmac)
        );
        assert_eq!(
            verify_standard_webhook(&ok, tampered, None, &public, TS, 300),
            Err(VerifyError::NoMatchingEd25519)
        );
        let other_id = headers("msg_other", TS, &header);
        for (secret, keys) in [(Some(SECRET), &[][..]), (None, &public[..])] {
            assert!(verify_standard_webhook(&other_id, BODY, secret, keys, TS, 300).is_err());
        }
        assert_eq!(
            verify_standard_webhook(&ok, BODY, Some(SECRET), &public, TS + 301, 300),
            Err(VerifyError::Stale(301))
        );
        assert_eq!(
            verify_standard_webhook(&ok, BODY, Some(SECRET), &public, TS - 301, 300),
            Err(VerifyError::Stale(-301))
        );
        let stranger = SigningKey::generate();
        let wrong = [(stranger.kid.clone(), stranger.public_bytes())];
        assert_eq!(
            verify_standard_webhook(&ok, BODY, None, &wrong, TS, 300),
            Err(VerifyError::NoMatchingEd25519)
        );
        let wrong_secret = "whsec_c2VjcmV0LW9mLWEtcm90YXRlZC1lbmRwb2ludA==";
        assert_eq!(
            verify_standard_webhook(&ok, BODY, Some(wrong_secret), &[], TS, 300),
            Err(VerifyError::NoMatchingHmac)
        );
        assert_eq!(
            verify_standard_webhook(&ok, BODY, None, &[], TS, 300),
            Err(VerifyError::NoCredentials)
        );
        let none = |_: &str| None;
        assert_eq!(
            verify_standard_webhook(&none, BODY, Some(SECRET), &[], TS, 300),
            Err(VerifyError::MissingHeader("webhook-id"))
        );
    }
}
