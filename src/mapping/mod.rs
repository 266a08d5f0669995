//! STUB (owned by the mapping helper): changes -> events.
pub mod event;

use std::collections::HashSet;

use uuid::Uuid;

use crate::replication::change::{Change, TxnBegin};
use event::Event;

/// Routes and subscription filters as of the current stream position.
pub struct Mapper {}

impl Mapper {
    /// Load the configuration as it stands in the database now.
    pub async fn load(_client: &tokio_postgres::Client) -> Result<Self, tokio_postgres::Error> {
        todo!()
    }

    /// Map one change. Changes to walhook.routes / walhook.subscriptions update
    /// the configuration (and may themselves produce `webhook.*` events).
    pub fn map(&mut self, _system_id: &str, _txn: &TxnBegin, _change: &Change) -> Vec<Event> {
        todo!()
    }

    /// Start of a transaction: drop configuration changes staged by a
    /// transaction that never committed (a stream cut mid-transaction).
    pub fn begin(&mut self, _begin: &TxnBegin) {
        todo!()
    }

    /// End of a transaction: configuration changes seen in it take effect for
    /// the transactions that follow.
    pub fn commit(&mut self, _commit: &crate::replication::change::TxnCommit) {
        todo!()
    }

    /// OIDs of the tables currently routed (enabled or not).
    pub fn routed_tables(&self) -> HashSet<u32> {
        todo!()
    }

    pub fn subscription_ids(&self) -> Vec<Uuid> {
        todo!()
    }
}
