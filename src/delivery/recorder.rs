//! The last step of an attempt: its outcome, written to PostgreSQL in batches.
//!
//! Attempts finish concurrently; their records queue here and are written
//! together (one statement per batch: the deliveries' new state and one
//! `walhook.delivery_attempts` row each; a first attempt from memory inserts
//! its delivery row here, and then tells its batch's ticket, so the slot
//! position can move past it). An outcome that cannot be written is
//! retried, with backoff, until it is stored: dropping it would let the lease
//! expire and the delivery go out again with nobody knowing why. Every failed
//! write is logged and counted (`walhook_outcome_store_failures_total`). Only
//! when the process is stopping and the database stays unreachable past a
//! grace period does it give up, saying how many outcomes were not stored
//! (their deliveries are attempted again once their leases end).

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::positions::BatchTicket;
use crate::store::ReconnectingClient;
use crate::store::deliveries::{self, AttemptRecord};
use crate::telemetry;

/// Records written per statement, at most.
const BATCH: usize = 512;
/// How long a batch waits for more records after its first. Each statement
/// is a commit (a WAL flush) plus per-statement work in PostgreSQL; live at
/// 5,000 events/s, batches of the records ready at once were a few records
/// each and the recorder's backend took a third of a core. Recording is not
/// on the way to the receiver: waiting delays only when the row shows the
/// outcome and the slot position moves on.
const LINGER: Duration = Duration::from_millis(5);
/// How long a stopping process keeps trying to store outcomes.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// Deliveries this instance holds leases on and has not yet recorded.
pub type Unrecorded = Arc<Mutex<HashSet<i64>>>;

/// An attempt's record, and for a first attempt from memory the ticket of the
/// batch that waits for it.
pub struct Finished {
    pub record: AttemptRecord,
    pub ticket: Option<Arc<BatchTicket>>,
}

/// Write records until the channel closes. After a batch with deliveries of
/// `ordered` subscriptions, wake the claim loop: a resource's next delivery
/// becomes claimable once this one is recorded.
pub async fn run(
    database: crate::tls::ConnectConfig,
    instance: Uuid,
    mut records: mpsc::Receiver<Finished>,
    unrecorded: Unrecorded,
    wake: Arc<Notify>,
    stopping: CancellationToken,
) {
    let mut client = ReconnectingClient::new(database);
    let mut batch = Vec::with_capacity(BATCH);
    let mut tickets = Vec::with_capacity(BATCH);
    while let Some(first) = records.recv().await {
        batch.push(first.record);
        tickets.extend(first.ticket);
        // the records that end within LINGER of the first join its statement
        let until = tokio::time::Instant::now() + LINGER;
        while batch.len() < BATCH {
            let next = match records.try_recv() {
                Ok(r) => Some(r),
                Err(mpsc::error::TryRecvError::Empty) => {
                    tokio::time::timeout_at(until, records.recv())
                        .await
                        .ok()
                        .flatten()
                }
                Err(mpsc::error::TryRecvError::Disconnected) => None,
            };
            let Some(r) = next else { break };
            batch.push(r.record);
            tickets.extend(r.ticket);
        }
        if store(&mut client, instance, &batch, &stopping).await {
            {
                let mut set = unrecorded.lock().unwrap_or_else(|e| e.into_inner());
                for r in batch.iter().filter(|r| r.first.is_none()) {
                    set.remove(&r.delivery_id);
                }
            }
            for ticket in &tickets {
                ticket.recorded();
            }
        }
        if batch.iter().any(|r| r.ordered) {
            wake.notify_one();
        }
        batch.clear();
        tickets.clear();
    }
}

/// Store one batch, retrying with backoff (capped at 5 s) until it is stored,
/// or until `STOP_GRACE` after `stopping`. Returns whether it was stored.
async fn store(
    client: &mut ReconnectingClient,
    instance: Uuid,
    batch: &[AttemptRecord],
    stopping: &CancellationToken,
) -> bool {
    let mut delay = Duration::from_millis(100);
    let mut give_up_at: Option<tokio::time::Instant> = None;
    loop {
        match client.prepared().await {
            Err(error) => {
                tracing::warn!(%error, outcomes = batch.len(), "cannot reach the database to store delivery outcomes; retrying")
            }
            Ok(c) => match deliveries::record(c, instance, batch).await {
                Ok(()) => return true,
                Err(error) => {
                    tracing::warn!(%error, outcomes = batch.len(), "storing delivery outcomes failed; retrying")
                }
            },
        }
        telemetry::OUTCOME_STORE_FAILURES.inc();
        if stopping.is_cancelled() {
            let deadline =
                *give_up_at.get_or_insert_with(|| tokio::time::Instant::now() + STOP_GRACE);
            if tokio::time::Instant::now() >= deadline {
                tracing::error!(
                    outcomes = batch.len(),
                    "stopping without storing these delivery outcomes: claimed deliveries are attempted again when their leases end, first attempts when the slot replays their changes"
                );
                return false;
            }
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(5));
    }
}
