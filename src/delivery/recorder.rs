//! The last step of an attempt: its outcome, written to PostgreSQL in batches.
//!
//! Attempts finish concurrently; their records queue here and are written
//! together (one statement per batch: the deliveries' new state and one
//! `walhook.delivery_attempts` row each; a first attempt from memory inserts
//! its delivery row here, and then its obligation is met, so the
//! materialised mark can move past it). First attempts that leave memory
//! without an outcome ([`Unmet`]) get their pending rows here too. Each
//! batch's outcomes are counted for endpoint health ([`super::health`]) as it
//! is taken; what is worth a health write goes to the health keeper, so
//! health writes never delay outcome writes.
//!
//! An outcome that cannot be written because the database is unreachable
//! is retried, with backoff, until it is stored: dropping it would let the
//! lease expire and the delivery go out again with nobody knowing why. Every
//! failed write is logged and counted (`walhook_outcome_store_failures_total`).
//! A batch that PostgreSQL refuses for what it holds (see
//! [`crate::error::refused_content`]) is split until the records it can
//! store are stored; a record refused alone is logged and counted
//! (`walhook_outcomes_refused_total`) and its delivery is attempted again (a
//! first attempt gets a pending row, a claimed one's lease lapses), so no
//! record, whatever a receiver sent, stops the others. Only when the process
//! is stopping and the database stays unreachable past a grace period does it
//! give up, saying how many outcomes were not stored.

use std::collections::HashSet;
use std::ops::Range;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::breaker::{Observation, Outcome};
use super::first_attempts::{Obligation, Unmet};
use super::health::Health;
use crate::reconnect::Backoff;
use crate::store::ReconnectingClient;
use crate::store::deliveries::{
    self, AttemptRecord, DeliveryStatus, Lease, NewDelivery, RecordedDelivery,
};
use crate::telemetry;

/// Records written per statement, at most.
const BATCH: usize = 512;
/// How long a batch waits for more records after its first. Each statement
/// is a commit (a WAL flush) plus per-statement work in PostgreSQL; live at
/// 5,000 events/s, batches of the records ready at once were a few records
/// each and the recorder's backend took a third of a core. Recording is not
/// on the way to the receiver: waiting delays only when the row shows the
/// outcome.
const LINGER: Duration = Duration::from_millis(5);
/// How long a stopping process keeps trying to store outcomes.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// Leases this instance holds and has not recorded an outcome under.
pub type Unrecorded = Arc<Mutex<HashSet<Lease>>>;

/// An attempt's record, and for a first attempt from memory its obligation.
pub struct Finished {
    pub record: AttemptRecord,
    pub obligation: Option<Obligation>,
    pub subscription: Uuid,
}

/// What the recorder works with.
pub struct Recorder {
    pub database: crate::tls::ConnectConfig,
    pub instance: Uuid,
    pub unrecorded: Unrecorded,
    /// Woken after a batch with deliveries of `ordered` subscriptions: a
    /// resource's next delivery becomes claimable once this one is recorded.
    pub wake: Arc<Notify>,
    /// Told when a session finds the server shutting down, so the slot loop
    /// lets go of the replication connection at once.
    pub server_stopping: Arc<Notify>,
    pub stopping: CancellationToken,
    /// Where outcomes are counted for endpoint health, and where what is
    /// worth a health write goes.
    pub health: Health,
    pub health_reports: mpsc::UnboundedSender<Vec<Observation>>,
}

impl Recorder {
    /// Write records until the channel closes, and pending rows for unmet
    /// obligations as they come; then those still queued.
    pub async fn run(
        self,
        mut records: mpsc::Receiver<Finished>,
        mut unmet: mpsc::UnboundedReceiver<Unmet>,
    ) {
        let mut client = ReconnectingClient::new(self.database.clone());
        let mut batch = Vec::with_capacity(BATCH);
        loop {
            tokio::select! {
                first = records.recv() => {
                    let Some(first) = first else { break };
                    batch.push(first);
                    linger(&mut records, &mut batch).await;
                    self.record(&mut client, &mut batch).await;
                }
                Some(first) = unmet.recv() => {
                    let mut owed = vec![first];
                    while owed.len() < BATCH && let Ok(next) = unmet.try_recv() {
                        owed.push(next);
                    }
                    self.materialise(&mut client, owed).await;
                }
            }
        }
        let mut owed = Vec::new();
        while let Ok(next) = unmet.try_recv() {
            owed.push(next);
        }
        if !owed.is_empty() {
            self.materialise(&mut client, owed).await;
        }
    }

    /// Store a batch of records; meet the obligations of those stored and
    /// forget their leases. Those not stored drop their obligations (a
    /// pending row follows) and leases (they lapse).
    async fn record(&self, client: &mut ReconnectingClient, batch: &mut Vec<Finished>) {
        let reports = self.health.observe(batch.iter().map(|f| Outcome {
            subscription_id: f.subscription,
            succeeded: f.record.new_status == DeliveryStatus::Succeeded,
            probe: f.record.probe,
            error: f.record.error.as_deref(),
            at: f.record.attempted_at,
        }));
        if !reports.is_empty() {
            let _ = self.health_reports.send(reports);
        }
        let (records, obligations): (Vec<AttemptRecord>, Vec<Option<Obligation>>) =
            batch.drain(..).map(|f| (f.record, f.obligation)).unzip();
        let stored = self
            .store(client, &Write::Records(&records), records.len())
            .await;
        {
            let mut set = self.unrecorded.lock().unwrap_or_else(|e| e.into_inner());
            for record in &records {
                if let RecordedDelivery::Claimed(lease) = &record.delivery {
                    set.remove(lease);
                }
            }
        }
        let ordered = records.iter().any(|r| r.ordered);
        for (obligation, stored) in obligations.into_iter().zip(stored) {
            if stored && let Some(obligation) = obligation {
                obligation.met();
            }
        }
        if ordered {
            self.wake.notify_one();
        }
    }

