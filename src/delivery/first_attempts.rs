//! First attempts straight from the writer's committed batch.
//!
//! ```text
//!  writer: admit (memory bounds) ─▶ store events (+ pending rows of the rest)
//!          ─▶ commit ─▶ ticket ─▶ hand over ─▶ dispatcher queue ─▶ attempt
//!          ─▶ recorder inserts the delivery row with its outcome ─▶ ticket done
//! ```
//!
//! A delivery admitted here is attempted before it has a row: the row is
//! written once, with the outcome. Until then its event's `owed` column holds
//! the obligation (`store::obligations`), so the slot confirms the batch as
//! soon as its events commit, and a crash loses nothing: the next instance to
//! stream writes pending rows for what was owed. Each job carries an
//! [`Obligation`]: met when its row is written, and when dropped unmet (held
//! in memory past `first_attempt_hold`, its subscription disabled, a panic, a
//! dropped hand-over) it goes to the recorder, which writes its pending row.
//! No job, however it ends, holds the slot or the materialised mark
//! ([`super::positions`]). No claim, no lease, one row write per delivery.
//!
//! What is not admitted waits in PostgreSQL and is claimed as any retry is:
//! `ordered` and disabled subscriptions, subscriptions that are slow (one
//! of their deliveries was held past the hold, or an attempt failed, in the
//! last [`super::slow::SLOW_FOR`]) or failing by their endpoint health
//! ([`super::health`]), and work over the memory bounds (jobs
//! and bytes), unless this is the only instance and the receiver keeps up (its oldest
//! delivery in memory was admitted less than [`KEEPING_UP`] ago, or it is
//! no more than [`AS_FAR_BEHIND`] times as far behind as the receiver least
//! behind): then the writer waits for room instead, the backlog stays in the WAL, and
//! delivering it costs no claim. With other instances running (the
//! dispatcher counts them, see `store::presence`), work over the bounds goes
//! to PostgreSQL at once, where they share it.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use tokio::sync::{Notify, mpsc};
use uuid::Uuid;

mod job;

pub use super::obligation::{Obligation, Unmet};
use super::positions::BatchTicket;
pub use super::slow::SlowSubscriptions;
use super::targets::Targets;
use crate::mapping::event::Event;
use crate::store::deliveries::{DeliveryContent, NewDelivery};
use crate::store::targets::SubscriptionTarget;
use crate::telemetry;
pub use job::{Job, JobOrigin};

/// A receiver whose oldest delivery in memory is younger than this keeps up:
/// the writer waits for room rather than leaving its work to claims.
pub const KEEPING_UP: Duration = Duration::from_secs(1);

/// A receiver whose oldest delivery in memory is older than
/// [`KEEPING_UP`] still keeps up when it is at most this many times as far
/// behind as the receiver least behind: every receiver waits alike, so the
/// limit is the machine (a fan-out of one backlog to many subscriptions), not
/// this receiver, and the writer waits rather than paying for claims.
pub const AS_FAR_BEHIND: u32 = 2;

/// Beyond this, a receiver does not keep up whatever the others do.
pub const KEEPING_UP_AT_MOST: Duration = Duration::from_secs(10);

/// Deliveries of one subscription in memory at most (the dispatcher still
/// runs at most `max_in_flight` of them at once).
pub const PER_SUBSCRIPTION: usize = 1_024;

/// Body bytes of the deliveries in memory at most (each delivery counts its
/// event's whole body, though deliveries of one event share it), so
/// 4,096 deliveries of large events cannot take 4,096 x `max_payload_bytes`.
pub const BYTES_IN_MEMORY: usize = 16 << 20;

/// Deliveries admitted and not finished, with their admission times (oldest
/// first; jobs mostly end in the order they were admitted).
#[derive(Debug, Default)]
struct Held {
    all: VecDeque<Instant>,
    per_subscription: HashMap<Uuid, VecDeque<Instant>>,
    bytes: usize,
}

struct Shared {
    targets: Targets,
    capacity: usize,
    held: Mutex<Held>,
    /// Notified whenever a place frees.
    freed: Notify,
    /// Other instances that claim deliveries (as last counted).
    peers: Arc<AtomicUsize>,
    jobs: mpsc::UnboundedSender<Vec<Job>>,
    /// Where obligations dropped unmet go (the recorder).
    unmet: mpsc::UnboundedSender<Unmet>,
    slow: SlowSubscriptions,
}

/// A place in the memory bounds; given back on drop.
pub(super) struct Place {
    shared: Arc<Shared>,
    subscription: Uuid,
    bytes: usize,
}

