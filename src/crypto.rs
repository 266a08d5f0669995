//! Signing key material, below the stages that use it: the store keeps keys in
//! `walhook.signing_keys`, delivery signs with them, and neither imports the
//! other for it.
//!
//! An Ed25519 key is identified by its RFC 7638 JWK thumbprint (`kid`). The
//! private part is a 32-byte seed (RFC 8032), the form stored in
//! `walhook.signing_keys.private_key`; it never leaves this type except through
//! [`SigningKey::private_bytes`] for storage.

use std::collections::{HashMap, VecDeque};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::Signer;
use sha2::{Digest, Sha256};

/// An Ed25519 signing key with its JWK thumbprint (`kid`).
///
/// `Debug` prints the kid only: the private key never reaches a log.
#[derive(Clone)]
pub struct SigningKey {
    pub kid: String,
    pub key: ed25519_dalek::SigningKey,
}

/// Stored key bytes that are not an Ed25519 seed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "stored Ed25519 private key has {0} bytes, expected a 32-byte seed: check walhook.signing_keys"
)]
pub struct BadPrivateKey(pub usize);

impl SigningKey {
    /// A fresh key from the operating system's random source.
    pub fn generate() -> Self {
        Self::from_dalek(ed25519_dalek::SigningKey::generate(&mut rand::rngs::OsRng))
    }

    /// A key from its 32-byte Ed25519 seed.
    pub fn from_private_bytes(bytes: &[u8]) -> Result<Self, BadPrivateKey> {
        let seed: &[u8; 32] = bytes.try_into().map_err(|_| BadPrivateKey(bytes.len()))?;
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
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

/// The last Ed25519 signatures made, by key and message.
///
/// Ed25519 is deterministic (RFC 8032): one key over one message always gives
/// the same signature, so a repeat is looked up instead of computed. Repeats
/// are common: an event fanned out to several subscriptions within one second
/// has the same `v1a` content (`{webhook-id}.{timestamp}.{body}`) for all of
/// them, and the same RFC 9421 signature base for those sharing a URL. Their
/// queues drift apart by up to a few thousand deliveries, hence the size. A
/// signature is found by the SHA-256 of its kid and message (collision
/// resistant, so no other message can take its place), which costs a few
/// microseconds where signing costs tens. A caller that already holds a
/// digest of the message's content can name it without hashing the message
/// again ([`SignatureMemo::sign_identified`]).
pub struct SignatureMemo {
    signatures: HashMap<[u8; 32], [u8; 64]>,
    /// Oldest first, for eviction.
    order: VecDeque<[u8; 32]>,
    keep: usize,
}

impl Default for SignatureMemo {
    fn default() -> Self {
        Self::keeping(Self::KEEP)
    }
}

impl SignatureMemo {
    /// Signatures kept (about 100 bytes each).
    const KEEP: usize = 4_096;

    fn keeping(keep: usize) -> Self {
        SignatureMemo {
            signatures: HashMap::new(),
            order: VecDeque::new(),
            keep,
        }
    }

    /// Signatures kept now.
    pub fn kept(&self) -> usize {
        self.signatures.len()
    }

    /// `key`'s Ed25519 signature over `message`.
    pub fn sign(&mut self, key: &SigningKey, message: &[u8]) -> [u8; 64] {
        let id: [u8; 32] = Sha256::new()
            .chain_update(key.kid.as_bytes())
            .chain_update(b"\0m")
            .chain_update(message)
            .finalize()
            .into();
        self.sign_identified(id, key, message)
    }

    /// `key`'s Ed25519 signature over `message`, found by `id`: the SHA-256
    /// of the kid, a NUL (the kid is base64url: it has none), one byte naming
    /// the form of the rest, and the rest, which determines `message`. Forms:
    /// `m`, the message itself ([`SignatureMemo::sign`]); `v`, a Standard
    /// Webhooks `v1a` content by its parts (`signing::standard_webhooks`).
    pub fn sign_identified(&mut self, id: [u8; 32], key: &SigningKey, message: &[u8]) -> [u8; 64] {
        if let Some(signature) = self.signatures.get(&id) {
            return *signature;
        }
        let signature = key.key.sign(message).to_bytes();
        if self.order.len() == self.keep
            && let Some(oldest) = self.order.pop_front()
        {
            self.signatures.remove(&oldest);
        }
        self.order.push_back(id);
        self.signatures.insert(id, signature);
        signature
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
            Err(BadPrivateKey(31))
        ));
    }

    #[test]
    fn memo_gives_the_signature_of_each_key_and_message() {
        let (a, b) = (SigningKey::generate(), SigningKey::generate());
        let mut memo = SignatureMemo::keeping(8);
        for _ in 0..2 {
            for key in [&a, &b] {
                for message in [&b"one"[..], b"two", b""] {
                    assert_eq!(
                        memo.sign(key, message),
                        key.key.sign(message).to_bytes(),
                        "{key:?} over {message:?}"
                    );
                }
            }
        }
        assert_eq!(memo.signatures.len(), 6);
        for n in 0..16 {
            let message = n.to_string();
            assert_eq!(
                memo.sign(&a, message.as_bytes()),
                a.key.sign(message.as_bytes()).to_bytes()
            );
        }
        assert_eq!(memo.signatures.len(), 8);
        assert_eq!(memo.order.len(), 8);
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
}
