//! The slot loop: one streaming session after another (reconnecting with
//! backoff, waiting as a standby while another instance holds the slot), each
//! checked against walhook's record of the slot before it streams and
//! preceded by the sweep of owed deliveries.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio::sync::{Notify, mpsc, watch};
use tokio_util::sync::CancellationToken;

use super::DaemonError;
use crate::config::CommonOptions;
use crate::error::Disposition;
use crate::http::{Health, StreamState};
use crate::reconnect::{Backoff, Tries};
use crate::replication::conn::{ConnError, ReplicationConnection};
use crate::replication::lsn::Lsn;
use crate::replication::slot::identity::{self, Verdict};
use crate::replication::slot::{self, PreflightError};
use crate::replication::stream::{FailureStreak, SlotStream, StreamError, StreamItem, StreamLinks};
use crate::telemetry;

/// What the slot loop works with, for as long as it runs. Dropping it (when
/// the loop ends) drops the items sender, which lets the writer drain.
pub(super) struct StreamContext<'a> {
    pub(super) options: &'a CommonOptions,
    pub(super) database: &'a crate::tls::ConnectConfig,
    pub(super) replication: &'a crate::tls::ConnectConfig,
    pub(super) items: mpsc::Sender<StreamItem>,
    pub(super) durable: watch::Receiver<Lsn>,
    /// Durable positions once recorded in `walhook.slot_identity`: what the
    /// slot loop confirms.
    pub(super) confirmable: watch::Receiver<Lsn>,
    /// Up to where this process's first attempts all have rows.
    pub(super) materialised: watch::Receiver<Lsn>,
    pub(super) system_id: Arc<OnceLock<String>>,
    pub(super) store_failed: Arc<Notify>,
    pub(super) health: &'a Health,
    pub(super) shutdown: &'a CancellationToken,
    /// Whether this process streamed the slot in an earlier session.
    pub(super) streamed_before: std::sync::atomic::AtomicBool,
}

pub(super) async fn supervise_stream(context: StreamContext<'_>) -> Result<(), DaemonError> {
    let StreamContext {
        options,
        health,
        shutdown,
        ..
    } = context;
    let mut standby_logged = false;
    let mut streak = FailureStreak::default();
    let backoff =
        Backoff::doubling(Duration::from_millis(250), Duration::from_secs(30)).with_jitter();
    let mut tries = Tries::new(backoff, shutdown);
    while tries.next().await {
        health.set_stream(StreamState::Connecting);
        let session = stream_session(&context).await;
        match session {
            Ok(()) => return Ok(()),
            Err(SessionError::Stream(StreamError::Shutdown)) => return Ok(()),
            Err(SessionError::Fatal(error)) => {
                tracing::error!(%error, "cannot stream the replication slot");
                shutdown.cancel();
                return Err(error);
            }
            Err(SessionError::SlotBusy) => {
                streak.reset();
                health.set_stream(StreamState::Standby);
                if !standby_logged {
                    tracing::info!(slot = %options.slot, "slot is active in another process; waiting as standby");
                    standby_logged = true;
                }
                tries.restart_from(Duration::from_secs(1));
            }
            Err(SessionError::Stream(error)) => {
                telemetry::REPLICATION_ERRORS
                    .with_label_values(&[error.kind()])
                    .inc();
                if let Some(poison) = streak.record(&error) {
                    let error = DaemonError::from(poison);
                    tracing::error!(%error, "cannot stream the replication slot");
                    shutdown.cancel();
                    return Err(error);
                }
                tracing::error!(%error, retry_in = ?tries.delay(), "replication stream failed; reconnecting");
                standby_logged = false;
            }
        }
    }
    Ok(())
}

enum SessionError {
    /// The slot is held by another walhook: wait as a standby.
    SlotBusy,
    /// Retry with backoff.
    Stream(StreamError),
    /// Give up: the operator must change something.
    Fatal(DaemonError),
}

impl From<ConnError> for SessionError {
    fn from(error: ConnError) -> Self {
        match error.disposition() {
            Disposition::SlotBusy => SessionError::SlotBusy,
            Disposition::Transient => SessionError::Stream(StreamError::Conn(error)),
            Disposition::Fatal => SessionError::Fatal(DaemonError::Replication(error)),
        }
    }
}

impl From<StreamError> for SessionError {
    fn from(error: StreamError) -> Self {
        match error {
            StreamError::Conn(conn) => conn.into(),
            other => SessionError::Stream(other),
        }
    }
}

