//! STUB (owned by the delivery helper): retention sweeps.
pub async fn sweep(
    _client: &tokio_postgres::Client,
    _settings: &super::settings::Settings,
) -> Result<(u64, u64), tokio_postgres::Error> {
    Ok((0, 0))
}
