//! STUB (owned by the signing helper): signing keys in walhook.signing_keys.
use crate::delivery::signing::SigningKey;

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct KeysError(String);

pub async fn ensure_key(_client: &tokio_postgres::Client) -> Result<(), KeysError> {
    Ok(())
}
pub async fn rotate(_client: &tokio_postgres::Client) -> Result<String, KeysError> {
    todo!()
}
pub async fn retire(_client: &tokio_postgres::Client, _kid: &str) -> Result<(), KeysError> {
    todo!()
}
pub async fn load_active(_client: &tokio_postgres::Client) -> Result<Vec<SigningKey>, KeysError> {
    Ok(Vec::new())
}
