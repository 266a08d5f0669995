//! Small jobs of `walhook run` every few seconds, until shutdown: the
//! delivery mark, the heartbeat that keeps an idle slot moving, the lag,
//! slot and pending gauges, signing key reload, and retention.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::slot_guard;
use crate::delivery::KeyRing;
use crate::http::Health;
use crate::replication::lsn::Lsn;
use crate::store::monitor;
use crate::telemetry;

/// What the periodic jobs read.
pub(super) struct PeriodicContext {
    pub(super) database: crate::tls::ConnectConfig,
    pub(super) slot: String,
    pub(super) keys: KeyRing,
    pub(super) health: Arc<Health>,
    pub(super) settings: watch::Receiver<crate::store::settings::Settings>,
    pub(super) durable: watch::Receiver<Lsn>,
    pub(super) materialised: watch::Receiver<Lsn>,
}

/// Heartbeat, lag and pending gauges, the delivery mark, key reload,
/// retention; until shutdown.
pub(super) async fn periodic_jobs(context: PeriodicContext, shutdown: CancellationToken) {
    let PeriodicContext {
        database,
        slot,
        keys,
        health,
        settings,
        durable,
        materialised,
    } = context;
    let mut tick = tokio::time::interval(Duration::from_secs(2));
    let mut client = crate::store::ReconnectingClient::new(database);
    let mut rounds: u64 = 0;
    let mut heartbeat_warned = false;
    let mut mark_stored = Lsn(0);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.cancelled() => return,
        }
        rounds += 1;
        let Ok(c) = client.get().await else {
            health.set_database_ok(false);
            continue;
        };
        let mark = *materialised.borrow();
        if mark > mark_stored {
            match crate::store::obligations::advance(c, &slot, mark).await {
                Ok(()) => mark_stored = mark,
                Err(error) => tracing::warn!(%error, "storing the delivery mark failed; retrying"),
            }
        }
        let behind = durable.borrow().0.saturating_sub(mark.0);
        telemetry::DELIVERY_MARK_LAG_BYTES.set(behind.min(i64::MAX as u64) as i64);
        if !rounds.is_multiple_of(3) {
            continue;
        }
        health.set_database_ok(c.simple_query("").await.is_ok());
        // An idle routed database must not pin WAL: a tiny logical message
        // gives the slot a position to confirm.
        if rounds.is_multiple_of(6)
            && let Err(error) = monitor::heartbeat(c).await
            && !heartbeat_warned
        {
            tracing::warn!(
                error = %crate::error::describe(&error),
                "heartbeat failed (SELECT pg_logical_emit_message(false, 'walhook.heartbeat', '')): an idle database may hold WAL longer until this is fixed"
            );
            heartbeat_warned = true;
        }
        update_gauges(c, &slot).await;
        reload_keys(c, &keys).await;
        if rounds % 360 == 3 {
            let settings = settings.borrow().clone();
            sweep_retention(c, &settings).await;
        }
    }
}

/// Replication lag in bytes, the slot's cost and record, and the
/// pending-deliveries gauges (rows, and deferred deliveries without one).
async fn update_gauges(client: &tokio_postgres::Client, slot: &str) {
    if let Ok(status) = monitor::slot_status(client, slot).await {
        if let Some(lag) = status.lag_bytes {
            telemetry::REPLICATION_LAG_BYTES.set(lag);
        }
        slot_guard::set_gauges(&status);
    }
    if let Ok(rows) = crate::store::deliveries::pending_count(client).await
        && let Ok(deferred) = crate::store::deferrals::backlog(client).await
    {
        telemetry::PENDING_DELIVERIES.set(rows + deferred);
        telemetry::DEFERRED_DELIVERIES.set(deferred);
    }
}

/// Pick up rotated or retired signing keys.
async fn reload_keys(client: &tokio_postgres::Client, keys: &KeyRing) {
    if let Ok(active) = crate::store::keys::load_active(client).await
        && let Ok(mut ring) = keys.write()
    {
        *ring = Arc::new(active);
    }
}

/// Remove events and attempts past their retention.
async fn sweep_retention(
    client: &tokio_postgres::Client,
    settings: &crate::store::settings::Settings,
) {
    match crate::store::retention::sweep(client, settings).await {
        Ok((events, attempts)) if events + attempts > 0 => {
            tracing::info!(events, attempts, "retention removed old rows")
        }
        Ok(_) => {}
        Err(error) => tracing::warn!(%error, "retention sweep failed"),
    }
}
