//! Bearer tokens of the `/v1` API in `walhook.api_tokens`.
//!
//! A token is `whk_` + 32 random bytes (base64url). Only its SHA-256 is stored,
//! so a leaked table does not leak tokens; `walhook api-tokens create` shows the
//! token once. Revoking deletes the row (the audit log keeps its history), and
//! the name may then be used again.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use rand::RngCore;
use sha2::{Digest, Sha256};
use tokio_postgres::Client;
use tokio_postgres::error::SqlState;

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("an API token named {0:?} already exists: revoke it first or choose another name")]
    Exists(String),
    #[error("no API token named {0:?}: see `walhook api-tokens list`")]
    Unknown(String),
    #[error(
        "invalid token name {0:?}: use 1-64 letters, digits, '_', '.', '@' or '-', starting with a letter or digit"
    )]
    BadName(String),
    #[error("API tokens: database error: {0}; check the connection and run `walhook migrate`")]
    Database(#[from] tokio_postgres::Error),
}

/// A token as listed (never the token itself).
#[derive(Debug, Clone, serde::Serialize)]
pub struct TokenInfo {
    pub name: String,
    pub created_at: DateTime<Utc>,
}

/// SHA-256 of a token, lowercase hex: what the table stores.
pub fn token_hash(token: &str) -> String {
    Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn generate_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    format!("whk_{}", URL_SAFE_NO_PAD.encode(bytes))
}

/// Create a token named `name`; returns the token (shown once, never stored).
pub async fn create(client: &Client, name: &str) -> Result<String, TokenError> {
    let token = generate_token();
    let result = client
        .execute(
            "INSERT INTO walhook.api_tokens (name, token_sha256) VALUES ($1, $2)",
            &[&name, &token_hash(&token)],
        )
        .await;
    match result {
        Ok(_) => Ok(token),
        Err(e) if e.code() == Some(&SqlState::UNIQUE_VIOLATION) => {
            Err(TokenError::Exists(name.to_owned()))
        }
        Err(e) if e.code() == Some(&SqlState::CHECK_VIOLATION) => {
            Err(TokenError::BadName(name.to_owned()))
        }
        Err(e) => Err(e.into()),
    }
}

/// Every token, oldest first.
pub async fn list(client: &Client) -> Result<Vec<TokenInfo>, TokenError> {
    let rows = client
        .query(
            "SELECT name, created_at FROM walhook.api_tokens ORDER BY created_at, name",
            &[],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| TokenInfo {
            name: r.get(0),
            created_at: r.get(1),
        })
        .collect())
}

/// Revoke (delete) the token named `name`.
pub async fn revoke(client: &Client, name: &str) -> Result<(), TokenError> {
    let n = client
        .execute("DELETE FROM walhook.api_tokens WHERE name = $1", &[&name])
        .await?;
    if n == 0 {
        return Err(TokenError::Unknown(name.to_owned()));
    }
    Ok(())
}

/// The name of the token `token`, if it is a live one.
pub async fn authenticate(
    client: &Client,
    token: &str,
) -> Result<Option<String>, tokio_postgres::Error> {
    let row = client
        .query_opt(
            "SELECT name FROM walhook.api_tokens WHERE token_sha256 = $1",
            &[&token_hash(token)],
        )
        .await?;
    Ok(row.map(|r| r.get(0)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_random_and_hashed_as_hex() {
        let (a, b) = (generate_token(), generate_token());
        assert_ne!(a, b);
        assert!(a.starts_with("whk_") && a.len() == 4 + 43, "{a}");
        assert_eq!(
            token_hash("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
