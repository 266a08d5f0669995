//! The dispatcher's bookkeeping of jobs: queued per subscription and running
//! within the instance's request slots and each subscription's
//! `max_in_flight`, rate limits and endpoint health; which job starts next
//! when a slot frees; and the leases of jobs that could not start, given
//! back. The [`super::dispatcher`] feeds it (claims, first attempts, ended
//! tasks); it starts [`super::task::AttemptTask`]s.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use tokio::task::JoinSet;
use uuid::Uuid;

use super::first_attempts::{Job, JobOrigin};
use super::health::Health;
use super::rate::TokenBucket;
use super::recorder::Unrecorded;
use super::targets::Targets;
use super::task::{AttemptContext, AttemptTask};
use crate::store::deliveries::{self, Lease, ROUNDS_HELD};
use crate::telemetry;

/// A rate-limited subscription is claimed at most this long of its rate
/// ahead, so its claimed deliveries start well within their leases.
pub(super) const RATE_CLAIM_AHEAD: Duration = Duration::from_secs(2);

/// Jobs waiting per subscription and requests running, within the bounds.
pub(super) struct Scheduler {
    pub(super) queues: HashMap<Uuid, VecDeque<Job>>,
    /// Subscriptions with queued jobs and room of their own, waiting for a
    /// global slot (may hold stale entries; checked when popped).
    pub(super) starved: VecDeque<Uuid>,
    pub(super) running: HashMap<Uuid, usize>,
    pub(super) running_total: usize,
    pub(super) queued_total: usize,
    /// Claimed jobs held (running or queued), per subscription and in total:
    /// what the claim's room is measured against.
    pub(super) claimed: HashMap<Uuid, usize>,
    pub(super) claimed_total: usize,
    pub(super) max_running: usize,
    pub(super) tasks: JoinSet<()>,
    /// The subscription of each running task, and whether it was claimed (a
    /// task that panicked still frees its slot).
    pub(super) task_subscription: HashMap<tokio::task::Id, (Uuid, bool)>,
    /// Leases to give back: jobs that could not start in time, or whose
    /// subscription was disabled or deleted meanwhile.
    pub(super) expired: Vec<Lease>,
    /// Endpoint health and rate limits as last loaded.
    pub(super) health: Health,
    /// Rate-limited subscriptions' token buckets.
    pub(super) buckets: HashMap<Uuid, TokenBucket>,
    /// Subscriptions waiting for a token, and when one is there.
    pub(super) rate_waits: HashMap<Uuid, Instant>,
    /// Subscriptions' settings as last loaded: a job starts with these.
    pub(super) targets: Targets,
    pub(super) context: Arc<AttemptContext>,
    pub(super) unrecorded: Unrecorded,
}

impl Scheduler {
    /// Room for more claimed jobs: the instance holds at most `ROUNDS_HELD`
    /// times its request slots of them (running plus waiting), so a freed
    /// slot finds its next job ready. First attempts have their own bounds
    /// (see [`super::first_attempts`]).
    pub(super) fn free(&self) -> usize {
        (ROUNDS_HELD as usize * self.max_running).saturating_sub(self.claimed_total)
    }

    /// Per subscription, this instance's claimed deliveries running or queued
    /// (the claim takes only up to `ROUNDS_HELD` times each one's
    /// `max_in_flight` minus this).
    /// A rate-limited subscription counts as busier, so the claim takes at
    /// most [`RATE_CLAIM_AHEAD`] of its rate.
    pub(super) fn busy(&self) -> Vec<(Uuid, i64)> {
        let mut busy: HashMap<Uuid, i64> = self
            .claimed
            .iter()
            .map(|(id, n)| (*id, *n as i64))
            .collect();
        for (id, rate) in self.health.rate_limited() {
            let Some(target) = self.targets.get(&id) else {
                continue;
            };
            let room = ROUNDS_HELD * target.max_in_flight as i64;
            let allowed = (rate * RATE_CLAIM_AHEAD.as_secs_f64()).ceil().max(1.0) as i64;
            if allowed < room {
                *busy.entry(id).or_default() += room - allowed;
            }
        }
        busy.into_iter().collect()
    }

