//! Events, deliveries and attempts in PostgreSQL.

pub mod deliveries;
pub mod events;
pub mod keys;
pub mod migrate;
pub mod retention;
pub mod settings;

/// Open a SQL connection and drive it on a background task.
///
/// The session runs with `jit = off`: walhook's statements are short OLTP
/// queries, and on a fresh backlog (stale statistics) the claim query's cost
/// estimate crossed `jit_above_cost`, spending ~0.5 s compiling each claim.
pub async fn connect(
    config: &tokio_postgres::Config,
) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let mut config = config.clone();
    let options = match config.get_options() {
        Some(options) => format!("{options} -c jit=off"),
        None => "-c jit=off".to_owned(),
    };
    config.options(&options);
    let (client, connection) = config.connect(tokio_postgres::NoTls).await?;
    tokio::spawn(async move {
        if let Err(error) = connection.await {
            tracing::warn!(%error, "database connection closed");
        }
    });
    Ok(client)
}
