//! Two positions out of the writer's committed batches: the one the slot may
//! confirm, and the mark up to which every delivery has its row.
//!
//! ```text
//!  writer: batch committed ──▶ durable LSN (watch) ──▶ slot loop confirms it
//!                         └──▶ ticket (position, first attempts) ──▶ queue, WAL order
//!  recorder: outcome or pending row stored ──▶ ticket.recorded() ──▶ completed front
//!                                                ──▶ materialised LSN (watch) ──▶ mark
//! ```
//!
//! The slot never waits on a receiver: a batch's position is durable as soon
//! as its events are committed, because a delivery attempted from memory is
//! owed by its event's row (`walhook.events.owed`, written in the same
//! statement). What waits for the first attempts is only the materialised
//! position: it passes a batch once every first attempt it handed over has
//! its delivery row (the outcome, or a pending row when it left memory
//! without one) and every earlier batch has too. The daemon stores it as the
//! mark from which a starting instance sweeps owed deliveries into pending
//! rows (`store::obligations`).
//!
//! The queue holds one ticket per batch with first attempts in memory, so it
//! is bounded by the first-attempt memory bound: a batch or keepalive with
//! none folds its position into the newest ticket.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};

use tokio::sync::watch;

use crate::replication::lsn::Lsn;

/// Batches committed by the writer whose first attempts are not all
/// materialised yet, oldest first.
pub struct Positions {
    inner: Arc<Inner>,
}

struct Inner {
    queue: Mutex<VecDeque<Arc<BatchTicket>>>,
    durable: watch::Sender<Lsn>,
    materialised: watch::Sender<Lsn>,
}

/// One committed batch (or chunk of one), waiting for its first attempts.
pub struct BatchTicket {
    /// End of the furthest complete transaction folded into this ticket; 0
    /// while it has none (a chunk of a large transaction).
    position: AtomicU64,
    /// First attempts handed over whose delivery rows are not written yet.
    remaining: AtomicUsize,
    inner: Weak<Inner>,
}

impl std::fmt::Debug for BatchTicket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BatchTicket")
            .field("position", &Lsn(self.position.load(Ordering::Relaxed)))
            .field("remaining", &self.remaining.load(Ordering::Relaxed))
            .finish()
    }
}

impl Positions {
    /// Publish durable positions on `durable` (the slot loop confirms them)
    /// and materialised ones on `materialised` (the daemon stores the mark).
    pub fn new(durable: watch::Sender<Lsn>, materialised: watch::Sender<Lsn>) -> Positions {
        Positions {
            inner: Arc::new(Inner {
                queue: Mutex::default(),
                durable,
                materialised,
            }),
        }
    }

    /// A batch committed its events: `position` is durable now, and becomes
    /// materialised once `first_attempts` delivery rows are written through
    /// the returned ticket and every batch committed before it is
    /// materialised.
    pub fn committed(&self, position: Option<Lsn>, first_attempts: usize) -> Arc<BatchTicket> {
        if let Some(lsn) = position {
            publish(&self.inner.durable, lsn);
        }
        let ticket = {
            let mut queue = self.inner.queue.lock().unwrap_or_else(|e| e.into_inner());
            match queue.back() {
                Some(newest) if first_attempts == 0 => {
                    newest
                        .position
                        .fetch_max(position.map_or(0, |p| p.0), Ordering::AcqRel);
                    newest.clone()
                }
                _ => {
                    let ticket = Arc::new(BatchTicket {
                        position: AtomicU64::new(position.map_or(0, |p| p.0)),
                        remaining: AtomicUsize::new(first_attempts),
                        inner: Arc::downgrade(&self.inner),
                    });
                    queue.push_back(ticket.clone());
                    ticket
                }
            }
        };
        if first_attempts == 0 {
            self.inner.advance();
        }
        ticket
    }

    /// Batches whose first attempts are not all materialised.
    #[cfg(test)]
    pub fn waiting(&self) -> usize {
        self.inner
            .queue
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .len()
    }
}

impl BatchTicket {
    /// One of the batch's first attempts has its delivery row.
    pub fn recorded(&self) {
        if self.remaining.fetch_sub(1, Ordering::AcqRel) == 1
            && let Some(inner) = self.inner.upgrade()
        {
            inner.advance();
        }
    }
}

/// Move `watch` to `lsn` if that is further.
fn publish(watch: &watch::Sender<Lsn>, lsn: Lsn) {
    watch.send_if_modified(|at| {
        let moved = lsn > *at;
        *at = (*at).max(lsn);
        moved
    });
}

impl Inner {
    /// Drop completed batches from the front and publish the furthest
    /// materialised position.
    fn advance(&self) {
        let mut furthest = 0;
        {
            let mut queue = self.queue.lock().unwrap_or_else(|e| e.into_inner());
            while queue
                .front()
                .is_some_and(|t| t.remaining.load(Ordering::Acquire) == 0)
            {
                let done = queue.pop_front().expect("front exists");
                furthest = furthest.max(done.position.load(Ordering::Acquire));
            }
        }
        if furthest > 0 {
            publish(&self.materialised, Lsn(furthest));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn positions() -> (Positions, watch::Receiver<Lsn>, watch::Receiver<Lsn>) {
        let (durable, durable_rx) = watch::channel(Lsn(0));
        let (materialised, materialised_rx) = watch::channel(Lsn(0));
        (
            Positions::new(durable, materialised),
            durable_rx,
            materialised_rx,
        )
    }

    #[test]
    fn a_batch_is_durable_when_committed_whatever_its_first_attempts() {
        let (positions, durable, materialised) = positions();
        let _ticket = positions.committed(Some(Lsn(10)), 3);
        assert_eq!(*durable.borrow(), Lsn(10), "the slot never waits");
        assert_eq!(*materialised.borrow(), Lsn(0));
        positions.committed(Some(Lsn(20)), 0);
        assert_eq!(*durable.borrow(), Lsn(20));
    }

    #[test]
    fn the_mark_waits_for_first_attempts_and_for_earlier_batches() {
        let (positions, _, materialised) = positions();
        let first = positions.committed(Some(Lsn(10)), 2);
        let second = positions.committed(Some(Lsn(20)), 1);
        positions.committed(Some(Lsn(30)), 0);
        second.recorded();
        assert_eq!(*materialised.borrow(), Lsn(0), "an earlier batch waits");
        first.recorded();
        assert_eq!(*materialised.borrow(), Lsn(0), "one attempt still waits");
        first.recorded();
        assert_eq!(*materialised.borrow(), Lsn(30));
        assert_eq!(positions.waiting(), 0);
    }

    #[test]
    fn chunks_without_a_position_hold_back_the_batch_they_belong_to() {
        let (positions, durable, materialised) = positions();
        let chunk = positions.committed(None, 1);
        positions.committed(Some(Lsn(40)), 0);
        assert_eq!(*durable.borrow(), Lsn(40));
        assert_eq!(*materialised.borrow(), Lsn(0));
        chunk.recorded();
        assert_eq!(*materialised.borrow(), Lsn(40));
    }

    #[test]
    fn keepalives_behind_an_open_ticket_do_not_grow_the_queue() {
        let (positions, durable, materialised) = positions();
        let open = positions.committed(Some(Lsn(10)), 1);
        for lsn in 11..10_000 {
            positions.committed(Some(Lsn(lsn)), 0);
        }
        assert_eq!(positions.waiting(), 1);
        assert_eq!(*durable.borrow(), Lsn(9_999));
        open.recorded();
        assert_eq!(*materialised.borrow(), Lsn(9_999));
    }
}
