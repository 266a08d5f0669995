//! The slot's guard inside `walhook run`: the position recorder between the
//! writer and the slot loop, and the slot's cost as gauges.
//!
//! ```text
//!  writer ── durable (watch) ──▶ recorder: walhook.slot_identity.confirmed_lsn
//!                                   │ recorded
//!                                   ▼
//!                      confirmable (watch) ──▶ slot loop ──▶ server
//! ```
//!
//! A position reaches the server only once it is recorded, so the server's
//! confirmed position of the slot walhook consumes is never past the record:
//! a slot found past it was re-created or advanced by someone else
//! ([`crate::replication::slot::identity`]). The recorder writes at most once
//! per [`RECORD_INTERVAL`] (one small UPDATE), so confirmations lag stored
//! events by about that much, which only delays when the server may recycle
//! WAL. When a session finds the server shutting down it signals
//! `server_stopping`, so the slot loop drops its connection instead of
//! keeping the walsender waiting for a confirmation that cannot be recorded.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;

use crate::replication::lsn::Lsn;
use crate::replication::slot::identity;
use crate::store::{ConnectError, ReconnectingClient};
use crate::telemetry;

/// The recorder writes at most this often.
pub const RECORD_INTERVAL: Duration = Duration::from_secs(1);

/// After a failed write, the next try.
const RETRY_INTERVAL: Duration = Duration::from_millis(250);

/// Pass `durable` positions on to `confirmable` once recorded, until shutdown
/// (or until the writer's channel closes).
pub async fn record_positions(
    mut client: ReconnectingClient,
    slot: String,
    mut durable: watch::Receiver<Lsn>,
    confirmable: watch::Sender<Lsn>,
    server_stopping: Arc<Notify>,
    shutdown: CancellationToken,
) {
    let mut warned = false;
    loop {
        tokio::select! {
            changed = durable.changed() => if changed.is_err() { return },
            _ = shutdown.cancelled() => return,
        }
        let to = *durable.borrow_and_update();
        if to <= *confirmable.borrow() {
            continue;
        }
        loop {
            match record(&mut client, &slot, to).await {
                Ok(()) => break,
                Err(error) => {
                    if stopping(&error) {
                        server_stopping.notify_one();
                    }
                    if !warned {
                        tracing::warn!(%error, "recording the slot's position failed; retrying (the slot is not confirmed past the last recorded position meanwhile)");
                        warned = true;
                    }
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(RETRY_INTERVAL) => {}
                _ = shutdown.cancelled() => return,
            }
        }
        warned = false;
        confirmable.send_if_modified(|at| {
            let moved = to > *at;
            *at = (*at).max(to);
            moved
        });
        tokio::select! {
            _ = tokio::time::sleep(RECORD_INTERVAL) => {}
            _ = shutdown.cancelled() => return,
        }
    }
}

/// Why a position could not be recorded.
#[derive(Debug, thiserror::Error)]
enum RecordError {
    #[error(transparent)]
    Connect(#[from] ConnectError),
    #[error("{}", crate::error::describe(.0))]
    Statement(#[from] tokio_postgres::Error),
}

fn stopping(error: &RecordError) -> bool {
    match error {
        RecordError::Connect(ConnectError::Postgres(e)) | RecordError::Statement(e) => {
            crate::error::server_stopping(e)
        }
        RecordError::Connect(_) => false,
    }
}

async fn record(client: &mut ReconnectingClient, slot: &str, to: Lsn) -> Result<(), RecordError> {
    let c = client.get().await?;
    identity::advance(c, slot, to).await?;
    Ok(())
}

/// The slot's cost and record as gauges: WAL retained, `safe_wal_size`,
/// `wal_status`, WAL declared lost and re-creations.
pub fn set_gauges(status: &crate::store::monitor::SlotStatus) {
    telemetry::SLOT_RETAINED_WAL_BYTES.set(status.retained_wal_bytes.unwrap_or(0));
    telemetry::SLOT_SAFE_WAL_SIZE_BYTES.set(status.safe_wal_size.unwrap_or(-1));
    let current = if status.exists {
        status.wal_status.as_deref().unwrap_or("")
    } else {
        "missing"
    };
    for name in telemetry::SLOT_WAL_STATUSES {
        telemetry::SLOT_WAL_STATUS
            .with_label_values(&[name])
            .set(i64::from(name == current));
    }
    telemetry::SLOT_LOST_WAL_BYTES.set(status.lost_wal_bytes);
    telemetry::SLOT_RECREATIONS.set(i64::from(status.recreations));
}