    /// Write pending rows for first attempts that left memory without an
    /// outcome, then tell their batches.
    async fn materialise(&self, client: &mut ReconnectingClient, owed: Vec<Unmet>) {
        let rows: Vec<NewDelivery> = owed.iter().map(|u| u.new.clone()).collect();
        let stored = self.store(client, &Write::Pending(&rows), rows.len()).await;
        for (unmet, stored) in owed.into_iter().zip(stored) {
            if stored {
                telemetry::DELIVERIES_MATERIALISED
                    .with_label_values(&[unmet.reason])
                    .inc();
                unmet.ticket.recorded();
            } else {
                // the mark stays behind it; the next instance to stream
                // sweeps it into a pending row
                tracing::error!(event_id = %unmet.new.event_id, subscription_id = %unmet.new.subscription_id,
                    "could not write the pending row of a delivery that left memory; it is written when walhook next starts streaming");
            }
        }
        self.wake.notify_one();
    }

    /// Store `write` (of `n` rows), retrying with backoff (capped at 5 s)
    /// while the database cannot be reached, until `STOP_GRACE` after
    /// `stopping`; split what PostgreSQL refuses. Returns per row whether it
    /// was stored.
    async fn store(
        &self,
        client: &mut ReconnectingClient,
        write: &Write<'_>,
        n: usize,
    ) -> Vec<bool> {
        let mut stored = vec![false; n];
        // ranges still to store: the whole, or the halves of a refused one
        let mut ranges: Vec<Range<usize>> = std::iter::once(0..n).collect();
        let mut give_up_at: Option<tokio::time::Instant> = None;
        let first_wait = Duration::from_millis(100);
        let mut backoff = Backoff::doubling(first_wait, Duration::from_secs(5)).with_jitter();
        while let Some(range) = ranges.pop() {
            let error = match client.prepared().await {
                Err(error) => {
                    if let crate::store::ConnectError::Postgres(e) = &error
                        && crate::error::server_stopping(e)
                    {
                        self.server_stopping.notify_one();
                    }
                    tracing::warn!(%error, rows = range.len(), "cannot reach the database to store delivery outcomes; retrying");
                    None
                }
                Ok(c) => match write.execute(c, self.instance, range.clone()).await {
                    Ok(()) => {
                        stored[range].fill(true);
                        backoff.restart_from(first_wait);
                        continue;
                    }
                    Err(error) => Some(error),
                },
            };
            telemetry::OUTCOME_STORE_FAILURES.inc();
            match error {
                Some(error) if crate::error::refused_content(&error) => {
                    if range.len() == 1 {
                        telemetry::OUTCOMES_REFUSED.inc();
                        tracing::error!(error = %crate::error::describe(&error), "PostgreSQL refused a delivery outcome; the delivery will be attempted again");
                    } else {
                        let middle = range.start + range.len() / 2;
                        ranges.push(middle..range.end);
                        ranges.push(range.start..middle);
                    }
                    continue;
                }
                Some(error) => {
                    if crate::error::server_stopping(&error) {
                        self.server_stopping.notify_one();
                    }
                    tracing::warn!(error = %crate::error::describe(&error), rows = range.len(), "storing delivery outcomes failed; retrying")
                }
                None => {}
            }
            ranges.push(range);
            if self.stopping.is_cancelled() {
                let deadline =
                    *give_up_at.get_or_insert_with(|| tokio::time::Instant::now() + STOP_GRACE);
                if tokio::time::Instant::now() >= deadline {
                    let left: usize = ranges.iter().map(|r| r.len()).sum();
                    tracing::error!(
                        outcomes = left,
                        "stopping without storing these delivery outcomes: claimed deliveries are attempted again when their leases end, first attempts when walhook next starts streaming"
                    );
                    return stored;
                }
            }
            tokio::time::sleep(backoff.advance()).await;
        }
        stored
    }
}

/// The records that end within [`LINGER`] of the first join its batch.
async fn linger(records: &mut mpsc::Receiver<Finished>, batch: &mut Vec<Finished>) {
    let until = tokio::time::Instant::now() + LINGER;
    while batch.len() < BATCH {
        let next = match records.try_recv() {
            Ok(r) => Some(r),
            Err(mpsc::error::TryRecvError::Empty) => tokio::time::timeout_at(until, records.recv())
                .await
                .ok()
                .flatten(),
            Err(mpsc::error::TryRecvError::Disconnected) => None,
        };
        let Some(r) = next else { break };
        batch.push(r);
    }
}

/// One kind of write the recorder makes.
enum Write<'a> {
    Records(&'a [AttemptRecord]),
    Pending(&'a [NewDelivery]),
}

impl Write<'_> {
    /// Write the rows in `range`, in one transaction.
    async fn execute(
        &self,
        client: &mut crate::store::prepared::PreparedClient,
        instance: Uuid,
        range: Range<usize>,
    ) -> Result<(), tokio_postgres::Error> {
        match self {
            Write::Records(records) => deliveries::record(client, instance, &records[range]).await,
            Write::Pending(rows) => deliveries::insert_pending(client, &rows[range])
                .await
                .map(drop),
        }
    }
}
