//! Endpoint health in PostgreSQL: `walhook.subscription_health`, one row per
//! subscription that ever failed (no row: healthy).
//!
//! Health is per subscription across instances. Each delivering instance
//! keeps a view in memory and reports what its attempts saw, batched:
//! failures, the first success after failures, failed probes
//! ([`observe`]). The report goes through `walhook.observe_health`
//! (migration 0015), which locks the subscription's row and decides from the
//! stored state plus the report, so a transition (healthy -> failing,
//! failing -> healthy) happens once whichever instance reports first.
//! [`disable_expired`] turns subscriptions failing for their
//! `disable_after` into disabled ones, with the reason, in one statement.
//! [`load`] is the view every instance refreshes: each subscription's
//! state, thresholds and rate limit.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio_postgres::GenericClient;
use uuid::Uuid;

/// A subscription's health state (`walhook.subscription_health.state`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum HealthState {
    Healthy,
    Failing,
    Disabled,
}

impl HealthState {
    pub fn parse(text: &str) -> HealthState {
        match text {
            "failing" => HealthState::Failing,
            "disabled" => HealthState::Disabled,
            _ => HealthState::Healthy,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            HealthState::Healthy => "healthy",
            HealthState::Failing => "failing",
            HealthState::Disabled => "disabled",
        }
    }
}

/// One subscription as the delivery stage's health view needs it.
#[derive(Debug, Clone)]
pub struct SubscriptionHealth {
    pub subscription_id: Uuid,
    pub state: HealthState,
    /// `rate_limit`: deliveries per second per instance (None: no limit).
    pub rate_limit: Option<f64>,
    /// The failure-rate rule: at least `min_attempts` attempts in `window`,
    /// of which at least `rate_threshold` failed.
    pub rate_threshold: f64,
    pub window: Duration,
    pub min_attempts: u32,
}

const LOAD: &str = "
SELECT s.id, coalesce(h.state, 'healthy'), s.rate_limit, s.failure_rate_threshold,
       extract(epoch FROM s.failure_window)::float8, s.failure_window_min_attempts
  FROM walhook.subscriptions s
  LEFT JOIN walhook.subscription_health h ON h.subscription_id = s.id";

/// Every subscription's health state, thresholds and rate limit.
pub async fn load(
    client: &impl GenericClient,
) -> Result<Vec<SubscriptionHealth>, tokio_postgres::Error> {
    client
        .query(LOAD, &[])
        .await?
        .iter()
        .map(|r| {
            Ok(SubscriptionHealth {
                subscription_id: r.try_get(0)?,
                state: HealthState::parse(r.try_get(1)?),
                rate_limit: r.try_get(2)?,
                rate_threshold: r.try_get(3)?,
                window: Duration::from_secs_f64(r.try_get::<_, f64>(4)?.max(1.0)),
                min_attempts: r.try_get::<_, i32>(5)?.max(1) as u32,
            })
        })
        .collect()
}

/// What one instance's attempts of one subscription saw since its last
/// report.
#[derive(Debug, Clone, PartialEq)]
pub struct Observation {
    pub subscription_id: Uuid,
    /// An attempt succeeded: the stored consecutive failures restart from
    /// `failures` (and a failing subscription recovers if `failures` is 0).
    pub reset: bool,
    /// Failures after the last success (all of them without a success).
    pub failures: i32,
    /// Failed probes (attempts made while failing): each doubles the wait
    /// for the next probe.
    pub probes_failed: i32,
    pub last_error: Option<String>,
    pub failed_at: Option<DateTime<Utc>>,
    pub succeeded_at: Option<DateTime<Utc>>,
    /// This instance's failure rate over the window is past the threshold.
    pub rate_tripped: bool,
}

/// A state change [`observe`] or [`disable_expired`] made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    pub subscription_id: Uuid,
    pub from: HealthState,
    pub to: HealthState,
}

