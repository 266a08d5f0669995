//! First attempts straight from the writer's committed batch.
//!
//! ```text
//!  writer: admit (memory bound, per-subscription bound) ─▶ insert deliveries
//!          leased to this instance ─▶ commit ─▶ hand over ─▶ dispatcher queue
//! ```
//!
//! A delivery admitted here is inserted already leased to this instance, for
//! long enough to wait in memory and make its request; so its first attempt
//! needs no claim query and no lease update, and the outcome is the only other
//! write. What is not admitted (memory bound reached, an `ordered`
//! subscription, a receiver that already has twice its `max_in_flight` waiting)
//! is inserted unleased and claimed from PostgreSQL as any retry is: work
//! beyond the bound waits in PostgreSQL, not in RAM.
//!
//! Contract: the writer hands over only deliveries of a committed batch; a job
//! that cannot start before its lease could end mid-request is given back
//! (its lease released) instead of attempted, so another instance never
//! attempts a delivery this one is still attempting.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use uuid::Uuid;

use super::targets::Targets;
use crate::mapping::event::Event;
use crate::store::deliveries::{Claimed, LEASE_MARGIN_SECS, ROUNDS_HELD};
use crate::store::events::CreatedDelivery;
use crate::store::targets::SubscriptionTarget;

/// A delivery this instance holds the lease of, ready to attempt.
pub struct Job {
    pub claimed: Claimed,
    pub target: Arc<SubscriptionTarget>,
    /// The attempt must start before this, or its lease could end mid-request.
    pub start_by: Instant,
    /// Its place in the first-attempt memory bound, freed when the job ends.
    pub(super) _place: Option<Place>,
}

impl Job {
    /// A job for a claimed delivery, whose lease runs [`ROUNDS_HELD`] request
    /// timeouts plus a margin from now: it must start within all but one
    /// timeout of that, less a safety margin.
    pub fn claimed(claimed: Claimed, target: Arc<SubscriptionTarget>) -> Job {
        let waiting = target.timeout * (ROUNDS_HELD as u32 - 1);
        let start_by = Instant::now() + waiting + Duration::from_secs_f64(LEASE_MARGIN_SECS - 5.0);
        Job {
            claimed,
            target,
            start_by,
            _place: None,
        }
    }
}

/// Deliveries admitted and not finished: in total and per subscription.
#[derive(Debug, Default)]
struct Held {
    total: usize,
    per_subscription: HashMap<Uuid, usize>,
}

struct Shared {
    instance: Uuid,
    targets: Targets,
    capacity: usize,
    held: Mutex<Held>,
    jobs: mpsc::UnboundedSender<Vec<Job>>,
}

/// A place in the memory bound; given back on drop.
pub(super) struct Place {
    shared: Arc<Shared>,
    subscription: Uuid,
}

impl Drop for Place {
    fn drop(&mut self) {
        let mut held = self.shared.held.lock().unwrap_or_else(|e| e.into_inner());
        held.total = held.total.saturating_sub(1);
        if let Some(n) = held.per_subscription.get_mut(&self.subscription) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                held.per_subscription.remove(&self.subscription);
            }
        }
    }
}

/// The writer's handle: admits deliveries and hands them to the dispatcher.
#[derive(Clone)]
pub struct FirstAttempts {
    shared: Arc<Shared>,
}

/// The dispatcher's end: batches of jobs from committed write batches.
pub type JobReceiver = mpsc::UnboundedReceiver<Vec<Job>>;

impl FirstAttempts {
    /// At most `capacity` deliveries wait or run in memory at once.
    pub fn new(instance: Uuid, targets: Targets, capacity: usize) -> (FirstAttempts, JobReceiver) {
        let (jobs, receiver) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            instance,
            targets,
            capacity,
            held: Mutex::default(),
            jobs,
        });
        (FirstAttempts { shared }, receiver)
    }

    /// The instance the admitted deliveries are leased to.
    pub fn instance(&self) -> Uuid {
        self.shared.instance
    }

    pub fn targets(&self) -> &Targets {
        &self.shared.targets
    }

    /// Start admitting the deliveries of one write batch.
    pub fn admission(&self) -> Admission {
        Admission {
            shared: self.shared.clone(),
            places: HashMap::new(),
        }
    }
}

