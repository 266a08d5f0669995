//! Which subscriptions are kept out of memory: those slow in the last
//! [`SLOW_FOR`] (an attempt failed, or a delivery was held past
//! `first_attempt_hold`) and those failing by their endpoint health. Shared
//! by the writer's admission and the dispatcher.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use uuid::Uuid;

use super::health::Health;

/// A subscription one of whose deliveries was held in memory past the hold,
/// or whose receiver failed an attempt, is not admitted for this long: its
/// deliveries wait in PostgreSQL.
pub const SLOW_FOR: Duration = Duration::from_secs(10);

/// Subscriptions not admitted to memory: until the time given (see
/// [`SLOW_FOR`]), and while failing by their endpoint health (the breaker,
/// [`super::health`]); shared by the writer's admission and the dispatcher.
#[derive(Debug, Clone, Default)]
pub struct SlowSubscriptions(Arc<SlowInner>);

#[derive(Debug, Default)]
struct SlowInner {
    until: Mutex<HashMap<Uuid, Instant>>,
    /// Whether `until` may hold an entry: the writer's admission asks for
    /// every delivery, and mostly none is slow.
    any: std::sync::atomic::AtomicBool,
    health: Health,
}

impl SlowSubscriptions {
    /// `subscription` was slow or failing just now.
    pub fn slowed(&self, subscription: Uuid) {
        let mut slow = self.0.until.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        slow.retain(|_, until| *until > now);
        slow.insert(subscription, now + SLOW_FOR);
        self.0.any.store(true, Ordering::Release);
    }

    /// The endpoint health this admission follows.
    pub fn health(&self) -> &Health {
        &self.0.health
    }

    /// Whether `subscription` is kept out of memory now.
    pub fn is_slow(&self, subscription: &Uuid) -> bool {
        if self.0.health.is_failing(subscription) {
            return true;
        }
        if !self.0.any.load(Ordering::Acquire) {
            return false;
        }
        let mut slow = self.0.until.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        slow.retain(|_, until| *until > now);
        if slow.is_empty() {
            self.0.any.store(false, Ordering::Release);
        }
        slow.contains_key(subscription)
    }
}
