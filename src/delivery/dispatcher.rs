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
//! most [`super::scheduler::RATE_CLAIM_AHEAD`] of its rate.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tokio::sync::{Notify, mpsc, watch};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::KeyRing;
use super::client::Clients;
use super::first_attempts::{Job, JobReceiver};
use super::health::Keeper;
use super::recorder::{Finished, Recorder, Unrecorded};
use super::scheduler::Scheduler;
use super::signers::Signers;
use super::targets::Targets;
use super::task::AttemptContext;
use crate::store::deliveries::{self, Claimed, Lease};
use crate::store::settings::Settings;
use crate::store::targets::SubscriptionTarget;
use crate::telemetry;

mod sessions;

use sessions::{connect_until, listen};

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
                        self.enqueue_claimed(&client, &mut scheduler, claimed, Job::claimed)
                            .await;
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
                self.enqueue_claimed(client, scheduler, probes, |probe, target| {
                    tracing::info!(subscription = %target.id, delivery = probe.lease.delivery_id, "probing a failing subscription");
                    Job::probe(probe, target)
                })
                .await;
            }
            Err(error) => tracing::warn!(%error, "claiming probes of failing subscriptions failed"),
        }
    }

    /// Queue claimed deliveries as the jobs `job` makes of them, the
    /// subscriptions reloaded first when one is not known yet.
    async fn enqueue_claimed(
        &self,
        client: &tokio_postgres::Client,
        scheduler: &mut Scheduler,
        claimed: Vec<Claimed>,
        job: impl Fn(Claimed, Arc<SubscriptionTarget>) -> Job,
    ) {
        if !self
            .targets
            .knows_all(claimed.iter().map(|c| &c.content.subscription_id))
        {
            let _ = self.targets.reload(client).await;
        }
        for claimed in claimed {
            match self.targets.get(&claimed.content.subscription_id) {
                Some(target) => {
                    telemetry::DISPATCHED.with_label_values(&["claimed"]).inc();
                    scheduler.enqueue(job(claimed, target));
                }
                // deleted meanwhile: its deliveries go with it
                None => scheduler.expired.push(claimed.lease),
            }
        }
    }
}
