//! The subscriptions' delivery settings, cached in memory for every attempt.
//!
//! Swapped whole on reload, so an attempt reads one consistent snapshot without
//! holding a lock. Reloaded by the writer when its batch holds a subscription
//! change or an id the cache does not know (a subscription's first events come
//! right after its row commits), and by the dispatcher every few seconds (a
//! previous secret's grace period ending, and any other change made with SQL).

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use tokio_postgres::Client;
use uuid::Uuid;

use crate::store::targets::{self, SubscriptionTarget};

/// One loaded snapshot: every subscription by id.
type Snapshot = Arc<HashMap<Uuid, Arc<SubscriptionTarget>>>;

/// Shared, cheaply cloned handle to the cache.
#[derive(Debug, Clone, Default)]
pub struct Targets(Arc<RwLock<Snapshot>>);

impl Targets {
    /// The subscription's settings as last loaded; `None` if unknown (new
    /// since the last load, or deleted).
    pub fn get(&self, id: &Uuid) -> Option<Arc<SubscriptionTarget>> {
        self.snapshot().get(id).cloned()
    }

    /// Whether every id is known.
    pub fn knows_all<'a>(&self, ids: impl IntoIterator<Item = &'a Uuid>) -> bool {
        let snapshot = self.snapshot();
        ids.into_iter().all(|id| snapshot.contains_key(id))
    }

    /// Reload every subscription from the database.
    pub async fn reload(&self, client: &Client) -> Result<(), tokio_postgres::Error> {
        let loaded: HashMap<Uuid, Arc<SubscriptionTarget>> = targets::load(client)
            .await?
            .into_iter()
            .map(|(id, target)| (id, Arc::new(target)))
            .collect();
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(loaded);
        Ok(())
    }

    fn snapshot(&self) -> Snapshot {
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

#[cfg(test)]
impl Targets {
    /// A cache holding `targets`, for unit tests.
    pub(crate) fn of(targets: impl IntoIterator<Item = SubscriptionTarget>) -> Targets {
        let map = targets.into_iter().map(|t| (t.id, Arc::new(t))).collect();
        Targets(Arc::new(RwLock::new(Arc::new(map))))
    }
}
