//! The dispatcher: claims due deliveries, runs attempts concurrently within
//! bounds, and records outcomes in batches.
//!
//! ```text
//!  wake (writer) / LISTEN walhook_deliveries / poll ──▶ claim (lease, SKIP LOCKED)
//!        ▲                                                 │ up to free permits
//!        └──── recorder (batched UPDATE + INSERT) ◀── attempt tasks (sign, POST)
//! ```
//!
//! Memory is bounded by the global permit count: the dispatcher never claims
//! more than it can run at once, so a dead receiver leaves its backlog in
//! PostgreSQL. Per-subscription `max_in_flight` is enforced per instance: the
//! claim query is told how many requests to each subscription this instance
//! has under way and claims only up to the rest. A slot frees when its request
//! ends; the delivery's lease keeps it from being claimed again until its
//! outcome is recorded, so claiming overlaps recording.
//! Counting other instances' live leases in SQL instead cost a scan of every
//! dead lease version on each claim (most of a claim's time under a backlog).
//! Ordered subscriptions never have two deliveries of one apiresource leased at
//! once, across instances.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use tokio::sync::{Notify, Semaphore, mpsc};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use uuid::Uuid;

use super::KeyRing;
use super::attempt::{self, AttemptOutcome, Decision};
use super::client::{Clients, check_literal_host};
use crate::store::deliveries::{self, AttemptRecord, Claimed};
use crate::store::settings;
use crate::telemetry;

/// How long shutdown waits for in-flight requests before parking them.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

#[derive(Debug, Clone)]
pub struct DispatcherConfig {
    pub database: crate::tls::Database,
    pub instance_id: Uuid,
    /// Requests in flight across all subscriptions.
    pub global_max_in_flight: usize,
    /// Fallback poll for retries that come due and other instances' work.
    pub poll_interval: Duration,
    /// Deliveries claimed per query, at most.
    pub batch: i64,
}

