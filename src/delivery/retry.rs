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

/// The delay before the next attempt: `Retry-After` (honoured on 429/503 only)
/// clamped to ten times the scheduled delay, else the jittered schedule.
pub fn delay_for(
    scheduled: Duration,
    retry_after: Option<Duration>,
    rng: &mut impl Rng,
) -> Duration {
    match retry_after {
        Some(ra) => ra.min(scheduled * 10),
        None => jitter(scheduled, rng),
    }
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
        assert_eq!(
            delay_for(
                Duration::from_secs(10),
                Some(Duration::from_secs(2)),
                &mut rng
            ),
            Duration::from_secs(2)
        );
    }
}
