//! Which subscriptions' deliveries are deferred, for the writer, and the
//! stage that gives deferred deliveries their pending rows.
//!
//! ```text
//!  writer:       slow, failing, or deferred already? ──▶ Placement::Deferred (events.deferred)
//!                committed ──▶ remembered here ──▶ materialiser woken
//!  materialiser: each deferral ──▶ rows up to max_pending_rows (store::deferrals)
//!                caught up and the receiver well ──▶ deferral ended, forgotten here
//! ```
//!
//! A subscription stays deferred from its first deferred delivery until
//! every one has its row and its receiver is no longer slow or failing, so
//! its later deliveries never overtake its earlier ones. The writer places
//! and remembers under [`Deferrals::turn`], and the materialiser ends a
//! deferral under it too, so the writer never places a delivery by a
//! deferral that has just ended. Between instances the database decides:
//! a deferral ends only if no delivery was deferred since it was read.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::slow::SlowSubscriptions;
use crate::mapping::event::Event;
use crate::store::ReconnectingClient;
use crate::store::deferrals::{self, Pass};
use crate::store::settings::Settings;
use crate::telemetry;

/// How often the materialiser looks at the deferrals when not woken.
const ROUND: Duration = Duration::from_millis(500);

/// The least time between two rounds: the writer wakes the materialiser
/// after every batch it defers deliveries in.
const MIN_GAP: Duration = Duration::from_millis(100);

/// The deferred subscriptions, shared by the writer and the materialiser.
#[derive(Clone)]
pub struct Deferrals {
    inner: Arc<Inner>,
}

struct Inner {
    deferred: Mutex<HashSet<Uuid>>,
    /// Whether `deferred` may hold a subscription: asked per delivery.
    any: AtomicBool,
    slow: SlowSubscriptions,
    /// Held by the writer while it places and stores a chunk, and by the
    /// materialiser while it ends a deferral.
    turn: tokio::sync::Mutex<()>,
    /// The writer deferred deliveries.
    woken: Notify,
    /// The set must be read from the database before the writer places
    /// again (at start, and when a stream session starts).
    stale: AtomicBool,
}

impl Deferrals {
    /// None deferred yet; `slow` says which subscriptions are slow or failing.
    pub fn new(slow: SlowSubscriptions) -> Self {
        Deferrals {
            inner: Arc::new(Inner {
                deferred: Mutex::default(),
                any: AtomicBool::new(false),
                slow,
                turn: tokio::sync::Mutex::new(()),
                woken: Notify::new(),
                stale: AtomicBool::new(true),
            }),
        }
    }

    /// Whether a delivery to `subscription` placed now is deferred: it is
    /// slow or failing, or deferred already.
    fn defers(&self, subscription: &Uuid) -> bool {
        (self.inner.any.load(Ordering::Acquire) && self.lock().contains(subscription))
            || self.inner.slow.is_slow(subscription)
    }