async fn stream_session(context: &StreamContext<'_>) -> Result<(), SessionError> {
    let StreamContext {
        options,
        database,
        replication,
        health,
        ..
    } = *context;
    let sql = crate::store::connect(database).await.map_err(|e| {
        health.set_database_ok(false);
        SessionError::Stream(StreamError::Conn(ConnError::Protocol(format!(
            "database unreachable: {e}"
        ))))
    })?;
    health.set_database_ok(true);
    let transient = |e: PreflightError| {
        if e.is_transient() {
            SessionError::Stream(StreamError::Conn(ConnError::Protocol(e.to_string())))
        } else {
            SessionError::Fatal(e.into())
        }
    };
    let slot_name = &options.slot;
    let state = slot::preflight(&sql, slot_name).await.map_err(transient)?;
    let recorded = identity::load(&sql, slot_name)
        .await
        .map_err(|e| transient(e.into()))?;
    let verdict = identity::judge(slot_name, &state, recorded.as_ref())
        .map_err(|e| SessionError::Fatal(e.into()))?;
    let mut conn = ReplicationConnection::connect(replication).await?;
    let system = conn.identify_system().await?;
    let _ = context.system_id.set(system.system_id.clone());
    let confirmed = start_position(&sql, &mut conn, slot_name, &system.system_id, verdict)
        .await
        .map_err(|e| match e {
            StartError::Preflight(e) => transient(e),
            StartError::Replication(e) => e.into(),
        })?;
    if options.slot_failover {
        match slot::ensure_failover(&sql, &mut conn, slot_name).await {
            Ok(true) => {
                tracing::info!(slot = %slot_name, "the slot is a failover slot now (standbys with sync_replication_slots = on keep a copy)")
            }
            Ok(false) => {}
            Err(slot::FailoverError::Preflight(e)) => return Err(transient(e)),
            Err(slot::FailoverError::Replication(e)) => return Err(e.into()),
        }
    }
    // the start of a gap, should the server say the slot was invalidated
    let last_confirmed = recorded
        .as_ref()
        .map(|r| r.confirmed_lsn)
        .or(Some(confirmed));
    let invalidated = |error: StreamError| -> SessionError {
        if let StreamError::Conn(conn) = &error
            && let Some(what) = slot::invalidation(conn)
        {
            return SessionError::Fatal(
                PreflightError::SlotInvalidated {
                    slot: slot_name.clone(),
                    confirmed: last_confirmed,
                    what,
                }
                .into(),
            );
        }
        SessionError::from(error)
    };
    sweep_owed(context, &sql, confirmed).await?;
    let stream = SlotStream::start(
        conn,
        slot_name,
        &options.publication,
        confirmed,
        StreamLinks {
            items: &context.items,
            durable: context.confirmable.clone(),
            shutdown: context.shutdown.clone(),
            store_failed: context.store_failed.clone(),
        },
    )
    .await
    .map_err(invalidated)?;
    health.set_stream(StreamState::Streaming);
    tracing::info!(slot = %slot_name, %confirmed, "streaming");
    stream.run().await.map_err(invalidated)
}

/// Why the slot's start position could not be settled.
enum StartError {
    Preflight(PreflightError),
    Replication(ConnError),
}

/// Where streaming starts, as walhook's record of the slot says: the
/// recorded slot's position; a slot found without a record is adopted
/// (recorded); a missing slot is created (and recorded when it is visible
/// over --database-url).
async fn start_position(
    sql: &tokio_postgres::Client,
    conn: &mut ReplicationConnection,
    slot_name: &str,
    system_id: &str,
    verdict: Verdict,
) -> Result<Lsn, StartError> {
    Ok(match verdict {
        Verdict::Same { confirmed } => confirmed,
        Verdict::Adopt { confirmed } => {
            identity::record(sql, slot_name, system_id, confirmed)
                .await
                .map_err(|e| StartError::Preflight(e.into()))?;
            tracing::info!(slot = %slot_name, %confirmed, "recorded the slot walhook consumes (walhook.slot_identity)");
            confirmed
        }
        Verdict::Create => {
            let at = conn
                .create_slot(slot_name)
                .await
                .map_err(StartError::Replication)?;
            tracing::info!(slot = %slot_name, %at, "created replication slot");
            if identity::visible(sql, slot_name)
                .await
                .map_err(|e| StartError::Preflight(e.into()))?
            {
                identity::record(sql, slot_name, system_id, at)
                    .await
                    .map_err(|e| StartError::Preflight(e.into()))?;
            } else {
                tracing::warn!(slot = %slot_name, "the slot is not visible over --database-url (the replication connection reaches another server): walhook cannot check it and keeps no record of it");
            }
            at
        }
    })
}

/// Before streaming: pending rows for the deliveries that stored events owe
/// and that have none (left in memory by an instance that stopped; see
/// [`crate::store::obligations`]). On this process's first session the mark
/// then moves to the slot's confirmed position. On a later one (another
/// instance may have streamed meanwhile), the events this process still
/// owes from memory (between its materialised and durable positions) are
/// left to it, and the mark moves with this process's own progress.
async fn sweep_owed(
    context: &StreamContext<'_>,
    sql: &tokio_postgres::Client,
    confirmed: Lsn,
) -> Result<(), SessionError> {
    use std::sync::atomic::Ordering;
    let slot = &context.options.slot;
    let own = context
        .streamed_before
        .load(Ordering::Acquire)
        .then(|| (*context.materialised.borrow(), *context.durable.borrow()));
    let swept = crate::store::obligations::sweep(sql, slot, own, confirmed)
        .await
        .map_err(|e| {
            SessionError::Stream(StreamError::Conn(ConnError::Protocol(format!(
                "writing the pending rows of owed deliveries failed: {}",
                crate::error::describe(&e)
            ))))
        })?;
    context.streamed_before.store(true, Ordering::Release);
    if swept > 0 {
        telemetry::DELIVERIES_MATERIALISED
            .with_label_values(&["sweep"])
            .inc_by(swept);
        tracing::info!(
            swept,
            "deliveries owed by stored events (left in memory by an instance that stopped) now have pending rows"
        );
    }
    Ok(())
}
