//! Endpoint health in the delivery stage: the breaker per subscription, and
//! the task that keeps it in step with `walhook.subscription_health`.
//!
//! ```text
//!  recorder ──(batch of outcomes)──▶ Health::observe (window, counters) ──▶ reports
//!  Keeper: reports ──▶ store::health::observe ──▶ transitions ──▶ view, metrics, wake
//!          every second: view ◀── store::health::load; disable_expired
//!  admission / scheduler / claim ◀── Health::is_failing, rate_limit
//! ```
//!
//! A subscription is failing after `failure_threshold` consecutive failed
//! attempts (summed over instances in its row) or when this instance saw at
//! least `failure_rate_threshold` of at least `failure_window_min_attempts`
//! attempts fail over `failure_window` (counted in memory:
//! [`super::breaker`]; cheaper than reading `walhook.delivery_attempts`, and
//! exact for what this instance attempts). While failing:
//! - its new deliveries are not admitted to memory (the admission asks
//!   [`super::first_attempts::SlowSubscriptions`], which asks this), and what
//!   this instance holds of it in memory leaves for PostgreSQL;
//! - claims leave it out, except one probe (its oldest pending delivery, due
//!   or not) once `next_probe_at` has passed (`store::deliveries`);
//! - a failed probe doubles the wait for the next (at most 32 times
//!   `probe_interval`) and leaves its delivery where it was in its retry
//!   schedule, so waiting behind the breaker uses no retries.
//!
//! The first success (a probe, or any attempt) closes it: the database makes
//! the backlog due at once, oldest first, and every instance is woken to
//! claim it. Failing for `disable_after` disables the subscription.
//! Instances agree through the health row (see `store::health`): each
//! reports, the row lock decides, and every instance re-reads the states
//! every second. Health writes happen only for failures, the first success
//! after failures, and transitions; a subscription that never fails costs
//! one counter per attempt in memory.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::breaker::{self, Breakers, Observation, Outcome, RateRule};
use crate::store::ReconnectingClient;
use crate::store::health::{self as stored, HealthState, SubscriptionHealth, Transition};
use crate::telemetry;

/// How often the keeper re-reads every subscription's health and limits,
/// and disables those failing past their `disable_after`.
pub const REFRESH_EVERY: Duration = Duration::from_secs(1);

type View = Arc<HashMap<Uuid, SubscriptionHealth>>;

/// The health view of this instance, shared by the admission, the
/// dispatcher, the recorder and the keeper.
#[derive(Debug, Clone, Default)]
pub struct Health(Arc<Inner>);

#[derive(Debug, Default)]
struct Inner {
    view: RwLock<View>,
    /// Whether any subscription is failing: the admission asks for every
    /// delivery, and mostly none is.
    any_failing: AtomicBool,
    /// Whether any subscription has a `rate_limit`.
    any_limited: AtomicBool,
    breakers: Mutex<Breakers>,
}

impl Health {
    fn view(&self) -> View {
        self.0
            .view
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn set_view(&self, view: HashMap<Uuid, SubscriptionHealth>) {
        let failing = view.values().any(|s| s.state == HealthState::Failing);
        let limited = view.values().any(|s| s.rate_limit.is_some());
        *self.0.view.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(view);
        self.0.any_failing.store(failing, Ordering::Release);
        self.0.any_limited.store(limited, Ordering::Release);
    }

    /// Every subscription's state and limits as just loaded.
    pub fn replace(&self, loaded: Vec<SubscriptionHealth>) {
        let view = loaded
            .into_iter()
            .map(|s| (s.subscription_id, s))
            .collect::<HashMap<_, _>>();
        self.0
            .breakers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|id| view.contains_key(id));
        self.set_view(view);
    }

    /// A transition this instance made, before the next load shows it.
    pub fn set_state(&self, subscription: Uuid, state: HealthState) {
        let mut view = (*self.view()).clone();
        if let Some(s) = view.get_mut(&subscription) {
            s.state = state;
        }
        self.set_view(view);
    }

    /// Whether any subscription is failing.
    pub fn any_failing(&self) -> bool {
        self.0.any_failing.load(Ordering::Acquire)
    }

    /// Whether `subscription` is failing: only probes are attempted. (One
    /// disabled by its health is disabled: nothing is.)
    pub fn is_failing(&self, subscription: &Uuid) -> bool {
        self.any_failing()
            && self
                .view()
                .get(subscription)
                .is_some_and(|s| s.state == HealthState::Failing)
    }

    /// `subscription`'s `rate_limit`, if it has one.
    pub fn rate_limit(&self, subscription: &Uuid) -> Option<f64> {
        if !self.0.any_limited.load(Ordering::Acquire) {
            return None;
        }
        self.view().get(subscription).and_then(|s| s.rate_limit)
    }

    /// Every rate-limited subscription with its limit.
    pub fn rate_limited(&self) -> Vec<(Uuid, f64)> {
        if !self.0.any_limited.load(Ordering::Acquire) {
            return Vec::new();
        }
        self.view()
            .values()
            .filter_map(|s| Some((s.subscription_id, s.rate_limit?)))
            .collect()
    }

    /// Count a batch of outcomes; returns what to report (see
    /// [`Breakers::observe`]).
    pub fn observe<'a>(&self, outcomes: impl IntoIterator<Item = Outcome<'a>>) -> Vec<Observation> {
        let view = self.view();
        let rule = |id: &Uuid| {
            view.get(id).map_or_else(RateRule::default, |s| RateRule {
                threshold: s.rate_threshold,
                window: s.window,
                min_attempts: s.min_attempts,
            })
        };
        let failing = |id: &Uuid| {
            view.get(id)
                .is_some_and(|s| s.state == HealthState::Failing)
        };
        self.0
            .breakers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .observe(outcomes, Instant::now(), rule, failing)
    }
}

