//! The dispatcher's database sessions: the one it claims on, opened again
//! until it works and announced as a claiming instance, and the one that
//! listens on `walhook_deliveries` to wake the claim loop.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// Connect, retrying every second until it works or shutdown; the session
/// announces this instance as one that claims deliveries
/// ([`crate::store::presence`]).
pub(super) async fn connect_until(
    database: &crate::tls::ConnectConfig,
    shutdown: &CancellationToken,
) -> Option<tokio_postgres::Client> {
    let mut tries = crate::reconnect::Tries::new(RECONNECT, shutdown);
    while tries.next().await {
        match crate::store::connect(database).await {
            Ok(client) => {
                if let Err(error) = crate::store::presence::announce(&client).await {
                    tracing::warn!(%error, "announcing this instance failed; the others will not count it");
                }
                return Some(client);
            }
            Err(error) => tracing::warn!(%error, "dispatcher cannot reach the database; retrying"),
        }
    }
    None
}

/// Wake the claim loop on `NOTIFY walhook_deliveries` (redeliveries, replays);
/// the session is opened again a second after it ends or fails.
pub(super) async fn listen(
    database: crate::tls::ConnectConfig,
    wake: Arc<Notify>,
    shutdown: CancellationToken,
) {
    let mut tries = crate::reconnect::Tries::new(RECONNECT, &shutdown);
    while tries.next().await {
        if let Ok((client, mut notifications)) =
            crate::store::connect_with_notifications(&database).await
            && client
                .batch_execute("LISTEN walhook_deliveries")
                .await
                .is_ok()
        {
            loop {
                tokio::select! {
                    n = notifications.recv() => match n {
                        Some(_) => wake.notify_one(),
                        None => break,
                    },
                    _ = shutdown.cancelled() => return,
                }
            }
        }
    }
}

/// The pace of the dispatcher's reconnects.
const RECONNECT: crate::reconnect::Backoff =
    crate::reconnect::Backoff::fixed(Duration::from_secs(1));
