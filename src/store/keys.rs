//! Ed25519 signing keys in `walhook.signing_keys`: the delivery stage's key ring
//! comes from here, and the JWKS endpoint publishes it.
//!
//! The current key is the newest unretired one (by `created_at`); every unretired
//! key stays in the JWKS and signs a `v1a` entry, so receivers can fetch a rotated
//! key before it becomes the only one. Rotate with `walhook keys rotate`. Retire an
//! old key with `walhook keys retire <kid>` or
//! `UPDATE walhook.signing_keys SET retired_at = now() WHERE kid = '...'`;
//! a running daemon picks the change up on its next key refresh.
//!
//! `private_key` holds the 32-byte Ed25519 seed; protect the table like any
//! other secret store (it is never logged nor put into events).

use crate::crypto::{BadPrivateKey, SigningKey};
use tokio_postgres::Client;

/// Advisory lock key serialising first-key creation across walhook instances.
const ENSURE_LOCK: i64 = 0x7761_6c68_6b65_7973; // "walhkeys"

#[derive(Debug, thiserror::Error)]
pub enum KeysError {
    #[error("signing keys: database error: {0}; check the connection and run `walhook migrate`")]
    Database(#[from] tokio_postgres::Error),
    #[error(
        "signing key {0:?} does not exist: list keys with `SELECT kid, retired_at FROM walhook.signing_keys`"
    )]
    UnknownKid(String),
    #[error("signing key {0:?} is already retired")]
    AlreadyRetired(String),
    #[error(
        "signing key {0:?} is the only unretired key: run `walhook keys rotate` first, then retire it"
    )]
    LastKey(String),
    #[error(
        "signing key {kid:?} in walhook.signing_keys is unusable ({source}); retire it and run `walhook keys rotate`"
    )]
    Corrupt {
        kid: String,
        #[source]
        source: BadPrivateKey,
    },
    #[error(
        "signing key {0:?} in walhook.signing_keys does not match its public key or kid; retire it and run `walhook keys rotate`"
    )]
    Mismatch(String),
}

/// Create a first key when no unretired key exists. Safe to call from several
/// instances at once: a session advisory lock serialises the check-and-insert,
/// and each statement sees the rows committed before it took the lock.
pub async fn ensure_key(client: &Client) -> Result<(), KeysError> {
    client
        .execute("SELECT pg_advisory_lock($1)", &[&ENSURE_LOCK])
        .await?;
    let key = SigningKey::generate();
    let inserted = client
        .execute(
            "INSERT INTO walhook.signing_keys (kid, public_key, private_key)
             SELECT $1, $2, $3
              WHERE NOT EXISTS (SELECT 1 FROM walhook.signing_keys WHERE retired_at IS NULL)",
            &[
                &key.kid,
                &key.public_bytes().as_slice(),
                &key.private_bytes().as_slice(),
            ],
        )
        .await;
    let unlocked = client
        .execute("SELECT pg_advisory_unlock($1)", &[&ENSURE_LOCK])
        .await;
    if inserted? == 1 {
        tracing::info!(kid = %key.kid, "created the first signing key");
    }
    unlocked?;
    Ok(())
}

/// Make a new key current; returns its kid. The previous keys stay active.
pub async fn rotate(client: &Client) -> Result<String, KeysError> {
    let key = SigningKey::generate();
    client
        .execute(
            "INSERT INTO walhook.signing_keys (kid, public_key, private_key) VALUES ($1, $2, $3)",
            &[
                &key.kid,
                &key.public_bytes().as_slice(),
                &key.private_bytes().as_slice(),
            ],
        )
        .await?;
    tracing::info!(kid = %key.kid, "rotated signing key");
    Ok(key.kid)
}

/// Retire a key: it stops signing and leaves the JWKS. Refuses to retire the
/// last unretired key, which would leave walhook unable to sign.
pub async fn retire(client: &Client, kid: &str) -> Result<(), KeysError> {
    let updated = client
        .execute(
            "UPDATE walhook.signing_keys SET retired_at = now()
              WHERE kid = $1 AND retired_at IS NULL
                AND EXISTS (SELECT 1 FROM walhook.signing_keys
                             WHERE retired_at IS NULL AND kid <> $1)",
            &[&kid],
        )
        .await?;
    if updated == 1 {
        tracing::info!(kid, "retired signing key");
        return Ok(());
    }
    let row = client
        .query_opt(
            "SELECT retired_at IS NOT NULL FROM walhook.signing_keys WHERE kid = $1",
            &[&kid],
        )
        .await?;
    Err(match row.map(|r| r.get::<_, bool>(0)) {
        None => KeysError::UnknownKid(kid.to_owned()),
        Some(true) => KeysError::AlreadyRetired(kid.to_owned()),
        Some(false) => KeysError::LastKey(kid.to_owned()),
    })
}

/// Unretired keys, current (newest) first.
pub async fn load_active(client: &Client) -> Result<Vec<SigningKey>, KeysError> {
    let rows = client
        .query(
            "SELECT kid, public_key, private_key FROM walhook.signing_keys
              WHERE retired_at IS NULL ORDER BY created_at DESC, kid",
            &[],
        )
        .await?;
    rows.iter()
        .map(|row| {
            let kid: String = row.get(0);
            let public: Vec<u8> = row.get(1);
            let private: Vec<u8> = row.get(2);
            let key =
                SigningKey::from_private_bytes(&private).map_err(|source| KeysError::Corrupt {
                    kid: kid.clone(),
                    source,
                })?;
            if key.kid != kid || key.public_bytes().as_slice() != public.as_slice() {
                return Err(KeysError::Mismatch(kid));
            }
            Ok(key)
        })
        .collect()
}
