//! A subscription's `rate_limit` as a token bucket, in the dispatcher.
//!
//! Every attempt of a rate-limited subscription takes a token before it
//! starts, first attempts from memory and claimed deliveries alike; tokens
//! come back at `rate_limit` per second, and the bucket holds at most a
//! tenth of a second's worth (at least one), so over any span `t` a
//! subscription gets at most `rate * t` plus that burst. A delivery without a
//! token waits in its queue: it is not failed and uses no retry. The limit
//! is per instance, as `max_in_flight` is.

use std::time::{Duration, Instant};

/// The burst a bucket allows, in seconds of its rate.
const BURST_SECONDS: f64 = 0.1;

#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket refilling at `rate` tokens per second (> 0).
    pub fn new(rate: f64, now: Instant) -> TokenBucket {
        let mut bucket = TokenBucket {
            rate,
            tokens: 0.0,
            last: now,
        };
        bucket.tokens = bucket.capacity();
        bucket
    }

    fn capacity(&self) -> f64 {
        (self.rate * BURST_SECONDS).max(1.0)
    }

    /// Follow a changed `rate_limit`, keeping the tokens earned so far.
    pub fn set_rate(&mut self, rate: f64, now: Instant) {
        if rate != self.rate {
            self.refill(now);
            self.rate = rate;
            self.tokens = self.tokens.min(self.capacity());
        }
    }

    fn refill(&mut self, now: Instant) {
        let earned = now.saturating_duration_since(self.last).as_secs_f64() * self.rate;
        self.tokens = (self.tokens + earned).min(self.capacity());
        self.last = self.last.max(now);
    }

    /// Take a token, or say how long until one is there.
    pub fn take(&mut self, now: Instant) -> Result<(), Duration> {
        self.refill(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - self.tokens) / self.rate))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Tokens taken by someone who asks whenever one is promised.
    fn taken_over(rate: f64, span: Duration) -> u32 {
        let start = Instant::now();
        let mut bucket = TokenBucket::new(rate, start);
        let mut now = start;
        let mut taken = 0;
        while now < start + span {
            match bucket.take(now) {
                Ok(()) => taken += 1,
                Err(wait) => now += wait,
            }
        }
        taken
    }

    #[test]
    fn over_a_minute_the_rate_holds_within_its_burst() {
        for rate in [0.5, 7.0, 50.0, 1000.0] {
            let taken = f64::from(taken_over(rate, Duration::from_secs(60)));
            let limit = rate * 60.0;
            assert!(
                taken <= limit + (rate * BURST_SECONDS).max(1.0) + 1.0,
                "{rate}/s: {taken} in a minute"
            );
            assert!(taken >= limit * 0.99, "{rate}/s: only {taken} in a minute");
        }
    }

    #[test]
    fn an_empty_bucket_says_how_long_to_wait_and_a_new_rate_applies() {
        let now = Instant::now();
        let mut bucket = TokenBucket::new(10.0, now);
        assert_eq!(bucket.take(now), Ok(()));
        let wait = bucket.take(now).unwrap_err();
        assert!((wait.as_secs_f64() - 0.1).abs() < 1e-9, "{wait:?}");
        assert_eq!(bucket.take(now + wait), Ok(()));
        bucket.set_rate(1.0, now + wait);
        let slower = bucket.take(now + wait).unwrap_err();
        assert!((slower.as_secs_f64() - 1.0).abs() < 1e-9, "{slower:?}");
    }
}
