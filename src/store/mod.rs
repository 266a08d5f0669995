//! Events, deliveries and attempts in PostgreSQL.

pub mod api_tokens;
pub(crate) mod audit;
pub(crate) mod backfills;
pub(crate) mod config;
pub(crate) mod deliveries;
pub(crate) mod events;
pub(crate) mod history;
pub mod keys;
pub mod migrate;
pub(crate) mod monitor;
pub mod obligations;
pub mod prepared;
pub(crate) mod presence;
pub mod replay;
pub mod retention;
pub mod settings;
pub(crate) mod targets;
pub(crate) mod webhooks;

use tokio::sync::mpsc;
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::tls::{ConnectConfig, TlsError};
use prepared::PreparedClient;

/// A SQL connection could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error(
        "cannot connect to the database: {}; check --database-url (and its sslmode) and that PostgreSQL is running",
        crate::error::describe(.0)
    )]
    Postgres(#[from] tokio_postgres::Error),
    #[error("cannot set up TLS to the database: {0}")]
    Tls(#[from] TlsError),
}

/// Open a SQL connection (TLS as the URL's `sslmode` says) and drive it on a
/// background task.
///
/// The session runs with `jit = off`: walhook's statements are short OLTP
/// queries, and on a fresh backlog (stale statistics) the claim query's cost
/// estimate crossed `jit_above_cost`, spending ~0.5 s compiling each claim.
pub async fn connect(database: &ConnectConfig) -> Result<tokio_postgres::Client, ConnectError> {
    open(database, None).await
}

/// Like [`connect`], also handing over the session's `NOTIFY` messages (for
/// `LISTEN`). The receiver ends when the connection does.
pub async fn connect_with_notifications(
    database: &ConnectConfig,
) -> Result<(tokio_postgres::Client, Notifications), ConnectError> {
    let (tx, rx) = mpsc::unbounded_channel();
    Ok((open(database, Some(tx)).await?, rx))
}

/// A SQL connection for work done on a tick (gauges, settings, the event
/// writer): opened on first use, and again on the first use after it closed, so
/// the caller's tick paces the reconnects. Long-lived sessions reconnect with
/// backoff instead (`crate::reconnect`).
pub struct ReconnectingClient {
    database: ConnectConfig,
    client: Option<PreparedClient>,
}

impl ReconnectingClient {
    /// Not connected yet: the first [`ReconnectingClient::get`] connects.
    pub fn new(database: ConnectConfig) -> Self {
        ReconnectingClient {
            database,
            client: None,
        }
    }

    /// Starting with an open connection.
    pub fn connected(database: ConnectConfig, client: tokio_postgres::Client) -> Self {
        ReconnectingClient {
            database,
            client: Some(PreparedClient::new(client)),
        }
    }

    /// The open connection, connecting first when there is none or it closed.
    pub async fn get(&mut self) -> Result<&mut tokio_postgres::Client, ConnectError> {
        Ok(self.prepared().await?.client())
    }

    /// The open connection with the statements prepared on it, connecting
    /// first (with none prepared) when there is none or it closed.
    pub async fn prepared(&mut self) -> Result<&mut PreparedClient, ConnectError> {
        let client = match self.client.take().filter(|c| !c.is_closed()) {
            Some(client) => client,
            None => PreparedClient::new(connect(&self.database).await?),
        };
        Ok(self.client.insert(client))
    }
}

/// `NOTIFY` messages of a [`connect_with_notifications`] session.
pub type Notifications = mpsc::UnboundedReceiver<tokio_postgres::Notification>;

async fn open(
    database: &ConnectConfig,
    notifications: Option<mpsc::UnboundedSender<tokio_postgres::Notification>>,
) -> Result<tokio_postgres::Client, ConnectError> {
    let mut config = database.config.clone();
    let options = match config.get_options() {
        Some(options) => format!("{options} -c jit=off"),
        None => "-c jit=off".to_owned(),
    };
    config.options(&options);
    let client = match database.client_config()? {
        None => spawn_connection(config.connect(tokio_postgres::NoTls).await?, notifications),
        Some(tls) => spawn_connection(
            config.connect(MakeRustlsConnect::new(tls)).await?,
            notifications,
        ),
    };
    Ok(client)
}

/// Drive the connection, forwarding notifications when asked to.
fn spawn_connection<S, T>(
    (client, mut connection): (tokio_postgres::Client, tokio_postgres::Connection<S, T>),
    notifications: Option<mpsc::UnboundedSender<tokio_postgres::Notification>>,
) -> tokio_postgres::Client
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    tokio::spawn(async move {
        loop {
            match std::future::poll_fn(|cx| connection.poll_message(cx)).await {
                Some(Ok(tokio_postgres::AsyncMessage::Notification(n))) => {
                    if let Some(tx) = &notifications {
                        let _ = tx.send(n);
                    }
                }
                Some(Ok(_)) => {}
                Some(Err(error)) => {
                    tracing::warn!(%error, "database connection closed");
                    return;
                }
                None => return,
            }
        }
    });
    client
}
