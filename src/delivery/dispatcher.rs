//! The dispatcher: runs attempts concurrently within bounds, from two sources.
//!
//! ```text
//!  writer's committed batch ──(first attempts, in memory)──┐
//!                                                           ▼
//!  wake / LISTEN walhook_deliveries / poll ──▶ claim ──▶ per-subscription queues
//!                     (retries, overflow; lease, SKIP LOCKED)  │ global + max_in_flight
//!        ▲                                                     ▼
//!        └──── recorder (batched UPDATE / INSERT) ◀── attempt tasks (POST; signed
//!                                                      on the signing threads)
//! ```
//!
//! First attempts arrive from the writer before their delivery rows exist (see
//! [`super::first_attempts`]); everything else (retries, work that did not fit
//! in memory, other instances' expired leases) is claimed from PostgreSQL with
//! `FOR UPDATE SKIP LOCKED`, so any number of instances share a backlog. A
//! first attempt that waits longer than `first_attempt_hold` (a setting, 1 s
//! by default) leaves memory for a pending row, and its subscription is kept
//! out of memory for a while: a slow receiver's work waits in PostgreSQL.
//! A job takes its subscription's settings as they are when it starts, so a
//! subscription disabled, deleted or changed meanwhile is followed within the
//! reload interval.
//!
//! One task owns the scheduling state: jobs wait in per-subscription queues
//! and start while the instance has a free request slot (`global_max_in_flight`)
//! and the subscription is under its `max_in_flight` (enforced per instance).
//! The claim asks only for what room claimed work has left (twice the request
//! slots, and twice each subscription's `max_in_flight`, so a freed slot finds
//! its next job waiting; first attempts have bounds of their own), and under a
//! backlog claims in chunks as requests end; memory
//! is bounded by that room plus the first-attempt bound: a dead receiver
//! leaves its backlog in PostgreSQL. A slot frees when its request ends; the lease keeps the
//! delivery from being claimed again until its outcome is recorded, so
//! claiming overlaps recording. Ordered subscriptions only take the claim
//! path, which never leases two deliveries of one apiresource at once.
//!
//! Endpoint health ([`super::health`]): a failing subscription's jobs leave
//! memory (first attempts for pending rows, claimed ones hand their leases
//! back) except its probe, claimed apart ([`deliveries::claim_probes`]);
//! the health keeper runs beside the recorder. Rate limits
//! ([`super::rate`]): a job of a rate-limited subscription starts only with
//! a token; without one its queue waits (a first attempt waiting past the
//! hold leaves memory as behind a slow receiver), and the claim asks for at
//! most [`RATE_CLAIM_AHEAD`] of its rate.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use chrono::Utc;
use tokio::sync::{Notify, mpsc, watch};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::KeyRing;
use super::client::Clients;
use super::first_attempts::{Job, JobOrigin, JobReceiver, SlowSubscriptions};
use super::health::{Health, Keeper};
use super::rate::TokenBucket;
use super::recorder::{Finished, Recorder, Unrecorded};
use super::signers::Signers;
use super::targets::Targets;
use super::task::AttemptTask;
use crate::store::deliveries::{self, Lease, ROUNDS_HELD};
use crate::store::settings::Settings;
use crate::telemetry;

/// How long shutdown waits for in-flight requests before parking them.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// Claims come in chunks: while claims find work, claim again after this many
/// requests ended (or when nothing is left waiting in memory), and only when
/// at least this much room is free. A claim walks every subscription's due
/// deliveries, so it is worth one query per chunk, not per freed slot
/// (claiming per freed slot makes the claim query the bottleneck of a
/// fan-out).
const CLAIM_AFTER_ENDED: usize = 64;
/// How often subscriptions are re-read.
const RELOAD_EVERY: Duration = Duration::from_secs(2);
/// How often first attempts waiting in memory are checked against the hold
/// (and, while a subscription is failing, how often its probe is looked for).
const HOLD_CHECK_EVERY: Duration = Duration::from_millis(100);
/// A rate-limited subscription is claimed at most this long of its rate
/// ahead, so its claimed deliveries start well within their leases.
const RATE_CLAIM_AHEAD: Duration = Duration::from_secs(2);

