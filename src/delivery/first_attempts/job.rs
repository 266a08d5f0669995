//! A delivery ready to attempt, as the dispatcher queues it: a first
//! attempt from the writer's batch, which owes its row, or a delivery
//! claimed from PostgreSQL under a lease, which must start before the lease
//! could end mid-request.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{Obligation, Place};
use crate::store::deliveries::{Claimed, DeliveryContent, LEASE_MARGIN_SECS, Lease, ROUNDS_HELD};
use crate::store::targets::SubscriptionTarget;

/// A delivery ready to attempt.
pub struct Job {
    pub origin: JobOrigin,
    pub content: DeliveryContent,
    pub target: Arc<SubscriptionTarget>,
    /// Its place in the first-attempt memory bounds, freed when the job ends.
    pub(in crate::delivery) _place: Option<Place>,
    /// When it was handed to the dispatcher (`walhook_dispatch_wait_seconds`).
    pub handed_at: Instant,
    /// A probe of a failing subscription: the one attempt it gets, which
    /// uses no retry of its delivery when it fails.
    pub probe: bool,
}

/// Where a job came from, and so how its outcome is recorded.
pub enum JobOrigin {
    /// A first attempt from memory: no row yet; its obligation is met when
    /// the row is written with the outcome.
    First(Obligation),
    /// Claimed from PostgreSQL: this instance holds `lease`, and the attempt
    /// must start before `start_by`, or the lease could end mid-request.
    Claimed { lease: Lease, start_by: Instant },
}

impl Job {
    /// A job for a claimed delivery, whose lease runs [`ROUNDS_HELD`] request
    /// timeouts plus a margin from now: it must start within all but one
    /// timeout of that, less a safety margin.
    pub fn claimed(claimed: Claimed, target: Arc<SubscriptionTarget>) -> Job {
        let waiting = target.timeout * (ROUNDS_HELD as u32 - 1);
        let start_by = Instant::now() + waiting + Duration::from_secs_f64(LEASE_MARGIN_SECS - 5.0);
        Job {
            origin: JobOrigin::Claimed {
                lease: claimed.lease,
                start_by,
            },
            content: claimed.content,
            target,
            _place: None,
            handed_at: Instant::now(),
            probe: false,
        }
    }

    /// A claimed probe of a failing subscription.
    pub fn probe(claimed: Claimed, target: Arc<SubscriptionTarget>) -> Job {
        Job {
            probe: true,
            ..Job::claimed(claimed, target)
        }
    }

    /// The lease of a claimed job.
    pub fn lease(&self) -> Option<Lease> {
        match &self.origin {
            JobOrigin::Claimed { lease, .. } => Some(*lease),
            JobOrigin::First(_) => None,
        }
    }
}
