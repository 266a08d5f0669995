//! The breaker's arithmetic, pure: the failure rate over a window, and what a
//! batch of attempt outcomes reports to `walhook.subscription_health`.
//!
//! The recorder hands each batch of outcomes here ([`Breakers::observe`]);
//! what comes out is one [`Observation`] per subscription worth a write:
//! one that failed, or succeeded after failing (its stored count of
//! consecutive failures restarts), or succeeded while failing (it
//! recovers). A subscription whose attempts all succeed reports nothing, so
//! a healthy receiver costs no health write. The decision to open or close
//! the breaker is the database's (`store::health::observe`), from the stored
//! state and these reports; the failure rate is this instance's own, counted
//! here over `failure_window` in [`BUCKETS`] slices (memory per subscription
//! is fixed, whatever the rate).

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use uuid::Uuid;

pub use crate::store::health::Observation;

/// Slices of the failure window: the rate counts attempts of the slices that
/// started within the window, so it lags the exact sliding rate by at most
/// one slice.
pub const BUCKETS: u32 = 10;

/// The failure-rate rule of one subscription.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateRule {
    pub threshold: f64,
    pub window: Duration,
    pub min_attempts: u32,
}

impl Default for RateRule {
    /// The column defaults: half of at least 10 attempts over 5 minutes.
    fn default() -> Self {
        RateRule {
            threshold: 0.5,
            window: Duration::from_secs(300),
            min_attempts: 10,
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Slice {
    start: Instant,
    attempts: u32,
    failures: u32,
}

/// Attempts and failures over a sliding window, in slices.
#[derive(Debug, Default)]
pub struct Window {
    slices: VecDeque<Slice>,
}

impl Window {
    /// Count one attempt at `now`.
    pub fn record(&mut self, now: Instant, failed: bool, window: Duration) {
        let slice = window / BUCKETS;
        self.forget(now, window);
        match self.slices.back_mut() {
            Some(last) if now.saturating_duration_since(last.start) < slice => {
                last.attempts += 1;
                last.failures += u32::from(failed);
            }
            _ => self.slices.push_back(Slice {
                start: now,
                attempts: 1,
                failures: u32::from(failed),
            }),
        }
    }

    fn forget(&mut self, now: Instant, window: Duration) {
        while self
            .slices
            .front()
            .is_some_and(|s| now.saturating_duration_since(s.start) >= window)
        {
            self.slices.pop_front();
        }
    }

    /// (attempts, failures) within the window.
    pub fn counts(&mut self, now: Instant, window: Duration) -> (u32, u32) {
        self.forget(now, window);
        self.slices
            .iter()
            .fold((0, 0), |(a, f), s| (a + s.attempts, f + s.failures))
    }

    /// Whether the rule says failing: enough attempts, and at least the
    /// threshold of them failed.
    pub fn tripped(&mut self, now: Instant, rule: &RateRule) -> bool {
        let (attempts, failures) = self.counts(now, rule.window);
        attempts >= rule.min_attempts
            && attempts > 0
            && f64::from(failures) >= rule.threshold * f64::from(attempts)
    }
}

/// One attempt's outcome, as the breaker needs it.
#[derive(Debug, Clone)]
pub struct Outcome<'a> {
    pub subscription_id: Uuid,
    pub succeeded: bool,
    /// Made as a probe of a failing subscription.
    pub probe: bool,
    pub error: Option<&'a str>,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Default)]
struct Breaker {
    window: Window,
    /// Failures were reported since the last reported success: the next
    /// success is reported too (it restarts the stored count).
    owes_success: bool,
}

/// This instance's counters, per subscription.
#[derive(Debug, Default)]
pub struct Breakers {
    by_subscription: HashMap<Uuid, Breaker>,
}

impl Breakers {
    /// Count a batch of outcomes (in the order they ended); returns what to
    /// report. `rule` gives a subscription's failure-rate rule, `failing`
    /// whether it is failing as far as this instance knows.
    pub fn observe<'a>(
        &mut self,
        outcomes: impl IntoIterator<Item = Outcome<'a>>,
        now: Instant,
        rule: impl Fn(&Uuid) -> RateRule,
        failing: impl Fn(&Uuid) -> bool,
    ) -> Vec<Observation> {
        let mut batch: Vec<Observation> = Vec::new();
        let mut index: HashMap<Uuid, usize> = HashMap::new();
        for o in outcomes {
            let r = rule(&o.subscription_id);
            let breaker = self.by_subscription.entry(o.subscription_id).or_default();
            breaker.window.record(now, !o.succeeded, r.window);
            let i = *index.entry(o.subscription_id).or_insert_with(|| {
                batch.push(Observation {
                    subscription_id: o.subscription_id,
                    reset: false,
                    failures: 0,
                    probes_failed: 0,
                    last_error: None,
                    failed_at: None,
                    succeeded_at: None,
                    rate_tripped: false,
                });
                batch.len() - 1
            });
            let seen = &mut batch[i];
            if o.succeeded {
                seen.reset = true;
                seen.failures = 0;
                seen.succeeded_at = seen.succeeded_at.max(Some(o.at));
            } else {
                seen.failures += 1;
                seen.probes_failed += i32::from(o.probe);
                seen.failed_at = seen.failed_at.max(Some(o.at));
                seen.last_error = o.error.map(str::to_owned);
            }
        }
        batch.retain_mut(|seen| {
            let breaker = self
                .by_subscription
                .get_mut(&seen.subscription_id)
                .expect("counted above");
            let failed = seen.failures > 0 || seen.probes_failed > 0;
            let report =
                failed || (seen.reset && (breaker.owes_success || failing(&seen.subscription_id)));
            if failed {
                seen.rate_tripped = breaker.window.tripped(now, &rule(&seen.subscription_id));
            }
            if report {
                breaker.owes_success = seen.failures > 0;
            }
            report
        });
        batch
    }

    /// Forget subscriptions that no longer exist.
    pub fn retain(&mut self, exists: impl Fn(&Uuid) -> bool) {
        self.by_subscription.retain(|id, _| exists(id));
    }
}

/// Two reports of one subscription as one: `later` after `earlier`.
pub fn merge(earlier: Observation, later: Observation) -> Observation {
    Observation {
        subscription_id: later.subscription_id,
        reset: earlier.reset || later.reset,
        failures: if later.reset {
            later.failures
        } else {
            earlier.failures + later.failures
        },
        probes_failed: earlier.probes_failed + later.probes_failed,
        last_error: later.last_error.or(earlier.last_error),
        failed_at: earlier.failed_at.max(later.failed_at),
        succeeded_at: earlier.succeeded_at.max(later.succeeded_at),
        rate_tripped: earlier.rate_tripped || later.rate_tripped,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(id: Uuid, succeeded: bool) -> Outcome<'static> {
        Outcome {
            subscription_id: id,
            succeeded,
            probe: false,
            error: (!succeeded).then_some("HTTP 500"),
            at: Utc::now(),
        }
    }

    #[test]
    fn the_rate_counts_only_the_window_and_needs_its_minimum() {
        let rule = RateRule {
            threshold: 0.5,
            window: Duration::from_secs(10),
            min_attempts: 4,
        };
        let t0 = Instant::now();
        let mut w = Window::default();
        w.record(t0, true, rule.window);
        w.record(t0, true, rule.window);
        w.record(t0, false, rule.window);
        assert!(!w.tripped(t0, &rule), "3 attempts: under the minimum");
        w.record(t0 + Duration::from_secs(3), false, rule.window);
        assert_eq!(w.counts(t0 + Duration::from_secs(3), rule.window), (4, 2));
        assert!(w.tripped(t0 + Duration::from_secs(3), &rule), "2 of 4");
        // the first slice leaves the window
        assert_eq!(w.counts(t0 + Duration::from_secs(10), rule.window), (1, 0));
        assert!(!w.tripped(t0 + Duration::from_secs(10), &rule));
    }

    #[test]
    fn a_healthy_receiver_reports_nothing_and_a_success_after_failures_once() {
        let id = Uuid::new_v4();
        let mut b = Breakers::default();
        let now = Instant::now();
        let none = |_: &Uuid| false;
        let observe = |b: &mut Breakers, o: Vec<Outcome<'static>>| {
            b.observe(o, now, |_| RateRule::default(), none)
        };
        assert!(observe(&mut b, vec![outcome(id, true); 50]).is_empty());
        let failed = observe(&mut b, vec![outcome(id, false), outcome(id, false)]);
        assert_eq!(failed.len(), 1);
        assert_eq!((failed[0].failures, failed[0].reset), (2, false));
        assert_eq!(failed[0].last_error.as_deref(), Some("HTTP 500"));
        let back = observe(&mut b, vec![outcome(id, true)]);
        assert_eq!(
            (back[0].failures, back[0].reset),
            (0, true),
            "reported once"
        );
        assert!(observe(&mut b, vec![outcome(id, true)]).is_empty());
        // success then failure within a batch: the count restarts at 1
        let mixed = observe(&mut b, vec![outcome(id, true), outcome(id, false)]);
        assert_eq!((mixed[0].failures, mixed[0].reset), (1, true));
    }

    #[test]
    fn a_success_while_failing_is_reported_and_probes_are_counted() {
        let id = Uuid::new_v4();
        let mut b = Breakers::default();
        let now = Instant::now();
        let ok = b.observe(
            vec![outcome(id, true)],
            now,
            |_| RateRule::default(),
            |_| true,
        );
        assert_eq!(
            ok.len(),
            1,
            "another instance opened it: this success closes it"
        );
        let mut probe = outcome(id, false);
        probe.probe = true;
        let failed = b.observe(vec![probe], now, |_| RateRule::default(), |_| true);
        assert_eq!(failed[0].probes_failed, 1);
    }

    #[test]
    fn the_rate_trips_with_the_rule_of_the_subscription() {
        let id = Uuid::new_v4();
        let mut b = Breakers::default();
        let rule = |_: &Uuid| RateRule {
            threshold: 0.5,
            window: Duration::from_secs(60),
            min_attempts: 4,
        };
        let now = Instant::now();
        let batch = vec![
            outcome(id, false),
            outcome(id, true),
            outcome(id, false),
            outcome(id, true),
            outcome(id, false),
        ];
        let seen = b.observe(batch, now, rule, |_| false);
        assert_eq!(seen[0].failures, 1, "one after the last success");
        assert!(seen[0].rate_tripped, "3 of 5 failed");
    }

    #[test]
    fn reports_merge_in_order() {
        let id = Uuid::new_v4();
        let base = Observation {
            subscription_id: id,
            reset: false,
            failures: 2,
            probes_failed: 1,
            last_error: Some("a".into()),
            failed_at: None,
            succeeded_at: None,
            rate_tripped: false,
        };
        let more = merge(base.clone(), base.clone());
        assert_eq!((more.failures, more.probes_failed), (4, 2));
        let reset = Observation {
            reset: true,
            failures: 0,
            last_error: None,
            ..base.clone()
        };
        let after = merge(base.clone(), reset.clone());
        assert_eq!((after.failures, after.reset), (0, true));
        assert_eq!(after.last_error.as_deref(), Some("a"));
        let failed_after = merge(reset, base);
        assert_eq!((failed_after.failures, failed_after.reset), (2, true));
    }
}