#[derive(Debug, Clone)]
pub struct DispatcherConfig {
    pub database: crate::tls::ConnectConfig,
    pub instance_id: Uuid,
    /// Requests in flight across all subscriptions.
    pub global_max_in_flight: usize,
    /// Fallback poll for retries that come due and other instances' work.
    pub poll_interval: Duration,
    /// Deliveries claimed per query, at most.
    pub batch: i64,
    /// Told when a session finds the server shutting down (the slot loop
    /// closes the replication connection at once).
    pub server_stopping: Arc<Notify>,
}

impl DispatcherConfig {
    pub fn new(database: crate::tls::ConnectConfig) -> Self {
        DispatcherConfig {
            database,
            instance_id: Uuid::new_v4(),
            global_max_in_flight: 256,
            poll_interval: Duration::from_millis(500),
            batch: 256,
            server_stopping: Arc::new(Notify::new()),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    #[error("cannot build the HTTP client: {0}")]
    Client(#[from] reqwest::Error),
    #[error("cannot start the signing threads: {0}")]
    Signers(std::io::Error),
    #[error(
        "the outcome recorder stopped ({0}); delivery cannot continue: walhook exits so its supervisor restarts it"
    )]
    RecorderStopped(String),
}

pub struct Dispatcher {
    config: DispatcherConfig,
    keys: KeyRing,
    targets: Targets,
    first_attempts: JobReceiver,
    settings: watch::Receiver<Settings>,
    wake: Arc<Notify>,
}

impl Dispatcher {
    pub fn new(
        config: DispatcherConfig,
        keys: KeyRing,
        targets: Targets,
        first_attempts: JobReceiver,
        settings: watch::Receiver<Settings>,
        wake: Arc<Notify>,
    ) -> Self {
        Dispatcher {
            config,
            keys,
            targets,
            first_attempts,
            settings,
            wake,
        }
    }

