//! Reconnecting with backoff, written once.
//!
//! A long-lived connection (the replication stream, the dispatcher's SQL
//! connection, its `LISTEN` session) loops over [`Tries`]: try; after a
//! failure wait the [`Backoff`]'s next delay, or stop at once when shutdown is
//! requested; try again. What a failure means (transient, standby, fatal) is
//! the caller's decision, made with [`crate::error`]; the caller also logs it,
//! with [`Tries::delay`] as the time to the next try. The pace and the
//! shutdown handling live here.
//!
//! Connections that are used on a tick (settings, gauges, the event writer)
//! reconnect on their next use instead: [`crate::store::ReconnectingClient`].

use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// The waits between tries: `first`, then twice the last, up to `cap`; with
/// jitter, each wait taken is a random point in its upper half, so instances
/// that failed together (a database restart, a failover) do not all come
/// back at the same instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    next: Duration,
    cap: Duration,
    jitter: bool,
}

impl Backoff {
    /// Doubling waits from `first` up to `cap`.
    pub const fn doubling(first: Duration, cap: Duration) -> Backoff {
        Backoff {
            next: first,
            cap,
            jitter: false,
        }
    }

    /// The same waits, each taken between half of it and all of it.
    pub const fn with_jitter(self) -> Backoff {
        Backoff {
            jitter: true,
            ..self
        }
    }

    /// The same wait every time.
    pub const fn fixed(every: Duration) -> Backoff {
        Backoff::doubling(every, every)
    }

    /// The wait before the next try (its upper bound, with jitter).
    pub fn delay(&self) -> Duration {
        self.next
    }

    /// Make the next wait `delay`; the waits double from there.
    pub fn restart_from(&mut self, delay: Duration) {
        self.next = delay;
    }

    /// Take the next wait, doubling the one after it (up to the cap).
    pub fn advance(&mut self) -> Duration {
        let delay = self.next;
        self.next = (delay * 2).min(self.cap);
        if self.jitter {
            delay.mul_f64(rand::Rng::gen_range(&mut rand::thread_rng(), 0.5..=1.0))
        } else {
            delay
        }
    }
}

/// The tries of a reconnect loop, paced by a [`Backoff`] and ended by
/// shutdown:
///
/// ```ignore
/// let mut tries = Tries::new(Backoff::fixed(Duration::from_secs(1)), &shutdown);
/// while tries.next().await {
///     match connect().await {
///         Ok(client) => return Some(client),
///         Err(error) => tracing::warn!(%error, retry_in = ?tries.delay(), "cannot connect; retrying"),
///     }
/// }
/// None // shutdown
/// ```
#[derive(Debug)]
pub struct Tries<'a> {
    backoff: Backoff,
    shutdown: &'a CancellationToken,
    first: bool,
}

impl<'a> Tries<'a> {
    pub fn new(backoff: Backoff, shutdown: &'a CancellationToken) -> Self {
        Tries {
            backoff,
            shutdown,
            first: true,
        }
    }

    /// Whether to try (again): the first time at once, later after the
    /// backoff's next wait; `false` once shutdown is requested (before a try or
    /// during a wait; a try in progress watches shutdown itself).
    pub async fn next(&mut self) -> bool {
        if !std::mem::take(&mut self.first) {
            let delay = self.backoff.advance();
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = self.shutdown.cancelled() => return false,
            }
        }
        !self.shutdown.is_cancelled()
    }

    /// The wait before the next try (a log line's `retry_in`).
    pub fn delay(&self) -> Duration {
        self.backoff.delay()
    }

    /// Make the next wait `delay`; the waits double from there.
    pub fn restart_from(&mut self, delay: Duration) {
        self.backoff.restart_from(delay);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn waits_double_up_to_the_cap_and_restart_where_told() {
        let mut backoff = Backoff::doubling(250 * MS, 1000 * MS);
        let waits: Vec<_> = (0..4).map(|_| backoff.advance()).collect();
        assert_eq!(waits, [250 * MS, 500 * MS, 1000 * MS, 1000 * MS]);
        backoff.restart_from(300 * MS);
        assert_eq!(backoff.delay(), 300 * MS);
        assert_eq!(backoff.advance(), 300 * MS);
        assert_eq!(backoff.delay(), 600 * MS);
        let mut fixed = Backoff::fixed(7 * MS);
        assert_eq!([fixed.advance(), fixed.advance()], [7 * MS, 7 * MS]);
    }

    #[test]
    fn jittered_waits_stay_in_the_upper_half_and_still_double() {
        let mut backoff = Backoff::doubling(100 * MS, 800 * MS).with_jitter();
        let mut seen = std::collections::HashSet::new();
        for nominal in [100, 200, 400, 800, 800, 800, 800, 800, 800, 800] {
            let wait = backoff.advance();
            assert!(
                wait >= nominal * MS / 2 && wait <= nominal * MS,
                "{wait:?} for {nominal} ms"
            );
            seen.insert(wait);
        }
        assert!(seen.len() > 5, "the waits vary: {seen:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn tries_at_once_then_after_each_wait() {
        let shutdown = CancellationToken::new();
        let started = tokio::time::Instant::now();
        let mut tries = Tries::new(Backoff::doubling(100 * MS, 1000 * MS), &shutdown);
        let mut at = Vec::new();
        while at.len() < 4 && tries.next().await {
            at.push(started.elapsed());
        }
        assert_eq!(at, [Duration::ZERO, 100 * MS, 300 * MS, 700 * MS]);
        assert_eq!(tries.delay(), 800 * MS);
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_ends_the_wait_and_prevents_the_next_try() {
        let shutdown = CancellationToken::new();
        let stop = shutdown.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(5)).await;
            stop.cancel();
        });
        let started = tokio::time::Instant::now();
        let mut tries = Tries::new(Backoff::fixed(Duration::from_secs(60)), &shutdown);
        assert!(tries.next().await);
        assert!(!tries.next().await, "shutdown during the wait");
        assert_eq!(started.elapsed(), Duration::from_secs(5));
        let mut after = Tries::new(Backoff::fixed(MS), &shutdown);
        assert!(!after.next().await, "no first try after shutdown");
    }
}
