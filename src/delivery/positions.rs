//! The position the slot may confirm, and the backfill may count on.
//!
//! ```text
//!  writer: batch committed ──▶ ticket (position, first attempts) ──▶ queue, WAL order
//!  recorder: outcome stored ──▶ ticket.recorded() ──▶ completed front ──▶ durable LSN
//! ```
//!
//! A first attempt made from memory has no delivery row until its outcome is
//! recorded (the row is written once, with that outcome): until then the WAL
//! is what makes it durable. So a batch's position may be confirmed only when
//! its events are stored, every first attempt it handed over is recorded, and
//! every earlier batch is durable too. If the process dies before that, the
//! slot replays the batch: its events exist already, and its deliveries are
//! then inserted `pending` and claimed like any retry.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};

use tokio::sync::watch;

use crate::replication::lsn::Lsn;

/// Batches committed by the writer, oldest first, not yet durable.
pub struct Positions {
    inner: Arc<Inner>,
}

struct Inner {
    queue: Mutex<VecDeque<Arc<BatchTicket>>>,
    durable: watch::Sender<Lsn>,
}

/// One committed batch (or chunk of one), waiting for its first attempts.
pub struct BatchTicket {
    /// End of the batch's last complete transaction, if it has one (a chunk
    /// of a large transaction has none).
    position: Option<Lsn>,
    /// First attempts handed over and not yet recorded.
    remaining: AtomicUsize,
    inner: Weak<Inner>,
}

impl std::fmt::Debug for BatchTicket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BatchTicket")
            .field("position", &self.position)
            .field("remaining", &self.remaining.load(Ordering::Relaxed))
            .finish()
    }
}

impl Positions {
    /// Publish durable positions on `durable` (the slot loop confirms them).
    pub fn new(durable: watch::Sender<Lsn>) -> Positions {
        Positions {
            inner: Arc::new(Inner {
                queue: Mutex::default(),
                durable,
            }),
        }
    }

    /// A batch committed its events. `position` becomes durable once
    /// `first_attempts` outcomes are recorded through the returned ticket and
    /// every batch committed before it is durable.
    pub fn committed(&self, position: Option<Lsn>, first_attempts: usize) -> Arc<BatchTicket> {
        let ticket = Arc::new(BatchTicket {
            position,
            remaining: AtomicUsize::new(first_attempts),
            inner: Arc::downgrade(&self.inner),
        });
        self.inner
            .queue
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push_back(ticket.clone());
        if first_attempts == 0 {
            self.inner.advance();
        }
        ticket
    }
}

impl BatchTicket {
    /// One of the batch's first attempts has its outcome stored.
    pub fn recorded(&self) {
        if self.remaining.fetch_sub(1, Ordering::AcqRel) == 1
            && let Some(inner) = self.inner.upgrade()
        {
            inner.advance();
        }
    }
}

impl Inner {
    /// Drop completed batches from the front and publish the furthest position.
    fn advance(&self) {
        let mut furthest: Option<Lsn> = None;
        {
            let mut queue = self.queue.lock().unwrap_or_else(|e| e.into_inner());
            while queue
                .front()
                .is_some_and(|t| t.remaining.load(Ordering::Acquire) == 0)
            {
                let done = queue.pop_front().expect("front exists");
                furthest = furthest.max(done.position);
            }
        }
        if let Some(lsn) = furthest {
            self.durable.send_if_modified(|durable| {
                let moved = lsn > *durable;
                *durable = (*durable).max(lsn);
                moved
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_without_first_attempts_is_durable_when_committed() {
        let (tx, rx) = watch::channel(Lsn(0));
        let positions = Positions::new(tx);
        positions.committed(Some(Lsn(10)), 0);
        assert_eq!(*rx.borrow(), Lsn(10));
    }

    #[test]
    fn a_batch_waits_for_its_first_attempts_and_for_earlier_batches() {
        let (tx, rx) = watch::channel(Lsn(0));
        let positions = Positions::new(tx);
        let first = positions.committed(Some(Lsn(10)), 2);
        let second = positions.committed(Some(Lsn(20)), 1);
        positions.committed(Some(Lsn(30)), 0);
        second.recorded();
        assert_eq!(*rx.borrow(), Lsn(0), "an earlier batch is still waiting");
        first.recorded();
        assert_eq!(*rx.borrow(), Lsn(0), "one of its attempts is still waiting");
        first.recorded();
        assert_eq!(*rx.borrow(), Lsn(30));
    }

    #[test]
    fn chunks_without_a_position_hold_back_the_batch_they_belong_to() {
        let (tx, rx) = watch::channel(Lsn(0));
        let positions = Positions::new(tx);
        let chunk = positions.committed(None, 1);
        positions.committed(Some(Lsn(40)), 0);
        assert_eq!(*rx.borrow(), Lsn(0));
        chunk.recorded();
        assert_eq!(*rx.borrow(), Lsn(40));
    }
}
