//! The writer side of `walhook run`: stream items -> mapping -> store, and the
//! durable position back to the slot loop.
//!
//! Items arrive in WAL order on a bounded channel. The writer maps each change
//! with the configuration as of its position, collects events into a batch,
//! and commits the batch (events + deliveries) in one transaction when the
//! channel has nothing more ready or the batch is full. Then, and only then, it
//! publishes the end position of the last complete transaction in the batch as
//! durable; the slot loop confirms that to the server. A transaction larger
//! than a batch is written in chunks before its commit arrives (its position is
//! published only after its commit), so a million-row transaction needs no
//! more memory than one batch; ids make a replay of its chunks idempotent.
//!
//! Deliveries the dispatcher has room for get no row yet: their event's
//! `owed` column records them, and they are handed to the dispatcher in
//! memory once the batch's events commit (see
//! [`crate::delivery::first_attempts`]). The batch's position is durable at
//! its commit, whatever the receivers do; only the materialised mark waits
//! for their rows ([`crate::delivery::positions`]). A batch whose deliveries
//! do not all fit is written in chunks, each handed over after its commit.
//!
//! Deliveries to a slow or failing subscription get no row either: their
//! event's `deferred` column names them, and they get rows as the
//! subscription takes them ([`crate::delivery::deferrals`]).
//!
//! Before a batch is stored, the row filters its events still owe are
//! evaluated in one statement ([`crate::store::filters`]), so a subscription
//! whose filter does not match gets no delivery; a batch without filters
//! skips that statement.

use std::collections::HashSet;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use tokio::sync::{Notify, mpsc};
use uuid::Uuid;

use crate::delivery::deferrals::Deferrals;
use crate::delivery::first_attempts::{Admit, FirstAttempts};
use crate::delivery::positions::Positions;
use crate::mapping::Mapper;
use crate::mapping::event::Event;
use crate::replication::change::TxnBegin;
use crate::replication::lsn::Lsn;
use crate::replication::stream::StreamItem;
use crate::store::ReconnectingClient;
use crate::store::events::{Placement, write_batch};
use crate::store::filters;
use crate::telemetry;

/// Events per write transaction, at most.
pub const MAX_BATCH: usize = 2_000;

/// Capacity of the items channel between the slot loop and the writer. An item
/// holds a decoded row (old and new tuples under REPLICA IDENTITY FULL), a few
/// KiB: 8,192 of them made most of the peak RSS while draining a backlog, and
/// 1,024 keep the writer fed (it batches while the next rows arrive).
pub const ITEMS_CAPACITY: usize = 1_024;

/// How long the writer waits, per chunk, for room for a receiver that keeps
/// up before leaving the rest of its work to claims.
const ROOM_WAIT: Duration = Duration::from_secs(1);

/// Changes to this table are subscription changes (`webhook.*` events).
const SUBSCRIPTIONS_TABLE: &str = "walhook.subscriptions";

/// Everything the writer needs.
pub struct Writer {
    pub mapper: Mapper,
    /// The connection events are written with (reconnected after it closed).
    pub client: ReconnectingClient,
    /// The cluster's system identifier, from IDENTIFY_SYSTEM (set by the slot loop
    /// before the first item).
    pub system_id: Arc<OnceLock<String>>,
    /// Positions of committed batches: durable at once, materialised once
    /// their first attempts have rows.
    pub positions: Positions,
    /// Where first attempts go once their batch commits.
    pub first_attempts: FirstAttempts,
    /// Woken after a batch commits deliveries that were not handed over (they
    /// wait in PostgreSQL for a claim).
    pub wake: Arc<Notify>,
    /// Tells the slot loop that a batch could not be stored: it drops the
    /// session, and the slot replays everything after the durable position.
    pub store_failed: Arc<Notify>,
    /// Backfill watermark windows: snapshot events join the batch here.
    pub backfill: crate::backfill::Windows,
    /// Which subscriptions' deliveries are deferred (slow or failing).
    pub deferrals: Deferrals,
}

