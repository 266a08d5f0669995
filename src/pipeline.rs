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
//! Deliveries the dispatcher has room for are inserted leased to this
//! instance and handed to it in memory once the batch commits (see
//! [`crate::delivery::first_attempts`]): a first attempt starts right after
//! the commit that made it durable, without a claim query.

use std::sync::{Arc, OnceLock};

use tokio::sync::{Notify, mpsc, watch};

use crate::delivery::first_attempts::FirstAttempts;
use crate::mapping::Mapper;
use crate::mapping::event::Event;
use crate::replication::change::TxnBegin;
use crate::replication::lsn::Lsn;
use crate::replication::stream::StreamItem;
use crate::store::ReconnectingClient;
use crate::store::events::write_batch;
use crate::telemetry;

/// Events per write transaction, at most.
pub const MAX_BATCH: usize = 2_000;

/// Capacity of the items channel between the slot loop and the writer. An item
/// holds a decoded row (old and new tuples under REPLICA IDENTITY FULL), a few
/// KiB: 8,192 of them made most of the peak RSS while draining a backlog, and
/// 1,024 keep the writer fed (it batches while the next rows arrive).
pub const ITEMS_CAPACITY: usize = 1_024;

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
    /// Position up to which every event is stored.
    pub durable: watch::Sender<Lsn>,
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
            if !self.flush(&mut batch).await {
                failed = true;
                batch.clear();
                position = None;
                self.store_failed.notify_one();
                continue;
            }
            if let Some(lsn) = position.take() {
                self.durable.send_if_modified(|durable| {
                    let moved = lsn > *durable;
                    *durable = (*durable).max(lsn);
                    moved
                });
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
            StreamItem::Watermark { content } => {
                let Some(begin) = txn.as_ref() else { return };
                batch.extend(self.backfill.watermark(&self.mapper, begin, &content));
            }
            StreamItem::Restart => {}
        }
    }

    /// Store the batch. On failure the caller drops the session: nothing past
    /// the durable position was confirmed, so the slot will replay it, while
    /// holding on would keep the replication connection (and a PostgreSQL
    /// shutdown waiting on it) hostage.
    async fn flush(&mut self, batch: &mut Vec<Event>) -> bool {
        if batch.is_empty() {
            return true;
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
        let mut admission = self.first_attempts.admission();
        let instance = self.first_attempts.instance();
        match write_batch(client, batch, instance, |event, subscription| {
            admission.admit(event, subscription)
        })
        .await
        {
            Ok(created) => {
                for event in batch.iter() {
                    telemetry::EVENTS
                        .with_label_values(&[&event.event_type])
                        .inc();
                    if event.error.is_some() {
                        telemetry::EVENT_ERRORS.with_label_values(&["build"]).inc();
                    }
                }
                let handed_over = admission.hand_over(batch, &created);
                if created.len() > handed_over {
                    self.wake.notify_one();
                }
                batch.clear();
                true
            }
            Err(error) => {
                tracing::warn!(%error, events = batch.len(), "storing events failed; the stream restarts from the last confirmed position");
                false
            }
        }
    }
}
