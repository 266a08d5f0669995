//! A first attempt's obligation: the delivery row it owes, and the batch
//! whose materialised position waits for it. However the job ends, the
//! obligation is settled: met when the row is written with the outcome, or
//! sent to the recorder (which writes a pending row) when it leaves memory
//! or is dropped. No job can hold the slot or the mark.

use std::sync::Arc;

use tokio::sync::mpsc;

use super::positions::BatchTicket;
use crate::store::deliveries::NewDelivery;

/// A delivery owed from memory: the row it needs and the batch whose
/// materialised position waits for it. Met when its row is written
/// ([`Obligation::met`]); dropped unmet, it is sent to the recorder as an
/// [`Unmet`], which writes its pending row.
pub struct Obligation {
    pub(super) owed: Option<Unmet>,
    pub(super) unmet: mpsc::UnboundedSender<Unmet>,
}

/// An obligation whose delivery left memory without an outcome: its pending
/// row is to be written, then its ticket told.
pub struct Unmet {
    pub new: NewDelivery,
    pub ticket: Arc<BatchTicket>,
    /// Why it left memory (`walhook_deliveries_materialised_total{reason}`):
    /// `held` past the hold, its subscription `disabled` or `failing`, or
    /// `dropped`.
    pub reason: &'static str,
}

impl Obligation {
    /// The delivery row it is about.
    pub fn delivery(&self) -> &NewDelivery {
        &self
            .owed
            .as_ref()
            .expect("an obligation is owed until met")
            .new
    }

    /// Its row is written (with the outcome): the batch may move on.
    pub fn met(mut self) {
        if let Some(owed) = self.owed.take() {
            owed.ticket.recorded();
        }
    }

    /// It leaves memory without an attempt, for `reason`: a pending row is
    /// written for it.
    pub fn leave_memory(mut self, reason: &'static str) {
        if let Some(mut owed) = self.owed.take() {
            owed.reason = reason;
            let _ = self.unmet.send(owed);
        }
    }
}

impl Drop for Obligation {
    fn drop(&mut self) {
        if let Some(owed) = self.owed.take() {
            // a closed channel means the process is stopping: the mark stays
            // behind this delivery and the next instance to stream sweeps it
            let _ = self.unmet.send(owed);
        }
    }
}