    /// Run until `shutdown`; then finish or park in-flight attempts.
    pub async fn run(mut self, shutdown: CancellationToken) -> Result<(), DeliveryError> {
        let clients = Clients::new(self.config.global_max_in_flight)?;
        let signers = Signers::start().map_err(DeliveryError::Signers)?;
        let instance = self.config.instance_id;
        let Some(mut client) = connect_until(&self.config.database, &shutdown).await else {
            return Ok(());
        };
        tokio::spawn(listen(
            self.config.database.clone(),
            self.wake.clone(),
            shutdown.clone(),
        ));
        let unrecorded: Unrecorded = Arc::default();
        let (records_tx, records_rx) = mpsc::channel::<Finished>(1024);
        let unmet = std::mem::replace(&mut self.first_attempts.unmet, mpsc::unbounded_channel().1);
        let health = self.first_attempts.slow.health().clone();
        let (health_reports, reports) = mpsc::unbounded_channel();
        tokio::spawn(
            Keeper {
                database: self.config.database.clone(),
                health: health.clone(),
                slow: self.first_attempts.slow.clone(),
                wake: self.wake.clone(),
                reports,
            }
            .run(shutdown.clone()),
        );
        let mut recorder = tokio::spawn(
            Recorder {
                database: self.config.database.clone(),
                instance,
                unrecorded: unrecorded.clone(),
                wake: self.wake.clone(),
                server_stopping: self.config.server_stopping.clone(),
                stopping: shutdown.clone(),
                health: health.clone(),
                health_reports,
            }
            .run(records_rx, unmet),
        );
        if let Err(error) = self.targets.reload(&client).await {
            tracing::warn!(%error, "loading subscriptions failed; retrying");
        }
        let mut scheduler = Scheduler {
            queues: HashMap::new(),
            starved: VecDeque::new(),
            running: HashMap::new(),
            running_total: 0,
            queued_total: 0,
            claimed: HashMap::new(),
            claimed_total: 0,
            max_running: self.config.global_max_in_flight,
            tasks: JoinSet::new(),
            task_subscription: HashMap::new(),
            expired: Vec::new(),
            health,
            buckets: HashMap::new(),
            rate_waits: HashMap::new(),
            targets: self.targets.clone(),
            context: Arc::new(AttemptContext {
                clients,
                signers,
                keys: self.keys.clone(),
                records: records_tx,
                settings: self.settings.clone(),
                slow: self.first_attempts.slow.clone(),
            }),
            unrecorded: unrecorded.clone(),
        };
        let mut hold_check = tokio::time::interval(HOLD_CHECK_EVERY);
        hold_check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        if crate::failpoint::armed("dispatcher-panic") {
            panic!("failpoint dispatcher-panic");
        }
        let mut reloaded = Instant::now();
        let mut claim_due = true;
        // The last claim found work: claim again once enough requests ended
        // (claims in chunks, not one per freed slot).
        let mut backlog = false;
        let mut ended_since_claim = 0usize;
        let mut next_poll = tokio::time::Instant::now();
        let mut probed = Instant::now();
        while !shutdown.is_cancelled() {
            if reloaded.elapsed() > RELOAD_EVERY {
                let _ = self.targets.reload(&client).await;
                if let Ok(others) = crate::store::presence::others(&client).await {
                    self.first_attempts
                        .peers
                        .store(others.max(0) as usize, Ordering::Relaxed);
                }
                reloaded = Instant::now();
            }
            if backlog && (ended_since_claim >= CLAIM_AFTER_ENDED || scheduler.queued_total == 0) {
                claim_due = true;
            }
            let free = scheduler.free();
            let held = scheduler.claimed_total;
            if claim_due && free > 0 && (free >= CLAIM_AFTER_ENDED || held == 0) {
                let limit = (free as i64).min(self.config.batch);
                match deliveries::claim(&client, instance, limit, &scheduler.busy()).await {
                    Ok(claimed) => {
                        backlog = !claimed.is_empty();
                        ended_since_claim = 0;
                        claim_due = claimed.len() as i64 == limit;
                        next_poll = tokio::time::Instant::now() + self.config.poll_interval;
                        if !claimed.is_empty()
                            && !self
                                .targets
                                .knows_all(claimed.iter().map(|c| &c.content.subscription_id))
                        {
                            let _ = self.targets.reload(&client).await;
                        }
                        for claimed in claimed {
                            match self.targets.get(&claimed.content.subscription_id) {
                                Some(target) => {
                                    telemetry::DISPATCHED.with_label_values(&["claimed"]).inc();
                                    scheduler.enqueue(Job::claimed(claimed, target));
                                }
                                // deleted meanwhile: its deliveries go with it
                                None => scheduler.expired.push(claimed.lease),
                            }
                        }
                    }
                    Err(error) => {
                        if crate::error::server_stopping(&error) {
                            self.config.server_stopping.notify_one();
                        }
                        tracing::warn!(%error, "claiming deliveries failed");
                        next_poll = tokio::time::Instant::now() + Duration::from_secs(1);
                        claim_due = false;
                        if client.is_closed() {
                            match connect_until(&self.config.database, &shutdown).await {
                                Some(c) => client = c,
                                None => break,
                            }
                        }
                    }
                }
            }
            if scheduler.health.any_failing() && probed.elapsed() >= HOLD_CHECK_EVERY {
                probed = Instant::now();
                self.claim_probes(&client, &mut scheduler).await;
            }
            scheduler.give_back_expired(&client, instance).await;
            let rate_wake = scheduler.next_rate_wake();
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                Some(done) = scheduler.tasks.join_next_with_id(), if scheduler.running_total > 0 => {
                    let id = match done {
                        Ok((id, _)) => id,
                        Err(error) => error.id(),
                    };
                    if let Some((subscription, claimed)) = scheduler.task_subscription.remove(&id) {
                        scheduler.finished(subscription, claimed);
                    }
                    ended_since_claim += 1;
                }
                Some(jobs) = self.first_attempts.jobs.recv() => {
                    telemetry::DISPATCHED.with_label_values(&["first"]).inc_by(jobs.len() as u64);
                    for job in jobs {
                        scheduler.enqueue(job);
                    }
                }
                _ = self.wake.notified() => claim_due = true,
                _ = tokio::time::sleep_until(next_poll) => claim_due = true,
                _ = hold_check.tick() => {
                    let hold = self.settings.borrow().first_attempt_hold;
                    scheduler.release_held(hold);
                    scheduler.shed_failing();
                }
                _ = tokio::time::sleep_until(rate_wake.unwrap_or(next_poll)), if rate_wake.is_some() => {
                    scheduler.rate_wake();
                }
                stopped = &mut recorder => {
                    let why = match stopped {
                        Ok(()) => "it returned".to_owned(),
                        Err(error) => error.to_string(),
                    };
                    tracing::error!(%why, "the outcome recorder stopped");
                    return Err(DeliveryError::RecorderStopped(why));
                }
            }
        }
        // Shutdown: no new attempts; running ones finish within a bound; then
        // every lease this instance still holds without a recorded outcome is
        // given back, so another instance (or this one restarted) takes over.
        self.first_attempts.jobs.close();
        while self.first_attempts.jobs.recv().await.is_some() {}
        scheduler.queues.clear();
        let finished = tokio::time::timeout(SHUTDOWN_GRACE, async {
            while scheduler.tasks.join_next().await.is_some() {}
        })
        .await;
        if finished.is_err() {
            scheduler.tasks.abort_all();
            while scheduler.tasks.join_next().await.is_some() {}
        }
        drop(scheduler);
        let _ = recorder.await;
        let parked: Vec<Lease> = unrecorded
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain()
            .collect();
        if !parked.is_empty() {
            match deliveries::release(&client, instance, &parked).await {
                Ok(n) => tracing::info!(parked = n, "in-flight deliveries parked for retry"),
                Err(error) => {
                    tracing::warn!(%error, "parking in-flight deliveries failed; their leases expire")
                }
            }
        }
        Ok(())
    }
}

