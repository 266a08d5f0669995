//! Events, deliveries and attempts in PostgreSQL.

pub mod api_tokens;
pub(crate) mod audit;
pub(crate) mod backfills;
pub(crate) mod config;
pub mod deferrals;
pub(crate) mod deliveries;
pub(crate) mod events;
pub(crate) mod filters;
pub(crate) mod health;
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

use std::time::Duration;

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

/// Open a SQL connection (TLS as the URL's `sslmode` says; keepalives and
/// timeouts as `session_config` says) and drive it on a background task.
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
    let config = session_config(database);
    let client = match database.client_config()? {
        None => spawn_connection(config.connect(tokio_postgres::NoTls).await?, notifications),
        Some(tls) => spawn_connection(
            config.connect(MakeRustlsConnect::new(tls)).await?,
            notifications,
        ),
    };
    Ok(client)
}

/// Settings every walhook SQL session starts with, before the URL's own
/// `options` (PostgreSQL applies them in order, so the URL's win): `jit = off`
/// and the two timeouts below. JIT: walhook's statements are short OLTP
/// queries, and on a fresh backlog (stale statistics) the claim query's cost
/// estimate crossed `jit_above_cost`, spending ~0.5 s compiling each claim.
fn session_options() -> String {
    format!(
        "-c jit=off -c statement_timeout={}ms -c idle_in_transaction_session_timeout={}ms",
        STATEMENT_TIMEOUT.as_millis(),
        IDLE_IN_TRANSACTION_TIMEOUT.as_millis()
    )
}

/// `statement_timeout`: a statement stuck on the server (waiting for a lock
/// held by a transaction whose client is gone, or on a runaway plan) fails, and
/// its task reconnects or retries, instead of waiting for minutes. walhook's longest statements take
/// well under a second: a batch of 2,000 events (`pipeline::MAX_BATCH`), a
/// retention delete of 5,000 rows, a backfill chunk of 1,000 keyed rows
/// (longer only when its `WHERE` skips most of a large table).
pub(crate) const STATEMENT_TIMEOUT: Duration = Duration::from_secs(60);

/// `idle_in_transaction_session_timeout`: inside a transaction walhook waits
/// for nothing but its own next statement, so a transaction idle this long
/// belongs to a client that is gone; ending it releases its locks.
const IDLE_IN_TRANSACTION_TIMEOUT: Duration = Duration::from_secs(60);

/// TCP keepalive on an idle socket: the first probe after 10 s of silence,
/// then every 5 s; 3 unanswered probes close the connection. A server that
/// vanished (failover, a cut network) is noticed within ~25 s instead of the
/// kernel's two hours.
const KEEPALIVES_IDLE: Duration = Duration::from_secs(10);
const KEEPALIVES_INTERVAL: Duration = Duration::from_secs(5);
const KEEPALIVES_RETRIES: u32 = 3;

/// Data sent and not acknowledged for 30 s closes the connection (Linux's
/// `TCP_USER_TIMEOUT`), where retransmissions would otherwise go on for ~15
/// minutes. At least keepalive's 25 s, which it also bounds on Linux.
const TCP_USER_TIMEOUT: Duration = Duration::from_secs(30);

/// Each attempt to open the socket gives up after 10 s.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The tokio-postgres configuration of a SQL session: the URL's, with the
/// settings of [`session_options`] and the socket limits above wherever the
/// URL sets none of its own (the URL's `keepalives=0` turns keepalive off).
/// The replication connection opens its socket itself.
fn session_config(database: &ConnectConfig) -> tokio_postgres::Config {
    let mut config = database.config.clone();
    let options = match config.get_options() {
        Some(options) => format!("{} {options}", session_options()),
        None => session_options(),
    };
    config.options(&options);
    let unset = |parameter| !database.url_sets(parameter);
    if unset("keepalives_idle") {
        config.keepalives_idle(KEEPALIVES_IDLE);
    }
    if unset("keepalives_interval") {
        config.keepalives_interval(KEEPALIVES_INTERVAL);
    }
    if unset("keepalives_retries") {
        config.keepalives_retries(KEEPALIVES_RETRIES);
    }
    if unset("tcp_user_timeout") {
        config.tcp_user_timeout(TCP_USER_TIMEOUT);
    }
    if unset("connect_timeout") {
        config.connect_timeout(CONNECT_TIMEOUT);
    }
    config
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_get_keepalives_and_timeouts_unless_the_url_sets_them() {
        let config = session_config(&ConnectConfig::parse("postgres://u@db/app").unwrap());
        assert!(config.get_keepalives());
        assert_eq!(config.get_keepalives_idle(), KEEPALIVES_IDLE);
        assert_eq!(config.get_keepalives_interval(), Some(KEEPALIVES_INTERVAL));
        assert_eq!(config.get_keepalives_retries(), Some(KEEPALIVES_RETRIES));
        assert_eq!(config.get_tcp_user_timeout(), Some(&TCP_USER_TIMEOUT));
        assert_eq!(config.get_connect_timeout(), Some(&CONNECT_TIMEOUT));
        assert_eq!(
            config.get_options(),
            Some(
                "-c jit=off -c statement_timeout=60000ms -c idle_in_transaction_session_timeout=60000ms"
            )
        );

        let own = "postgres://u@db/app?keepalives=0&keepalives_idle=7200&keepalives_interval=1\
                   &keepalives_retries=9&tcp_user_timeout=0&connect_timeout=3\
                   &options=-c%20statement_timeout%3D0";
        let config = session_config(&ConnectConfig::parse(own).unwrap());
        assert!(!config.get_keepalives());
        assert_eq!(config.get_keepalives_idle(), Duration::from_secs(7200));
        assert_eq!(
            config.get_keepalives_interval(),
            Some(Duration::from_secs(1))
        );
        assert_eq!(config.get_keepalives_retries(), Some(9));
        // 0 is libpq's "the system default": no timeout set on the socket
        assert_eq!(config.get_tcp_user_timeout(), None);
        assert_eq!(config.get_connect_timeout(), Some(&Duration::from_secs(3)));
        // the URL's options come last, so its statement_timeout wins
        assert_eq!(
            config.get_options(),
            Some(format!("{} -c statement_timeout=0", session_options()).as_str())
        );

        let key_values = "host=db user=u keepalives_idle=30 connect_timeout=5";
        let config = session_config(&ConnectConfig::parse(key_values).unwrap());
        assert_eq!(config.get_keepalives_idle(), Duration::from_secs(30));
        assert_eq!(config.get_keepalives_interval(), Some(KEEPALIVES_INTERVAL));
        assert_eq!(config.get_connect_timeout(), Some(&Duration::from_secs(5)));
    }
}
