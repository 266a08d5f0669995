//! STUB (owned by the delivery helper): walhook.settings.
pub struct Settings;
pub async fn load(_client: &tokio_postgres::Client) -> Result<Settings, tokio_postgres::Error> {
    Ok(Settings)
}