    /// Which of the subscriptions of `events` are deferred now, each asked
    /// once: the writer places a chunk by one answer per subscription, so a
    /// subscription found well halfway through a chunk does not get rows
    /// for later events while earlier ones are deferred.
    pub fn decide<'e>(&self, events: impl IntoIterator<Item = &'e Event>) -> HashSet<Uuid> {
        let mut asked: Vec<Uuid> = Vec::new();
        let mut deferred = HashSet::new();
        for event in events {
            for subscription in &event.subscriptions {
                if !asked.contains(subscription) {
                    asked.push(*subscription);
                    if self.defers(subscription) {
                        deferred.insert(*subscription);
                    }
                }
            }
        }
        deferred
    }

    /// A stream session starts: the deferrals are read again before the
    /// writer places (another instance may have begun or ended some).
    pub fn mark_stale(&self) {
        self.inner.stale.store(true, Ordering::Release);
    }

    /// Read the deferrals from the database if they may be stale (under the
    /// writer's turn, before it places a chunk): a deferral begun by an
    /// earlier process or another instance keeps its subscription's new
    /// deliveries behind its older ones from the first chunk on.
    pub async fn refresh(
        &self,
        client: &tokio_postgres::Client,
    ) -> Result<(), tokio_postgres::Error> {
        if !self.inner.stale.swap(false, Ordering::AcqRel) {
            return Ok(());
        }
        match deferrals::list(client).await {
            Ok(listed) => {
                self.remember(&listed);
                Ok(())
            }
            Err(error) => {
                self.inner.stale.store(true, Ordering::Release);
                Err(error)
            }
        }
    }

    fn remember(&self, subscriptions: &[Uuid]) {
        if subscriptions.is_empty() {
            return;
        }
        self.lock().extend(subscriptions.iter().copied());
        self.inner.any.store(true, Ordering::Release);
    }

    /// The writer's turn: held while it places and stores a chunk.
    pub async fn turn(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.inner.turn.lock().await
    }

    /// The writer stored deliveries deferred to `subscriptions` (under its
    /// turn): they stay deferred until caught up.
    pub fn deferred(&self, subscriptions: &[Uuid]) {
        if subscriptions.is_empty() {
            return;
        }
        self.remember(subscriptions);
        self.inner.woken.notify_one();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashSet<Uuid>> {
        self.inner
            .deferred
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    fn forget(&self, subscription: &Uuid) {
        let mut deferred = self.lock();
        deferred.remove(subscription);
        if deferred.is_empty() {
            self.inner.any.store(false, Ordering::Release);
        }
    }

    /// The materialiser, until `shutdown`: every round, each deferred
    /// subscription gets pending rows for its next deferred deliveries (as
    /// many as `max_pending_rows` allows), and a deferral that is caught up
    /// while its receiver is well ends. `wake` tells the dispatcher that
    /// rows were written. A failed round is logged and tried again; the
    /// obligations stay in the database meanwhile.
    pub async fn materialise(
        self,
        mut client: ReconnectingClient,
        settings: watch::Receiver<Settings>,
        wake: Arc<Notify>,
        shutdown: CancellationToken,
    ) {
        let mut more = false;
        // a failing streak is logged once (a restarting database fails
        // every round until it is back)
        let mut failing = false;
        loop {
            if !more {
                tokio::select! {
                    _ = self.inner.woken.notified() => {}
                    _ = tokio::time::sleep(ROUND) => {}
                    _ = shutdown.cancelled() => return,
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(MIN_GAP) => {}
                _ = shutdown.cancelled() => return,
            }
            let max_pending_rows = settings.borrow().max_pending_rows;
            more = match self.round(&mut client, max_pending_rows, &wake).await {
                Ok(more) => {
                    if std::mem::take(&mut failing) {
                        tracing::info!("deferred deliveries get their rows again");
                    }
                    more
                }
                Err(error) if failing => {
                    tracing::debug!(%error, "giving deferred deliveries their rows failed again");
                    false
                }
                Err(error) => {
                    tracing::warn!(%error, "giving deferred deliveries their rows failed; retrying every round (they wait in walhook.events.deferred meanwhile)");
                    failing = true;
                    false
                }
            };
        }
    }

    /// One round over the deferrals; whether one was given as many rows as
    /// it had room for (so more may be waiting).
    async fn round(
        &self,
        client: &mut ReconnectingClient,
        max_pending_rows: i64,
        wake: &Notify,
    ) -> Result<bool, Box<dyn std::error::Error + Send + Sync>> {
        let client = client.get().await?;
        let listed = deferrals::list(client).await?;
        self.remember(&listed);
        let mut more = false;
        for subscription in listed {
            let pass = deferrals::materialise(client, subscription, max_pending_rows).await?;
            if pass.written > 0 {
                telemetry::DELIVERIES_MATERIALISED
                    .with_label_values(&["deferred"])
                    .inc_by(pass.written);
                wake.notify_one();
            }
            more |= pass.room > 0 && pass.taken == pass.room;
            self.end_if_done(client, subscription, &pass).await?;
        }
        Ok(more)
    }

    /// End the deferral of `subscription` when the pass caught it up and
    /// its receiver is well; under the writer's turn, so its next chunk
    /// places by the outcome.
    async fn end_if_done(
        &self,
        client: &tokio_postgres::Client,
        subscription: Uuid,
        pass: &Pass,
    ) -> Result<(), tokio_postgres::Error> {
        if !pass.caught_up() || self.inner.slow.is_slow(&subscription) {
            return Ok(());
        }
        let _turn = self.inner.turn.lock().await;
        let ended = match pass.seen {
            Some(seen) => deferrals::finish(client, subscription, seen).await?,
            // deleted with its subscription
            None => true,
        };
        if ended {
            self.forget(&subscription);
            tracing::info!(%subscription, "every deferred delivery has its row and the receiver is well: deliveries are placed as usual again");
        }
        Ok(())
    }
}
