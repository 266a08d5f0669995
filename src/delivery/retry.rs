//! Retry policy: the subscription's schedule, ±20% jitter, and `Retry-After`.
//! Pure functions.

use std::time::Duration;

use chrono::{DateTime, Utc};
use rand::Rng;

/// The delay before retry number `retry_index` (0 = the first retry), or None
/// when the schedule is exhausted and the delivery has failed.
pub fn next_delay(schedule: &[Duration], retry_index: usize) -> Option<Duration> {
    schedule.get(retry_index).copied()
}

/// `delay` scaled by a random factor in [0.8, 1.2].
pub fn jitter(delay: Duration, rng: &mut impl Rng) -> Duration {
    delay.mul_f64(rng.gen_range(0.8..=1.2))
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
pub fn delay_for(
    scheduled: Duration,
    retry_after: Option<Duration>,
    rng: &mut impl Rng,
) -> Duration {
    let Some(retry_after) = retry_after else {
        return jitter(scheduled, rng);
    };
    let cap = scheduled * 10;
    let floor = MIN_RETRY_AFTER.min(scheduled);
    let base = retry_after.min(cap).max(floor);
    base.mul_f64(rng.gen_range(1.0..=1.2)).min(cap.max(base))
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
}