impl Dispatcher {
    /// Claim the probes of failing subscriptions that are due, and queue
    /// them.
    async fn claim_probes(&self, client: &tokio_postgres::Client, scheduler: &mut Scheduler) {
        match deliveries::claim_probes(client, self.config.instance_id).await {
            Ok(probes) => {
                if !self
                    .targets
                    .knows_all(probes.iter().map(|c| &c.content.subscription_id))
                {
                    let _ = self.targets.reload(client).await;
                }
                for probe in probes {
                    match self.targets.get(&probe.content.subscription_id) {
                        Some(target) => {
                            tracing::info!(subscription = %target.id, delivery = probe.lease.delivery_id, "probing a failing subscription");
                            telemetry::DISPATCHED.with_label_values(&["claimed"]).inc();
                            scheduler.enqueue(Job::probe(probe, target));
                        }
                        None => scheduler.expired.push(probe.lease),
                    }
                }
            }
            Err(error) => tracing::warn!(%error, "claiming probes of failing subscriptions failed"),
        }
    }
}

/// What every attempt task shares.
pub(super) struct AttemptContext {
    pub clients: Clients,
    /// Where requests are built and signed.
    pub signers: Signers,
    pub keys: KeyRing,
    pub records: mpsc::Sender<Finished>,
    /// `walhook.settings` as the daemon's one reader last saw them.
    pub settings: watch::Receiver<Settings>,
    /// Where a failed attempt marks its subscription slow.
    pub slow: SlowSubscriptions,
}

/// Jobs waiting per subscription and requests running, within the bounds.
struct Scheduler {
    queues: HashMap<Uuid, VecDeque<Job>>,
    /// Subscriptions with queued jobs and room of their own, waiting for a
    /// global slot (may hold stale entries; checked when popped).
    starved: VecDeque<Uuid>,
    running: HashMap<Uuid, usize>,
    running_total: usize,
    queued_total: usize,
    /// Claimed jobs held (running or queued), per subscription and in total:
    /// what the claim's room is measured against.
    claimed: HashMap<Uuid, usize>,
    claimed_total: usize,
    max_running: usize,
    tasks: JoinSet<()>,
    /// The subscription of each running task, and whether it was claimed (a
    /// task that panicked still frees its slot).
    task_subscription: HashMap<tokio::task::Id, (Uuid, bool)>,
    /// Leases to give back: jobs that could not start in time, or whose
    /// subscription was disabled or deleted meanwhile.
    expired: Vec<Lease>,
    /// Endpoint health and rate limits as last loaded.
    health: Health,
    /// Rate-limited subscriptions' token buckets.
    buckets: HashMap<Uuid, TokenBucket>,
    /// Subscriptions waiting for a token, and when one is there.
    rate_waits: HashMap<Uuid, Instant>,
    /// Subscriptions' settings as last loaded: a job starts with these.
    targets: Targets,
    context: Arc<AttemptContext>,
    unrecorded: Unrecorded,
}