    /// When the first subscription waiting for a token gets one.
    pub(super) fn next_rate_wake(&self) -> Option<tokio::time::Instant> {
        self.rate_waits
            .values()
            .min()
            .map(|at| tokio::time::Instant::from_std(*at))
    }

    /// Start the jobs of subscriptions whose token is there.
    pub(super) fn rate_wake(&mut self) {
        let now = Instant::now();
        let due: Vec<Uuid> = self
            .rate_waits
            .iter()
            .filter(|(_, at)| **at <= now)
            .map(|(id, _)| *id)
            .collect();
        for subscription in due {
            self.rate_waits.remove(&subscription);
            self.pump(subscription);
        }
    }

    /// Whether `subscription` may start a job now by its rate limit; if
    /// not, it waits for its token.
    pub(super) fn token(&mut self, subscription: Uuid) -> bool {
        let Some(rate) = self.health.rate_limit(&subscription) else {
            self.buckets.remove(&subscription);
            return true;
        };
        let now = Instant::now();
        let bucket = self
            .buckets
            .entry(subscription)
            .or_insert_with(|| TokenBucket::new(rate, now));
        bucket.set_rate(rate, now);
        match bucket.take(now) {
            Ok(()) => {
                self.rate_waits.remove(&subscription);
                true
            }
            Err(wait) => {
                if self.rate_waits.insert(subscription, now + wait).is_none() {
                    telemetry::RATE_LIMITED.inc();
                }
                false
            }
        }
    }

    /// The jobs of failing subscriptions leave memory, but their probes: a
    /// first attempt for a pending row, a claimed one handing its lease
    /// back.
    pub(super) fn shed_failing(&mut self) {
        if !self.health.any_failing() {
            return;
        }
        let mut shed = Vec::new();
        for (subscription, queue) in &mut self.queues {
            if !self.health.is_failing(subscription) || queue.iter().all(|j| j.probe) {
                continue;
            }
            let before = queue.len();
            let mut kept = VecDeque::with_capacity(1);
            for job in queue.drain(..) {
                match job.origin {
                    _ if job.probe => kept.push_back(job),
                    JobOrigin::First(obligation) => obligation.leave_memory("failing"),
                    JobOrigin::Claimed { lease, .. } => {
                        self.expired.push(lease);
                        shed.push(*subscription);
                    }
                }
            }
            self.queued_total -= before - kept.len();
            *queue = kept;
        }
        for subscription in shed {
            self.claimed_ended(subscription);
        }
        self.queues.retain(|_, queue| !queue.is_empty());
    }

    /// A claimed job left the scheduler (ended, or handed back).
    pub(super) fn claimed_ended(&mut self, subscription: Uuid) {
        self.claimed_total -= 1;
        if let Some(n) = self.claimed.get_mut(&subscription) {
            *n -= 1;
            if *n == 0 {
                self.claimed.remove(&subscription);
            }
        }
    }

    pub(super) fn enqueue(&mut self, job: Job) {
        let subscription = job.content.subscription_id;
        if let Some(lease) = job.lease() {
            self.unrecorded
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(lease);
            *self.claimed.entry(subscription).or_default() += 1;
            self.claimed_total += 1;
        }
        self.queues.entry(subscription).or_default().push_back(job);
        self.queued_total += 1;
        self.pump(subscription);
    }

    /// A request of `subscription` ended.
    pub(super) fn finished(&mut self, subscription: Uuid, claimed: bool) {
        if claimed {
            self.claimed_ended(subscription);
        }
        self.running_total -= 1;
        if let Some(n) = self.running.get_mut(&subscription) {
            *n -= 1;
            if *n == 0 {
                self.running.remove(&subscription);
            }
        }
        self.pump(subscription);
        while self.running_total < self.max_running {
            let Some(next) = self.starved.pop_front() else {
                break;
            };
            self.pump(next);
        }
    }

