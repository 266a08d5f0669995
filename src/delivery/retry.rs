//! Retry policy: the subscription's schedule, ±20% jitter, and `Retry-After`.
//! Pure functions, none of which can panic or overflow: every delay is
//! clamped to [`MAX_RETRY_DELAY`] before it is scaled, and a retry time that
//! cannot be represented is the latest one that can.

use std::time::Duration;

use chrono::{DateTime, Utc};
use rand::Rng;

/// The longest wait before a retry, whatever the schedule or `Retry-After`
/// says: 365 days. The database refuses longer schedule steps (migration 0011,
/// `retry_schedule rule maximum`); this clamp covers `Retry-After` and rows
/// written before that rule.
pub const MAX_RETRY_DELAY: Duration = Duration::from_secs(365 * 24 * 60 * 60);

/// The delay before retry number `retry_index` (0 = the first retry), or None
/// when the schedule is exhausted and the delivery has failed.
pub fn next_delay(schedule: &[Duration], retry_index: usize) -> Option<Duration> {
    schedule.get(retry_index).copied()
}

/// `delay` scaled by a random factor in [0.8, 1.2], at most [`MAX_RETRY_DELAY`].
pub fn jitter(delay: Duration, rng: &mut impl Rng) -> Duration {
    delay
        .min(MAX_RETRY_DELAY)
        .mul_f64(rng.gen_range(0.8..=1.2))
        .min(MAX_RETRY_DELAY)
}

/// A `Retry-After` value: delta-seconds or an HTTP-date.
pub fn parse_retry_after(value: &str, now: DateTime<Utc>) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = DateTime::parse_from_rfc2822(value).ok()?;
    Some(
        (at.with_timezone(&Utc) - now)
            .to_std()
            .unwrap_or(Duration::ZERO),
    )
}

/// The shortest wait a `Retry-After` obtains (when the schedule's own delay is
/// not shorter): `Retry-After: 0` must not make every instance retry at once.
pub const MIN_RETRY_AFTER: Duration = Duration::from_secs(1);

/// The delay before the next attempt: the jittered schedule, or `Retry-After`
/// (honoured on 429/503 only), clamped between a floor (the smaller of
/// [`MIN_RETRY_AFTER`] and the scheduled delay) and ten times the scheduled
/// delay, then jittered upwards by up to 20% (never sooner than the receiver
/// asked, never past the cap), so instances told the same value spread out.
/// Never more than [`MAX_RETRY_DELAY`].
pub fn delay_for(
    scheduled: Duration,
    retry_after: Option<Duration>,
    rng: &mut impl Rng,
) -> Duration {
    let scheduled = scheduled.min(MAX_RETRY_DELAY);
    let Some(retry_after) = retry_after else {
        return jitter(scheduled, rng);
    };
    let cap = scheduled.saturating_mul(10).min(MAX_RETRY_DELAY);
    let floor = MIN_RETRY_AFTER.min(scheduled);
    let base = retry_after.min(cap).max(floor);
    base.mul_f64(rng.gen_range(1.0..=1.2)).min(cap.max(base))
}