/// Places taken for one write batch, by (event index, subscription). Dropped
/// without [`Admission::hand_over`] (the batch failed), they are given back.
pub struct Admission {
    shared: Arc<Shared>,
    places: HashMap<(usize, Uuid), (Place, Arc<SubscriptionTarget>)>,
}

impl Admission {
    /// Whether the delivery of event `event` (its index in the batch) to
    /// `subscription` is attempted from memory; if so, for how many seconds
    /// to lease it. Refused: unknown, disabled or `ordered` subscriptions (an
    /// ordered resource's deliveries go one at a time through the claim), and
    /// anything over the memory bound or over twice the receiver's
    /// `max_in_flight` waiting.
    pub fn admit(&mut self, event: usize, subscription: Uuid) -> Option<f64> {
        let target = self.shared.targets.get(&subscription)?;
        if target.ordered || target.disabled {
            return None;
        }
        {
            let mut held = self.shared.held.lock().unwrap_or_else(|e| e.into_inner());
            let mine = held
                .per_subscription
                .get(&subscription)
                .copied()
                .unwrap_or(0);
            if held.total >= self.shared.capacity
                || mine >= ROUNDS_HELD as usize * target.max_in_flight
            {
                return None;
            }
            held.total += 1;
            *held.per_subscription.entry(subscription).or_default() += 1;
        }
        let place = Place {
            shared: self.shared.clone(),
            subscription,
        };
        let lease = lease_secs(&target);
        self.places.insert((event, subscription), (place, target));
        Some(lease)
    }

    /// After the batch committed: hand the created, leased deliveries to the
    /// dispatcher. Places of deliveries not created (they existed already: a
    /// replayed change) are given back.
    pub fn hand_over(mut self, events: &[Event], created: &[CreatedDelivery]) -> usize {
        let now = Instant::now();
        let mut jobs = Vec::new();
        let mut bodies: HashMap<usize, (Arc<str>, Arc<str>)> = HashMap::new();
        for delivery in created.iter().filter(|d| d.leased) {
            let Some((place, target)) = self
                .places
                .remove(&(delivery.event, delivery.subscription_id))
            else {
                continue;
            };
            let Some(event) = events.get(delivery.event) else {
                continue;
            };
            let (event_type, body) = bodies
                .entry(delivery.event)
                .or_insert_with(|| {
                    (
                        Arc::from(event.event_type.as_str()),
                        Arc::from(event.body.as_deref().unwrap_or_default()),
                    )
                })
                .clone();
            let lease = Duration::from_secs_f64(lease_secs(&target));
            jobs.push(Job {
                claimed: Claimed {
                    delivery_id: delivery.delivery_id,
                    subscription_id: delivery.subscription_id,
                    attempts: 0,
                    retry_base: 0,
                    event_id: event.id,
                    event_type,
                    body,
                    commit_time: event.commit_time,
                },
                start_by: now + lease.saturating_sub(target.timeout + Duration::from_secs(5)),
                target,
                _place: Some(place),
            });
        }
        let n = jobs.len();
        if n > 0 {
            // a closed receiver means the dispatcher stopped: the leases expire
            let _ = self.shared.jobs.send(jobs);
        }
        n
    }
}

/// Lease of a first attempt: long enough to wait behind the receiver's other
/// requests (the rounds this instance holds: [`ROUNDS_HELD`] admitted, and
/// claimed jobs may queue beside them) and make its own.
fn lease_secs(target: &SubscriptionTarget) -> f64 {
    (ROUNDS_HELD + 1) as f64 * target.timeout.as_secs_f64() + LEASE_MARGIN_SECS
}