/// Report `observations` (one statement, one transaction); returns the
/// transitions they caused.
pub async fn observe(
    client: &impl GenericClient,
    observations: &[Observation],
) -> Result<Vec<Transition>, tokio_postgres::Error> {
    let ids: Vec<Uuid> = observations.iter().map(|o| o.subscription_id).collect();
    let reset: Vec<bool> = observations.iter().map(|o| o.reset).collect();
    let failures: Vec<i32> = observations.iter().map(|o| o.failures).collect();
    let probes: Vec<i32> = observations.iter().map(|o| o.probes_failed).collect();
    let errors: Vec<Option<&str>> = observations
        .iter()
        .map(|o| o.last_error.as_deref())
        .collect();
    let failed_at: Vec<Option<DateTime<Utc>>> = observations.iter().map(|o| o.failed_at).collect();
    let succeeded_at: Vec<Option<DateTime<Utc>>> =
        observations.iter().map(|o| o.succeeded_at).collect();
    let tripped: Vec<bool> = observations.iter().map(|o| o.rate_tripped).collect();
    client
        .query(
            "SELECT subscription_id, from_state, to_state
               FROM walhook.observe_health($1, $2, $3, $4, $5, $6, $7, $8)",
            &[
                &ids,
                &reset,
                &failures,
                &probes,
                &errors,
                &failed_at,
                &succeeded_at,
                &tripped,
            ],
        )
        .await?
        .iter()
        .map(|r| {
            Ok(Transition {
                subscription_id: r.try_get(0)?,
                from: HealthState::parse(r.try_get(1)?),
                to: HealthState::parse(r.try_get(2)?),
            })
        })
        .collect()
}

/// Disable every subscription failing for longer than its `disable_after`
/// (subscriptions.disabled, disabled_reason, disabled_at and the health
/// row's state, in one transaction); returns them with the reason.
pub async fn disable_expired(
    client: &impl GenericClient,
) -> Result<Vec<(Uuid, String)>, tokio_postgres::Error> {
    client
        .query(
            "SELECT subscription_id, reason FROM walhook.disable_failing_subscriptions()",
            &[],
        )
        .await?
        .iter()
        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
        .collect()
}

/// A subscription that is not healthy, as `walhook status` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct Unhealthy {
    pub id: Uuid,
    pub name: Option<String>,
    pub url: String,
    pub state: HealthState,
    /// Failing since (failing), or disabled at (disabled).
    pub since: Option<DateTime<Utc>>,
    pub consecutive_failures: i32,
    pub last_error: Option<String>,
    pub next_probe_at: Option<DateTime<Utc>>,
    pub disabled_reason: Option<String>,
}

/// Failing and disabled subscriptions, failing first, longest first.
pub async fn unhealthy(
    client: &impl GenericClient,
) -> Result<Vec<Unhealthy>, tokio_postgres::Error> {
    client
        .query(
            "SELECT s.id, s.name, s.url, h.state,
                    CASE WHEN h.state = 'failing' THEN h.failing_since
                         ELSE coalesce(s.disabled_at, h.updated_at) END,
                    h.consecutive_failures, h.last_error, h.next_probe_at, s.disabled_reason
               FROM walhook.subscription_health h
               JOIN walhook.subscriptions s ON s.id = h.subscription_id
              WHERE h.state <> 'healthy'
              ORDER BY h.state DESC, 5, s.id",
            &[],
        )
        .await?
        .iter()
        .map(|r| {
            Ok(Unhealthy {
                id: r.try_get(0)?,
                name: r.try_get(1)?,
                url: r.try_get(2)?,
                state: HealthState::parse(r.try_get(3)?),
                since: r.try_get(4)?,
                consecutive_failures: r.try_get(5)?,
                last_error: r.try_get(6)?,
                next_probe_at: r.try_get(7)?,
                disabled_reason: r.try_get(8)?,
            })
        })
        .collect()
}