impl Drop for Place {
    fn drop(&mut self) {
        {
            let mut held = self.shared.held.lock().unwrap_or_else(|e| e.into_inner());
            held.all.pop_front();
            held.bytes -= self.bytes;
            if let Some(times) = held.per_subscription.get_mut(&self.subscription) {
                times.pop_front();
                if times.is_empty() {
                    held.per_subscription.remove(&self.subscription);
                }
            }
            telemetry::DELIVERIES_IN_MEMORY.set(held.all.len() as i64);
        }
        self.shared.freed.notify_one();
    }
}

/// The writer's handle: admits deliveries and hands them to the dispatcher.
#[derive(Clone)]
pub struct FirstAttempts {
    shared: Arc<Shared>,
}

/// The dispatcher's end: batches of jobs from committed write batches, the
/// obligations dropped unmet (for the recorder), where it keeps the count of
/// other instances that claim deliveries, and which subscriptions are slow.
pub struct JobReceiver {
    pub jobs: mpsc::UnboundedReceiver<Vec<Job>>,
    pub unmet: mpsc::UnboundedReceiver<Unmet>,
    pub peers: Arc<AtomicUsize>,
    pub slow: SlowSubscriptions,
}

/// Whether a delivery is attempted from memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    /// Yes: it holds a place now.
    Yes,
    /// No: it waits in PostgreSQL for a claim.
    No,
    /// Not now: the receiver keeps up, so room frees soon.
    Full,
}

impl FirstAttempts {
    /// At most `capacity` deliveries wait or run in memory at once.
    pub fn new(targets: Targets, capacity: usize) -> (FirstAttempts, JobReceiver) {
        let (jobs, receiver) = mpsc::unbounded_channel();
        let (unmet, unmet_receiver) = mpsc::unbounded_channel();
        let peers = Arc::new(AtomicUsize::new(0));
        let slow = SlowSubscriptions::default();
        let shared = Arc::new(Shared {
            targets,
            capacity,
            held: Mutex::default(),
            freed: Notify::new(),
            peers: peers.clone(),
            jobs,
            unmet,
            slow: slow.clone(),
        });
        (
            FirstAttempts { shared },
            JobReceiver {
                jobs: receiver,
                unmet: unmet_receiver,
                peers,
                slow,
            },
        )
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

    /// Wait until a place frees, or `at_most`.
    pub async fn room(&self, at_most: Duration) {
        let _ = tokio::time::timeout(at_most, self.shared.freed.notified()).await;
    }
}

/// Whether a receiver whose oldest delivery in memory waits for `behind`
/// keeps up, when the receiver least behind waits for `least` (see
/// [`KEEPING_UP`], [`AS_FAR_BEHIND`] and [`KEEPING_UP_AT_MOST`]).
fn keeps_up(behind: Duration, least: Duration) -> bool {
    behind < KEEPING_UP || (behind < KEEPING_UP_AT_MOST && behind <= least * AS_FAR_BEHIND)
}

/// An event's strings, shared by its deliveries.
#[derive(Clone)]
struct EventShared {
    event_type: Arc<str>,
    body: Arc<str>,
    body_sha256: Arc<OnceLock<[u8; 32]>>,
    apiresource: Arc<str>,
}

/// Places taken for one write batch, by (event index, subscription). Dropped
/// without [`Admission::hand_over`] (the batch failed), they are given back.
pub struct Admission {
    shared: Arc<Shared>,
    places: HashMap<(usize, Uuid), (Place, Arc<SubscriptionTarget>)>,
}

impl Admission {
    /// Whether the delivery of event `event` (its index in the batch, its
    /// body `bytes` long) to `subscription` is attempted from memory.
    /// Refused: unknown, disabled, slow or failing, or `ordered`
    /// subscriptions (an ordered resource's deliveries go one at a time
    /// through the claim), and work over the memory bounds unless this is the
    /// only instance and the receiver keeps up ([`Admit::Full`]: wait for
    /// room).
    pub fn admit(&mut self, event: usize, subscription: Uuid, bytes: usize) -> Admit {
        let Some(target) = self.shared.targets.get(&subscription) else {
            return Admit::No;
        };
        if target.ordered || target.disabled || self.shared.slow.is_slow(&subscription) {
            return Admit::No;
        }
        {
            let mut held = self.shared.held.lock().unwrap_or_else(|e| e.into_inner());
            let mine = held.per_subscription.get(&subscription);
            let mine_full = mine.is_some_and(|t| t.len() >= PER_SUBSCRIPTION);
            let all_full = held.all.len() >= self.shared.capacity
                || (held.bytes + bytes > BYTES_IN_MEMORY && !held.all.is_empty());
            if mine_full || all_full {
                if self.shared.peers.load(Ordering::Relaxed) > 0 {
                    return Admit::No;
                }
                let oldest = if mine_full {
                    mine.and_then(|t| t.front())
                } else {
                    held.all.front()
                };
                let least_behind = held
                    .per_subscription
                    .values()
                    .filter_map(|t| t.front())
                    .map(Instant::elapsed)
                    .min();
                return match (oldest.map(Instant::elapsed), least_behind) {
                    (Some(behind), Some(least)) if keeps_up(behind, least) => Admit::Full,
                    _ => Admit::No,
                };
            }
            let now = Instant::now();
            held.all.push_back(now);
            held.bytes += bytes;
            held.per_subscription
                .entry(subscription)
                .or_default()
                .push_back(now);
            telemetry::DELIVERIES_IN_MEMORY.set(held.all.len() as i64);
        }
        let place = Place {
            shared: self.shared.clone(),
            subscription,
            bytes,
        };
        self.places.insert((event, subscription), (place, target));
        Admit::Yes
    }