impl Scheduler {
    /// Room for more claimed jobs: the instance holds at most `ROUNDS_HELD`
    /// times its request slots of them (running plus waiting), so a freed
    /// slot finds its next job ready. First attempts have their own bounds
    /// (see [`super::first_attempts`]).
    fn free(&self) -> usize {
        (ROUNDS_HELD as usize * self.max_running).saturating_sub(self.claimed_total)
    }

    /// Per subscription, this instance's claimed deliveries running or queued
    /// (the claim takes only up to `ROUNDS_HELD` times each one's
    /// `max_in_flight` minus this).
    /// A rate-limited subscription counts as busier, so the claim takes at
    /// most [`RATE_CLAIM_AHEAD`] of its rate.
    fn busy(&self) -> Vec<(Uuid, i64)> {
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
    fn next_rate_wake(&self) -> Option<tokio::time::Instant> {
        self.rate_waits
            .values()
            .min()
            .map(|at| tokio::time::Instant::from_std(*at))
    }

    /// Start the jobs of subscriptions whose token is there.
    fn rate_wake(&mut self) {
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
    fn token(&mut self, subscription: Uuid) -> bool {
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
    fn shed_failing(&mut self) {
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
    fn claimed_ended(&mut self, subscription: Uuid) {
        self.claimed_total -= 1;
        if let Some(n) = self.claimed.get_mut(&subscription) {
            *n -= 1;
            if *n == 0 {
                self.claimed.remove(&subscription);
            }
        }
    }

    fn enqueue(&mut self, job: Job) {
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
    fn finished(&mut self, subscription: Uuid, claimed: bool) {
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
    fn pump(&mut self, subscription: Uuid) {
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
    fn release_held(&mut self, hold: Duration) {
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
    async fn give_back_expired(&mut self, client: &tokio_postgres::Client, instance: Uuid) {
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

/// Connect, retrying every second until it works or shutdown; the session
/// announces this instance as one that claims deliveries
/// ([`crate::store::presence`]).
async fn connect_until(
    database: &crate::tls::ConnectConfig,
    shutdown: &CancellationToken,
) -> Option<tokio_postgres::Client> {
    let mut tries = crate::reconnect::Tries::new(RECONNECT, shutdown);
    while tries.next().await {
        match crate::store::connect(database).await {
            Ok(client) => {
                if let Err(error) = crate::store::presence::announce(&client).await {
                    tracing::warn!(%error, "announcing this instance failed; the others will not count it");
                }
                return Some(client);
            }
            Err(error) => tracing::warn!(%error, "dispatcher cannot reach the database; retrying"),
        }
    }
    None
}

/// Wake the claim loop on `NOTIFY walhook_deliveries` (redeliveries, replays);
/// the session is opened again a second after it ends or fails.
async fn listen(
    database: crate::tls::ConnectConfig,
    wake: Arc<Notify>,
    shutdown: CancellationToken,
) {
    let mut tries = crate::reconnect::Tries::new(RECONNECT, &shutdown);
    while tries.next().await {
        if let Ok((client, mut notifications)) =
            crate::store::connect_with_notifications(&database).await
            && client
                .batch_execute("LISTEN walhook_deliveries")
                .await
                .is_ok()
        {
            loop {
                tokio::select! {
                    n = notifications.recv() => match n {
                        Some(_) => wake.notify_one(),
                        None => break,
                    },
                    _ = shutdown.cancelled() => return,
                }
            }
        }
    }
}

/// The pace of the dispatcher's reconnects.
const RECONNECT: crate::reconnect::Backoff =
    crate::reconnect::Backoff::fixed(Duration::from_secs(1));