/// When to retry: `delay` (at most [`MAX_RETRY_DELAY`]) after `now`, or the
/// latest representable time when that is past it.
pub fn retry_at(now: DateTime<Utc>, delay: Duration) -> DateTime<Utc> {
    chrono::Duration::from_std(delay.min(MAX_RETRY_DELAY))
        .ok()
        .and_then(|delay| now.checked_add_signed(delay))
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn schedule_ends_in_failure() {
        let s = [Duration::from_secs(5), Duration::from_secs(300)];
        assert_eq!(next_delay(&s, 0), Some(Duration::from_secs(5)));
        assert_eq!(next_delay(&s, 1), Some(Duration::from_secs(300)));
        assert_eq!(next_delay(&s, 2), None);
    }

    #[test]
    fn jitter_stays_within_twenty_percent() {
        let mut rng = rand::thread_rng();
        for _ in 0..1000 {
            let d = jitter(Duration::from_secs(10), &mut rng);
            assert!(
                d >= Duration::from_secs(8) && d <= Duration::from_secs(12),
                "{d:?}"
            );
        }
    }

    #[test]
    fn retry_after_forms_and_clamp() {
        let now = Utc.with_ymd_and_hms(2024, 12, 12, 17, 0, 0).unwrap();
        assert_eq!(parse_retry_after("7", now), Some(Duration::from_secs(7)));
        assert_eq!(
            parse_retry_after("Thu, 12 Dec 2024 17:01:00 GMT", now),
            Some(Duration::from_secs(60))
        );
        assert_eq!(parse_retry_after("soon", now), None);
        let mut rng = rand::thread_rng();
        assert_eq!(
            delay_for(
                Duration::from_secs(1),
                Some(Duration::from_secs(3600)),
                &mut rng
            ),
            Duration::from_secs(10)
        );
        let d = delay_for(
            Duration::from_secs(10),
            Some(Duration::from_secs(2)),
            &mut rng,
        );
        assert!(
            d >= Duration::from_secs(2) && d <= Duration::from_millis(2_400),
            "{d:?}"
        );
    }

    #[test]
    fn tiny_retry_after_gets_a_floor_and_jitter() {
        let mut rng = rand::thread_rng();
        let scheduled = Duration::from_secs(300);
        let delays: Vec<Duration> = (0..200)
            .map(|_| delay_for(scheduled, Some(Duration::ZERO), &mut rng))
            .collect();
        for d in &delays {
            assert!(
                *d >= MIN_RETRY_AFTER && *d <= MIN_RETRY_AFTER.mul_f64(1.2),
                "{d:?}"
            );
        }
        let first = delays[0];
        assert!(
            delays.iter().any(|d| *d != first),
            "instances told Retry-After: 0 spread out"
        );
        // a schedule shorter than the floor (tests use milliseconds) is the floor
        let d = delay_for(Duration::from_millis(10), Some(Duration::ZERO), &mut rng);
        assert!(
            d >= Duration::from_millis(10) && d <= Duration::from_millis(12),
            "{d:?}"
        );
        // jitter never passes the cap
        for _ in 0..100 {
            let d = delay_for(
                Duration::from_secs(1),
                Some(Duration::from_secs(9)),
                &mut rng,
            );
            assert!(
                d >= Duration::from_secs(9) && d <= Duration::from_secs(10),
                "{d:?}"
            );
        }
    }

    #[test]
    fn delays_too_long_to_represent_clamp_to_the_maximum() {
        let mut rng = rand::thread_rng();
        let years_300000 = Duration::from_secs(300_000 * 365 * 24 * 3600);
        for scheduled in [years_300000, Duration::MAX] {
            let d = jitter(scheduled, &mut rng);
            assert!(
                d >= MAX_RETRY_DELAY.mul_f64(0.8) && d <= MAX_RETRY_DELAY,
                "{d:?}"
            );
            for retry_after in [None, Some(Duration::ZERO), Some(Duration::MAX)] {
                let d = delay_for(scheduled, retry_after, &mut rng);
                assert!(d <= MAX_RETRY_DELAY, "{scheduled:?} {retry_after:?}: {d:?}");
            }
        }
        // a huge Retry-After on a short schedule keeps the schedule's cap
        assert_eq!(
            delay_for(Duration::from_secs(1), Some(Duration::MAX), &mut rng),
            Duration::from_secs(10)
        );
        let now = Utc.with_ymd_and_hms(2024, 12, 12, 17, 0, 0).unwrap();
        assert_eq!(
            retry_at(now, Duration::MAX),
            now + chrono::Duration::days(365)
        );
        assert_eq!(
            retry_at(now, Duration::from_secs(5)),
            now + chrono::Duration::seconds(5)
        );
        assert_eq!(
            retry_at(DateTime::<Utc>::MAX_UTC, Duration::from_secs(1)),
            DateTime::<Utc>::MAX_UTC
        );
    }
}
