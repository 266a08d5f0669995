//! Events, deliveries and attempts in PostgreSQL.

pub mod deliveries;
pub mod events;
pub mod keys;
pub mod migrate;
pub mod retention;
pub mod settings;

/// Open a SQL connection and drive it on a background task.
pub async fn connect(
    config: &tokio_postgres::Config,
) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let (client, connection) = config.connect(tokio_postgres::NoTls).await?;
    tokio::spawn(async move {
        if let Err(error) = connection.await {
            tracing::warn!(%error, "database connection closed");
        }
    });
    Ok(client)
}