    /// Start `subscription`'s queued jobs while both bounds allow.
    pub(super) fn pump(&mut self, subscription: Uuid) {
        loop {
            let Some(queue) = self.queues.get_mut(&subscription) else {
                return;
            };
            let Some(job) = queue.front() else {
                self.queues.remove(&subscription);
                return;
            };
            let running = self.running.get(&subscription).copied().unwrap_or(0);
            if running >= job.target.max_in_flight {
                return;
            }
            if self.running_total >= self.max_running {
                self.starved.push_back(subscription);
                return;
            }
            if !self.token(subscription) {
                return;
            }
            let Some(mut job) = self
                .queues
                .get_mut(&subscription)
                .and_then(VecDeque::pop_front)
            else {
                return;
            };
            self.queued_total -= 1;
            // the subscription as it is now: disabled or deleted meanwhile,
            // the job leaves (a first attempt gets its pending row, which
            // goes out once the subscription is enabled; a claimed delivery's
            // lease is given back); changed, it is sent the new way; failing,
            // only its probe goes
            let failing = !job.probe && self.health.is_failing(&subscription);
            let target = self
                .targets
                .get(&subscription)
                .filter(|t| !t.disabled && !failing);
            match (job.origin, target) {
                (JobOrigin::Claimed { lease, start_by }, Some(target))
                    if Instant::now() <= start_by =>
                {
                    job.origin = JobOrigin::Claimed { lease, start_by };
                    job.target = target;
                }
                (JobOrigin::Claimed { lease, .. }, _) => {
                    self.expired.push(lease);
                    self.claimed_ended(subscription);
                    continue;
                }
                (JobOrigin::First(obligation), Some(target)) => {
                    job.origin = JobOrigin::First(obligation);
                    job.target = target;
                }
                (JobOrigin::First(obligation), None) => {
                    obligation.leave_memory(if failing { "failing" } else { "disabled" });
                    continue;
                }
            }
            let claimed = job.lease().is_some();
            *self.running.entry(subscription).or_default() += 1;
            self.running_total += 1;
            let context = self.context.clone();
            let task = self
                .tasks
                .spawn(async move { AttemptTask::new(job, context).run(Utc::now()).await });
            self.task_subscription
                .insert(task.id(), (subscription, claimed));
        }
    }

    /// First attempts that waited in memory longer than `hold` behind their
    /// own receiver (it runs `max_in_flight` requests) leave it for pending
    /// rows (claimed like any retry), and their subscriptions are kept out of
    /// memory for a while: a receiver that slow is not waited on. Jobs that
    /// wait for a request slot of the instance (a fan-out of one backlog: the
    /// machine is the limit, not the receiver) stay.
    pub(super) fn release_held(&mut self, hold: Duration) {
        let mut slowed = Vec::new();
        let held_too_long =
            |job: &Job| matches!(job.origin, JobOrigin::First(_)) && job.handed_at.elapsed() > hold;
        for (subscription, queue) in &mut self.queues {
            let running = self.running.get(subscription).copied().unwrap_or(0);
            let saturated = queue
                .front()
                .is_some_and(|job| running >= job.target.max_in_flight)
                || self.rate_waits.contains_key(subscription);
            if !saturated || !queue.iter().any(held_too_long) {
                continue;
            }
            let before = queue.len();
            let mut kept = VecDeque::with_capacity(before);
            for job in queue.drain(..) {
                let expired = held_too_long(&job);
                match job.origin {
                    JobOrigin::First(obligation) if expired => obligation.leave_memory("held"),
                    origin => kept.push_back(Job { origin, ..job }),
                }
            }
            if kept.len() < before {
                slowed.push(*subscription);
                self.queued_total -= before - kept.len();
            }
            *queue = kept;
        }
        for subscription in slowed {
            tracing::info!(%subscription, ?hold, "first attempts waited in memory past first_attempt_hold; they wait in PostgreSQL instead");
            self.context.slow.slowed(subscription);
        }
        self.queues.retain(|_, queue| !queue.is_empty());
    }

    /// Give back the leases of jobs that could not start in time.
    pub(super) async fn give_back_expired(
        &mut self,
        client: &tokio_postgres::Client,
        instance: Uuid,
    ) {
        if self.expired.is_empty() {
            return;
        }
        let ids = std::mem::take(&mut self.expired);
        match deliveries::release(client, instance, &ids).await {
            Ok(n) => tracing::info!(
                released = n,
                "deliveries that waited too long were handed back to the claim queue"
            ),
            Err(error) => {
                tracing::warn!(%error, "handing back deliveries failed; their leases expire")
            }
        }
        let mut unrecorded = self.unrecorded.lock().unwrap_or_else(|e| e.into_inner());
        for id in ids {
            unrecorded.remove(&id);
        }
    }
}