/// The task that writes reports and transitions, and refreshes the view.
pub struct Keeper {
    pub database: crate::tls::ConnectConfig,
    pub health: Health,
    /// Where a recovered subscription is kept out of memory a while, so its
    /// backlog goes first.
    pub slow: super::first_attempts::SlowSubscriptions,
    /// The claim loop, woken when a subscription recovers.
    pub wake: Arc<Notify>,
    pub reports: mpsc::UnboundedReceiver<Vec<Observation>>,
}

impl Keeper {
    /// Until `shutdown` (or the reports' channel closes).
    pub async fn run(mut self, shutdown: CancellationToken) {
        let mut client = ReconnectingClient::new(self.database.clone());
        let mut refresh = tokio::time::interval(REFRESH_EVERY);
        refresh.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // reports not stored yet (the database unreachable): kept, merged
        let mut unsent: HashMap<Uuid, Observation> = HashMap::new();
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                reports = self.reports.recv() => {
                    let Some(reports) = reports else { break };
                    merge_into(&mut unsent, reports);
                    while let Ok(more) = self.reports.try_recv() {
                        merge_into(&mut unsent, more);
                    }
                    self.report(&mut client, &mut unsent).await;
                }
                _ = refresh.tick() => {
                    if !unsent.is_empty() {
                        self.report(&mut client, &mut unsent).await;
                    }
                    self.refresh(&mut client).await;
                }
            }
        }
        if !unsent.is_empty() {
            self.report(&mut client, &mut unsent).await;
        }
    }

    async fn report(
        &self,
        client: &mut ReconnectingClient,
        unsent: &mut HashMap<Uuid, Observation>,
    ) {
        let observations: Vec<Observation> = unsent.values().cloned().collect();
        let result = match client.get().await {
            Ok(c) => stored::observe(&*c, &observations)
                .await
                .map_err(|e| crate::error::describe(&e)),
            Err(e) => Err(e.to_string()),
        };
        match result {
            Ok(transitions) => {
                unsent.clear();
                for t in transitions {
                    self.transitioned(&t, None);
                }
            }
            Err(error) => {
                telemetry::HEALTH_WRITE_FAILURES.inc();
                tracing::warn!(%error, subscriptions = observations.len(), "storing endpoint health failed; retrying");
            }
        }
    }

    /// Re-read the view; disable what failed for too long; set the gauges.
    async fn refresh(&self, client: &mut ReconnectingClient) {
        let c = match client.get().await {
            Ok(c) => c,
            Err(error) => {
                tracing::warn!(%error, "cannot reach the database to read endpoint health; retrying");
                return;
            }
        };
        match stored::disable_expired(&*c).await {
            Ok(disabled) => {
                for (subscription_id, reason) in disabled {
                    let t = Transition {
                        subscription_id,
                        from: HealthState::Failing,
                        to: HealthState::Disabled,
                    };
                    self.transitioned(&t, Some(&reason));
                }
            }
            Err(error) => {
                telemetry::HEALTH_WRITE_FAILURES.inc();
                tracing::warn!(error = %crate::error::describe(&error), "disabling subscriptions failing past disable_after failed; retrying");
            }
        }
        match stored::load(&*c).await {
            Ok(loaded) => {
                for state in [
                    HealthState::Healthy,
                    HealthState::Failing,
                    HealthState::Disabled,
                ] {
                    let n = loaded.iter().filter(|s| s.state == state).count();
                    telemetry::SUBSCRIPTIONS_BY_STATE
                        .with_label_values(&[state.as_str()])
                        .set(n as i64);
                }
                // recovered by another instance: its backlog goes first here too
                let before = self.health.view();
                for s in &loaded {
                    let was = before.get(&s.subscription_id).map(|b| b.state);
                    if was == Some(HealthState::Failing) && s.state == HealthState::Healthy {
                        self.slow.slowed(s.subscription_id);
                        self.wake.notify_one();
                    }
                }
                self.health.replace(loaded);
            }
            Err(error) => {
                tracing::warn!(error = %crate::error::describe(&error), "reading endpoint health failed; retrying")
            }
        }
    }

    /// A transition this instance made: follow it, count it, say it.
    fn transitioned(&self, t: &Transition, reason: Option<&str>) {
        self.health.set_state(t.subscription_id, t.to);
        telemetry::SUBSCRIPTION_TRANSITIONS
            .with_label_values(&[t.to.as_str()])
            .inc();
        let subscription = t.subscription_id;
        match t.to {
            HealthState::Failing => {
                tracing::warn!(%subscription, "subscription is failing: its deliveries wait in PostgreSQL and one probe is tried at a time (see walhook status)")
            }
            HealthState::Healthy => {
                tracing::info!(%subscription, "subscription recovered: its backlog is due now");
                self.slow.slowed(subscription);
                self.wake.notify_one();
            }
            HealthState::Disabled => {
                tracing::warn!(%subscription, reason = reason.unwrap_or(""), "subscription disabled after failing for its disable_after; fix the receiver, then set disabled = false to enable it again")
            }
        }
    }
}

/// Merge reports into those not stored yet.
fn merge_into(unsent: &mut HashMap<Uuid, Observation>, reports: Vec<Observation>) {
    for report in reports {
        let id = report.subscription_id;
        let merged = match unsent.remove(&id) {
            Some(earlier) => breaker::merge(earlier, report),
            None => report,
        };
        unsent.insert(id, merged);
    }
}