    /// Whether the delivery of `event` to `subscription` was admitted.
    pub fn admitted(&self, event: usize, subscription: Uuid) -> bool {
        self.places.contains_key(&(event, subscription))
    }

    /// Whether places are held for events before `event`.
    pub fn holds_before(&self, event: usize) -> bool {
        self.places.keys().any(|(e, _)| *e < event)
    }

    /// Give back the places taken for `event` (it goes to the next chunk).
    pub fn release(&mut self, event: usize) {
        self.places.retain(|(e, _), _| *e != event);
    }

    /// After the chunk `events` (batch indices from `offset`) committed: hand
    /// its admitted deliveries of new events (`new_events[i]`: stored for the
    /// first time) to the dispatcher, each owing its row to the ticket that
    /// `ticket_for(n)` returns for their number. Places of replayed events are
    /// given back (their deliveries got pending rows).
    pub fn hand_over(
        self,
        events: &[Event],
        offset: usize,
        new_events: &[bool],
        ticket_for: impl FnOnce(usize) -> Arc<BatchTicket>,
    ) {
        let handed: Vec<_> = self
            .places
            .into_iter()
            .filter_map(|((index, subscription), held)| {
                let i = index.checked_sub(offset)?;
                let event = events.get(i).filter(|_| new_events[i])?;
                Some((i, event, subscription, held))
            })
            .collect();
        let ticket = ticket_for(handed.len());
        let handed_at = Instant::now();
        let mut jobs = Vec::with_capacity(handed.len());
        let mut shared_by_event: HashMap<usize, EventShared> = HashMap::new();
        for (i, event, subscription, (place, target)) in handed {
            let EventShared {
                event_type,
                body,
                body_sha256,
                apiresource,
            } = shared_by_event
                .entry(i)
                .or_insert_with(|| EventShared {
                    event_type: Arc::from(event.event_type.as_str()),
                    body: Arc::from(event.body.as_deref().unwrap_or_default()),
                    body_sha256: Arc::default(),
                    apiresource: Arc::from(event.apiresource.as_str()),
                })
                .clone();
            jobs.push(Job {
                origin: JobOrigin::First(Obligation {
                    owed: Some(Unmet {
                        new: NewDelivery {
                            event_id: event.id,
                            subscription_id: subscription,
                            apiresource,
                            commit_lsn: event.commit_lsn,
                            seq: event.seq as i32,
                        },
                        ticket: ticket.clone(),
                        reason: "dropped",
                    }),
                    unmet: self.shared.unmet.clone(),
                }),
                content: DeliveryContent {
                    subscription_id: subscription,
                    attempts: 0,
                    retry_base: 0,
                    event_id: event.id,
                    event_type,
                    body,
                    body_sha256,
                    commit_time: event.commit_time,
                },
                target,
                _place: Some(place),
                handed_at,
                probe: false,
            });
        }
        // in commit order, so a receiver sees a batch roughly as written
        jobs.sort_by_key(|j| match &j.origin {
            JobOrigin::First(owed) => (owed.delivery().commit_lsn, owed.delivery().seq),
            JobOrigin::Claimed { .. } => unreachable!("handed over jobs are first attempts"),
        });
        if !jobs.is_empty() {
            // a closed receiver means the dispatcher stopped: the position
            // stays unconfirmed and the slot replays the batch
            let _ = self.shared.jobs.send(jobs);
        }
    }
}

#[cfg(test)]
mod tests;
