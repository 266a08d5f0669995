//! STUB (owned by the delivery helper): delivery claims and records.
pub async fn pending_count(_client: &tokio_postgres::Client) -> Result<i64, tokio_postgres::Error> {
    Ok(0)
}
pub async fn replay(
    _client: &tokio_postgres::Client,
    _subscription: uuid::Uuid,
    _from: i64,
    _to: Option<i64>,
) -> Result<u64, tokio_postgres::Error> {
    todo!()
}
