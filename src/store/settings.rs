//! `walhook.settings`: runtime settings with their defaults (README, Settings).
//! Values are validated by the database when written; this is the one place
//! that reads them. [`watch()`] re-reads them every [`REFRESH_INTERVAL`] and
//! publishes each change, so every stage sees a new value within seconds and
//! none needs a restart.

use std::time::Duration;

use tokio::sync::watch;
use tokio_postgres::Client;
use tokio_util::sync::CancellationToken;

pub use crate::config::Settings;
use crate::tls::ConnectConfig;

/// How often [`watch()`] re-reads `walhook.settings`.
pub const REFRESH_INTERVAL: Duration = Duration::from_secs(2);

/// An interval setting's seconds as a duration; an infinite one (PostgreSQL
/// 17 accepts `'infinity'`) is the longest.
fn seconds(secs: Option<f64>) -> Duration {
    Duration::try_from_secs_f64(secs.unwrap_or(0.0).max(0.0)).unwrap_or(Duration::MAX)
}

/// Read the settings; absent keys keep their defaults.
pub async fn load(client: &Client) -> Result<Settings, tokio_postgres::Error> {
    let mut settings = Settings::default();
    let rows = client
        .query(
            "SELECT key, value,
                    CASE WHEN key IN ('event_retention', 'attempt_retention', 'first_attempt_hold')
                         THEN extract(epoch FROM value::interval)::float8 END
               FROM walhook.settings",
            &[],
        )
        .await?;
    for row in rows {
        let key: &str = row.get(0);
        let value: &str = row.get(1);
        let secs: Option<f64> = row.get(2);
        match key {
            "allow_insecure_targets" => settings.allow_insecure_targets = value == "true",
            "event_retention" => settings.event_retention = seconds(secs),
            "attempt_retention" => settings.attempt_retention = seconds(secs),
            "first_attempt_hold" => {
                settings.first_attempt_hold =
                    Duration::from_secs_f64(secs.unwrap_or(1.0).clamp(0.001, 60.0))
            }
            "attempt_request_headers" => {
                settings.attempt_request_headers = crate::config::RequestHeadersKept::parse(value)
            }
            "max_pending_rows" => {
                if let Ok(v) = value.parse::<i64>() {
                    settings.max_pending_rows = v.max(100);
                }
            }
            "max_payload_bytes" => {
                if let Ok(v) = value.parse() {
                    settings.max_payload_bytes = v;
                }
            }
            _ => {}
        }
    }
    Ok(settings)
}

/// The settings as they are now (read with `client`), then a background task
/// that re-reads them every `every` on its own connection until `shutdown` and
/// publishes them when they change. A failed read keeps the last values (and
/// is logged); the task reconnects on the next round.
pub async fn watch(
    database: &ConnectConfig,
    client: &Client,
    every: Duration,
    shutdown: CancellationToken,
) -> Result<watch::Receiver<Settings>, tokio_postgres::Error> {
    let (tx, rx) = watch::channel(load(client).await?);
    let database = database.clone();
    tokio::spawn(async move {
        let mut client = super::ReconnectingClient::new(database);
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.cancelled() => return,
                _ = tx.closed() => return,
            }
            let Ok(c) = client.get().await else { continue };
            match load(c).await {
                Ok(settings) => {
                    tx.send_if_modified(|current| {
                        let changed = *current != settings;
                        if changed {
                            tracing::info!(?settings, "settings changed");
                            *current = settings;
                        }
                        changed
                    });
                }
                Err(error) => {
                    tracing::warn!(%error, "reading walhook.settings failed; keeping the last values")
                }
            }
        }
    });
    Ok(rx)
}