impl Writer {
    /// Consume items until the channel closes, writing what is pending first.
    pub async fn run(mut self, mut items: mpsc::Receiver<StreamItem>) {
        let mut batch: Vec<Event> = Vec::with_capacity(MAX_BATCH);
        let mut txn: Option<TxnBegin> = None;
        let mut position: Option<Lsn> = None;
        // After a failed write, items are dropped until the next session.
        let mut failed = false;
        while let Some(item) = items.recv().await {
            if matches!(item, StreamItem::Restart) {
                failed = false;
                batch.clear();
                txn = None;
                position = None;
                self.mapper.abort();
                self.backfill.reset();
                self.deferrals.mark_stale();
                continue;
            }
            if failed {
                continue;
            }
            self.apply(item, &mut txn, &mut batch, &mut position);
            while batch.len() < MAX_BATCH {
                match items.try_recv() {
                    Ok(StreamItem::Restart) => break,
                    Ok(item) => self.apply(item, &mut txn, &mut batch, &mut position),
                    Err(_) => break,
                }
            }
            if !self.flush(&mut batch, position.take()).await {
                failed = true;
                batch.clear();
                self.store_failed.notify_one();
            }
        }
    }

    fn apply(
        &mut self,
        item: StreamItem,
        txn: &mut Option<TxnBegin>,
        batch: &mut Vec<Event>,
        position: &mut Option<Lsn>,
    ) {
        match item {
            StreamItem::Begin(begin) => {
                self.mapper.begin(&begin);
                *txn = Some(begin);
            }
            StreamItem::Change {
                change,
                missing_toast,
            } => {
                let Some(begin) = txn.as_ref() else { return };
                self.backfill.observe(&change);
                let system_id = self.system_id.get().map(String::as_str).unwrap_or("");
                let mut events = self.mapper.map(system_id, begin, &change);
                if !missing_toast.is_empty() {
                    let error = format!(
                        "unchanged TOAST value of column(s) {} is not in the WAL: set \
                         REPLICA IDENTITY FULL on {} (walhook does this for routed tables)",
                        missing_toast.join(", "),
                        change.relation.qualified_name()
                    );
                    for event in &mut events {
                        event.body = None;
                        event.error = Some(error.clone());
                    }
                }
                batch.extend(events);
            }
            StreamItem::Commit(commit) => {
                // deletes held for grouping (routes' bulk_delete_event)
                batch.extend(self.mapper.commit(&commit));
                *txn = None;
                *position = Some(commit.end_lsn);
            }
            StreamItem::Position(lsn) => {
                if txn.is_none() {
                    *position = Some(position.map_or(lsn, |p| p.max(lsn)));
                }
            }
            StreamItem::Watermark { content, .. } => {
                let Some(begin) = txn.as_ref() else { return };
                batch.extend(self.backfill.watermark(&self.mapper, begin, &content));
            }
            StreamItem::Restart => {}
        }
    }

