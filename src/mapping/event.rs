//! The event: what mapping produces and the store persists.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::filter::FilterCheck;
use crate::replication::lsn::Lsn;

/// Namespace of event ids (UUIDv5 over the change's position in the WAL).
const EVENT_ID_NAMESPACE: Uuid = Uuid::from_u128(0x6b1f_4d0e_8c2a_4e59_9a57_2f3c_1d7e_b0a4);

/// The id of the event built from the `ordinal`-th change of the transaction that
/// committed at `commit_lsn` on the cluster `system_id`. Replaying the same WAL
/// gives the same id, so an event is stored once.
pub fn event_id(system_id: &str, commit_lsn: Lsn, ordinal: u32) -> Uuid {
    Uuid::new_v5(
        &EVENT_ID_NAMESPACE,
        format!("{system_id}/{commit_lsn}/{ordinal}").as_bytes(),
    )
}

/// One event, ready to store.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub id: Uuid,
    /// e.g. `software_statement.suspended`
    pub event_type: String,
    pub apiresource: String,
    pub revision: i64,
    pub commit_lsn: Lsn,
    /// Position of the source change within its transaction.
    pub seq: u32,
    pub commit_time: DateTime<Utc>,
    /// `schema.table` of the source change.
    pub source_table: String,
    /// The exact JSON body to send (default envelope), or None when it could
    /// not be built (then `error` says why).
    pub body: Option<String>,
    pub error: Option<String>,
    /// Subscriptions whose patterns match this event, as of its commit position.
    pub subscriptions: Vec<Uuid>,
    /// Row filters of some of those subscriptions, still to evaluate: the
    /// writer drops each subscription whose filter does not match before the
    /// event is stored (None: no subscription of the event has a filter).
    pub filter: Option<Box<FilterCheck>>,
    /// A backfill's snapshot of a row. Its deliveries are never attempted
    /// from memory: they get pending rows with the event. Its `commit_lsn`
    /// is the low watermark's, below positions the delivery mark may pass
    /// before the snapshot is stored, and a restart's sweep of owed
    /// deliveries starts at the mark (`store::obligations`): an owed
    /// snapshot delivery would be lost with a crash.
    pub snapshot: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_ids_are_stable_and_distinct() {
        let a = event_id("7", Lsn(100), 0);
        assert_eq!(a, event_id("7", Lsn(100), 0));
        assert_ne!(a, event_id("7", Lsn(100), 1));
        assert_ne!(a, event_id("7", Lsn(101), 0));
        assert_ne!(a, event_id("8", Lsn(100), 0));
    }
}