impl DispatcherConfig {
    pub fn new(database: crate::tls::Database) -> Self {
        DispatcherConfig {
            database,
            instance_id: Uuid::new_v4(),
            global_max_in_flight: 256,
            poll_interval: Duration::from_millis(500),
            batch: 256,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    #[error("cannot build the HTTP client: {0}")]
    Client(#[from] reqwest::Error),
}

pub struct Dispatcher {
    config: DispatcherConfig,
    keys: KeyRing,
    wake: Arc<Notify>,
}

/// Deliveries of this instance by id, with their subscription.
type InFlight = Arc<Mutex<HashMap<i64, Uuid>>>;

impl Dispatcher {
    pub fn new(config: DispatcherConfig, keys: KeyRing, wake: Arc<Notify>) -> Self {
        Dispatcher { config, keys, wake }
    }

    /// Run until `shutdown`; then finish or park in-flight attempts.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), DeliveryError> {
        let clients = Clients::new()?;
        let instance = self.config.instance_id;
        let Some(client) = connect_until(&self.config.database, &shutdown).await else {
            return Ok(());
        };
        let mut client = client;
        tokio::spawn(listen(
            self.config.database.clone(),
            self.wake.clone(),
            shutdown.clone(),
        ));
        let permits = Arc::new(Semaphore::new(self.config.global_max_in_flight));
        // claimed and not yet recorded (parked at shutdown)
        let in_flight: InFlight = Arc::default();
        // requests under way, per subscription (max_in_flight)
        let sending: InFlight = Arc::default();
        let (records_tx, records_rx) = mpsc::channel::<AttemptRecord>(1024);
        let recorder = tokio::spawn(record_loop(
            self.config.database.clone(),
            instance,
            records_rx,
            in_flight.clone(),
            self.wake.clone(),
        ));
        let mut settings = settings::load(&client).await.unwrap_or_default();
        let mut settings_loaded = tokio::time::Instant::now();
        while !shutdown.is_cancelled() {
            if settings_loaded.elapsed() > Duration::from_secs(2) {
                if let Ok(s) = settings::load(&client).await {
                    settings = s;
                }
                settings_loaded = tokio::time::Instant::now();
            }
            let free = permits.available_permits();
            if free == 0 {
                tokio::select! {
                    p = permits.clone().acquire_owned() => drop(p),
                    _ = shutdown.cancelled() => break,
                }
                continue;
            }
            let limit = (free as i64).min(self.config.batch);
            let busy = busy_subscriptions(&sending);
            let claimed = match deliveries::claim(&client, instance, limit, &busy).await {
                Ok(claimed) => claimed,
                Err(error) => {
                    tracing::warn!(%error, "claiming deliveries failed");
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                        _ = shutdown.cancelled() => break,
                    }
                    if client.is_closed() {
                        match connect_until(&self.config.database, &shutdown).await {
                            Some(c) => client = c,
                            None => break,
                        }
                    }
                    continue;
                }
            };
            let got = claimed.len() as i64;
            for claimed in claimed {
                let Ok(permit) = permits.clone().try_acquire_owned() else {
                    break;
                };
                in_flight
                    .lock()
                    .unwrap()
                    .insert(claimed.delivery_id, claimed.subscription.id);
                sending
                    .lock()
                    .unwrap()
                    .insert(claimed.delivery_id, claimed.subscription.id);
                let delivery_id = claimed.delivery_id;
                let task = AttemptTask {
                    claimed,
                    clients: clients.clone(),
                    keys: self.keys.clone(),
                    allow_insecure_targets: settings.allow_insecure_targets,
                    records: records_tx.clone(),
                };
                let sending = sending.clone();
                let wake = self.wake.clone();
                tokio::spawn(async move {
                    task.run().await;
                    sending.lock().unwrap().remove(&delivery_id);
                    drop(permit);
                    wake.notify_one();
                });
            }
            if got < limit {
                tokio::select! {
                    _ = self.wake.notified() => {}
                    _ = tokio::time::sleep(self.config.poll_interval) => {}
                    _ = shutdown.cancelled() => break,
                }
            }
        }
        // Shutdown: let in-flight attempts finish within a bound, park the rest.
        let all = self.config.global_max_in_flight as u32;
        let finished = tokio::time::timeout(SHUTDOWN_GRACE, permits.acquire_many(all)).await;
        drop(records_tx);
        let _ = recorder.await;
        if finished.is_err() {
            let parked: Vec<i64> = in_flight.lock().unwrap().keys().copied().collect();
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

/// Requests under way per subscription, for the claim query's limits.
fn busy_subscriptions(sending: &InFlight) -> Vec<(Uuid, i64)> {
    let mut counts: HashMap<Uuid, i64> = HashMap::new();
    for subscription in sending.lock().unwrap().values() {
        *counts.entry(*subscription).or_default() += 1;
    }
    counts.into_iter().collect()
}

/// Connect, retrying until it works or shutdown.
async fn connect_until(
    database: &crate::tls::Database,
    shutdown: &CancellationToken,
) -> Option<tokio_postgres::Client> {
    loop {
        match crate::store::connect(database).await {
            Ok(client) => return Some(client),
            Err(error) => tracing::warn!(%error, "dispatcher cannot reach the database; retrying"),
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = shutdown.cancelled() => return None,
        }
    }
}

/// Wake the claim loop on `NOTIFY walhook_deliveries` (redeliveries, replays).
async fn listen(database: crate::tls::Database, wake: Arc<Notify>, shutdown: CancellationToken) {
    while !shutdown.is_cancelled() {
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
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = shutdown.cancelled() => return,
        }
    }
}

struct AttemptTask {
    claimed: Claimed,
    clients: Clients,
    keys: KeyRing,
    allow_insecure_targets: bool,
    records: mpsc::Sender<AttemptRecord>,
}

impl AttemptTask {
    async fn run(self) {
        let span = tracing::info_span!(
            "deliver",
            subscription_id = %self.claimed.subscription.id,
            event_id = %self.claimed.event_id
        );
        self.attempt().instrument(span).await
    }

    async fn attempt(self) {
        let c = &self.claimed;
        let attempt = c.attempts + 1;
        let now = Utc::now();
        let keys = self.keys.read().map(|k| Arc::clone(&k)).unwrap_or_default();
        telemetry::IN_FLIGHT_REQUESTS.inc();
        let (outcome, elapsed) = match attempt::prepare(c, attempt, &keys, now) {
            Err(error) => (failure(error.to_string()), Duration::ZERO),
            Ok(request) => {
                let refused = if self.allow_insecure_targets {
                    Ok(())
                } else {
                    check_literal_host(&request.url)
                };
                match refused {
                    Err(error) => (failure(error), Duration::ZERO),
                    Ok(()) => {
                        attempt::send(self.clients.get(self.allow_insecure_targets), request).await
                    }
                }
            }
        };
        telemetry::IN_FLIGHT_REQUESTS.dec();
        telemetry::DELIVERY_DURATION.observe(elapsed.as_secs_f64());
        let since_redelivery = (attempt - c.retry_base).max(1) as usize;
        let decision = attempt::decide(
            &outcome,
            &c.subscription.retry_schedule,
            since_redelivery,
            Utc::now(),
            &mut rand::thread_rng(),
        );
        let sub = c.subscription.id.to_string();
        let (status_code, error, body) = match &outcome {
            AttemptOutcome::Succeeded { status, body } => {
                (Some(i32::from(*status)), None, Some(body.clone()))
            }
            AttemptOutcome::Failed {
                status,
                error,
                body,
                ..
            } => (status.map(i32::from), Some(error.clone()), body.clone()),
        };
        let (new_status, next_attempt_at, label) = match decision {
            Decision::Succeeded => {
                let latency =
                    (Utc::now() - c.commit_time).num_microseconds().unwrap_or(0) as f64 / 1e6;
                telemetry::END_TO_END_LATENCY.observe(latency.max(0.0));
                ("succeeded", Utc::now(), "success")
            }
            Decision::RetryAt(at) => ("pending", at, "retry"),
            Decision::Failed => ("failed", Utc::now(), "failed"),
        };
        telemetry::DELIVERIES
            .with_label_values(&[&sub, label])
            .inc();
        match &error {
            Some(error) => {
                tracing::info!(attempt, outcome = label, status = ?status_code, %error, "delivery attempt failed")
            }
            None => tracing::debug!(attempt, status = ?status_code, "delivered"),
        }
        let record = AttemptRecord {
            delivery_id: c.delivery_id,
            attempt,
            attempted_at: now,
            duration_ms: elapsed.as_millis().min(i32::MAX as u128) as i32,
            status_code,
            error,
            response_body: body.filter(|b| !b.is_empty()),
            new_status,
            next_attempt_at,
        };
        let _ = self.records.send(record).await;
    }
}

fn failure(error: String) -> AttemptOutcome {
    AttemptOutcome::Failed {
        status: None,
        error,
        body: None,
        retry_after: None,
    }
}

/// Write finished attempts in batches; then wake the claim loop (an ordered
/// resource's next delivery becomes claimable once this one is recorded).
async fn record_loop(
    database: crate::tls::Database,
    instance: Uuid,
    mut records: mpsc::Receiver<AttemptRecord>,
    in_flight: InFlight,
    wake: Arc<Notify>,
) {
    let mut client: Option<tokio_postgres::Client> = None;
    let mut batch = Vec::with_capacity(512);
    while let Some(first) = records.recv().await {
        batch.push(first);
        while batch.len() < 512 {
            match records.try_recv() {
                Ok(r) => batch.push(r),
                Err(_) => break,
            }
        }
        for attempt in 0..5 {
            if client.as_ref().is_none_or(|c| c.is_closed()) {
                client = crate::store::connect(&database).await.ok();
            }
            if let Some(c) = client.as_mut() {
                match deliveries::record(c, instance, &batch).await {
                    Ok(()) => break,
                    Err(error) => {
                        tracing::warn!(%error, attempt, "recording delivery attempts failed")
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(200 << attempt)).await;
        }
        {
            let mut set = in_flight.lock().unwrap();
            for r in &batch {
                set.remove(&r.delivery_id);
            }
        }
        batch.clear();
        wake.notify_one();
    }
}