    /// Store the batch, in chunks when its first attempts do not all fit in
    /// memory at once, and hand each chunk's first attempts over. `position`
    /// (the end of the batch's last complete transaction) goes with the last
    /// chunk. On failure the caller drops the session: nothing past the
    /// durable position was confirmed, so the slot will replay it, while
    /// holding on would keep the replication connection (and a PostgreSQL
    /// shutdown waiting on it) hostage.
    async fn flush(&mut self, batch: &mut Vec<Event>, position: Option<Lsn>) -> bool {
        if batch.is_empty() {
            if position.is_some() {
                self.positions.committed(position, 0);
            }
            return true;
        }
        if batch.iter().any(|e| e.filter.is_some()) {
            let filtered = match self.client.prepared().await {
                Ok(client) => filters::apply(client, batch).await,
                Err(error) => {
                    tracing::warn!(%error, "reconnecting the event writer failed");
                    return false;
                }
            };
            if let Err(error) = filtered {
                tracing::warn!(error = %crate::error::describe(&error), "evaluating row filters failed; the stream restarts from the last confirmed position");
                return false;
            }
        }
        let client = match self.client.get().await {
            Ok(client) => client,
            Err(error) => {
                tracing::warn!(%error, "reconnecting the event writer failed");
                return false;
            }
        };
        let subscriptions_changed = batch.iter().any(|e| e.source_table == SUBSCRIPTIONS_TABLE);
        let targets = self.first_attempts.targets();
        if (subscriptions_changed
            || !targets.knows_all(batch.iter().flat_map(|e| e.subscriptions.iter())))
            && let Err(error) = targets.reload(client).await
        {
            tracing::warn!(%error, "reloading subscriptions failed; this batch's deliveries wait for a claim");
        }
        let mut start = 0;
        while start < batch.len() {
            let deferrals = self.deferrals.clone();
            let turn = deferrals.turn().await;
            let client = match self.client.prepared().await {
                Ok(client) => client,
                Err(error) => {
                    tracing::warn!(%error, "reconnecting the event writer failed");
                    return false;
                }
            };
            if let Err(error) = deferrals.refresh(client.client()).await {
                tracing::warn!(error = %crate::error::describe(&error), "reading walhook.deferrals failed; the stream restarts from the last confirmed position");
                return false;
            }
            let deferred = deferrals.decide(&batch[start..]);
            let (admission, end) = admit_chunk(&self.first_attempts, &deferred, batch, start).await;
            let chunk = &batch[start..end];
            let writing = Instant::now();
            let written = match write_batch(client, chunk, |i, subscription| {
                if admission.admitted(start + i, subscription) {
                    Placement::Memory
                } else if !chunk[i].snapshot && deferred.contains(&subscription) {
                    Placement::Deferred
                } else {
                    Placement::Row
                }
            })
            .await
            {
                Ok(written) => written,
                Err(error) => {
                    tracing::warn!(error = %crate::error::describe(&error.0), events = chunk.len(), "storing events failed; the stream restarts from the last confirmed position");
                    return false;
                }
            };
            telemetry::WRITE_BATCH_DURATION.observe(writing.elapsed().as_secs_f64());
            deferrals.deferred(&written.deferred_to);
            drop(turn);
            let stored_at = chrono::Utc::now();
            for (event, new) in chunk.iter().zip(&written.new_events) {
                telemetry::EVENTS
                    .with_label_values(&[&event.event_type])
                    .inc();
                if event.error.is_some() {
                    telemetry::EVENT_ERRORS.with_label_values(&["build"]).inc();
                }
                if *new {
                    let latency = (stored_at - event.commit_time).num_microseconds();
                    telemetry::STORED_LATENCY.observe(latency.unwrap_or(0).max(0) as f64 / 1e6);
                }
            }
            let last = end == batch.len();
            admission.hand_over(chunk, start, &written.new_events, |first_attempts| {
                self.positions
                    .committed(if last { position } else { None }, first_attempts)
            });
            if written.pending > 0 {
                self.wake.notify_one();
            }
            start = end;
        }
        batch.clear();
        true
    }
}

/// Admit the deliveries of `batch[start..]` until one does not fit while
/// this chunk holds places (the chunk then ends before its event: its places
/// free only once the chunk is handed over). A receiver that keeps up is
/// waited for, up to [`ROOM_WAIT`] per chunk; the rest wait in PostgreSQL,
/// those of deferred subscriptions in their events.
/// Returns the admission and the chunk's end.
async fn admit_chunk(
    first_attempts: &FirstAttempts,
    deferred: &HashSet<Uuid>,
    batch: &[Event],
    start: usize,
) -> (crate::delivery::first_attempts::Admission, usize) {
    let mut admission = first_attempts.admission();
    let mut waited = Duration::ZERO;
    for (i, event) in batch.iter().enumerate().skip(start) {
        // a snapshot's deliveries get their rows with it (`Event::snapshot`)
        if event.body.is_none() || event.snapshot {
            continue;
        }
        let bytes = event.body.as_ref().map_or(0, |b| b.len());
        for subscription in &event.subscriptions {
            if deferred.contains(subscription) {
                continue;
            }
            loop {
                match admission.admit(i, *subscription, bytes) {
                    Admit::Yes | Admit::No => break,
                    Admit::Full if admission.holds_before(i) => {
                        admission.release(i);
                        return (admission, i);
                    }
                    Admit::Full if waited < ROOM_WAIT => {
                        let began = Instant::now();
                        first_attempts.room(ROOM_WAIT - waited).await;
                        waited += began.elapsed();
                    }
                    Admit::Full => break,
                }
            }
        }
    }
    (admission, batch.len())
}
