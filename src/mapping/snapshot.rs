//! Snapshot events: an existing row, read by a backfill, as the route would
//! describe its insert.
//!
//! A `<resource>.snapshot` event is built exactly as `<resource>.created` would
//! be (same apiresource, payload template, excluded columns, revision column,
//! size limit), with three differences fixed by the backfill contract: its id
//! comes from the backfill and the row's primary key (a resumed backfill
//! rebuilds the same ids, so nothing is stored twice); its position and time
//! are the chunk's low watermark's; and it goes to the backfill's subscription
//! only, whatever that subscription's event patterns. That subscription's row
//! filter (as of the watermark) still applies: its document has the row as
//! `new`, no `old`, nothing `changed` and the type `<resource>.snapshot`.

use uuid::Uuid;

use super::event::Event;
use super::filter::{FilterCheck, Subject};
use super::template::{Rendered, Source, render_text};
use super::{Mapper, revision};
use crate::replication::change::{Row, TxnBegin};

/// Namespace of snapshot event ids (UUIDv5 over backfill id and primary key).
const SNAPSHOT_ID_NAMESPACE: Uuid = Uuid::from_u128(0x3c0e_91d2_5a4b_4f17_b8e6_0d9a_7c21_f5e3);

/// The id of the snapshot event of the row whose primary key is `key` (the key
/// columns' typed values as a JSON array) in backfill `backfill`.
pub fn snapshot_event_id(backfill: Uuid, key: &str) -> Uuid {
    Uuid::new_v5(
        &SNAPSHOT_ID_NAMESPACE,
        format!("{backfill}/{key}").as_bytes(),
    )
}

/// One row of a chunk, ready to become a snapshot event.
#[derive(Debug, Clone)]
pub struct SnapshotRow {
    /// The primary key's typed values as a JSON array (the id's input).
    pub key: String,
    pub row: Row,
}

impl Mapper {
    /// Snapshot events for `rows` of the table `table_oid`, positioned at the
    /// low watermark `low` and addressed to `subscription` only. `None` when
    /// the table has no enabled route at this stream position.
    pub fn snapshot(
        &self,
        table_oid: u32,
        backfill: Uuid,
        subscription: Uuid,
        low: &TxnBegin,
        rows: &[SnapshotRow],
    ) -> Option<Vec<Event>> {
        let route = self.routes.get(&table_oid).filter(|r| r.enabled)?;
        let filter = self
            .subscriptions
            .get(&subscription)
            .and_then(|s| s.filter.clone());
        let event_type = format!("{}.snapshot", route.resource);
        let events = rows
            .iter()
            .enumerate()
            .map(|(seq, SnapshotRow { key, row })| {
                let row = route.visible(row);
                let revision = revision(route, &row, low.commit_lsn);
                // as an insert: no old row, nothing changed
                let source = Source {
                    row: &row,
                    old: None,
                    changed: &[],
                };
                let apiresource = render_text(&route.apiresource, &source, true);
                let payload = Rendered {
                    template: &route.payload,
                    source: &source,
                };
                let (body, error) = self.body(&apiresource, low.commit_time, &payload, revision);
                let filter = filter.as_ref().map(|filter| {
                    let subject = Subject {
                        new: Some(&row),
                        ..Subject::default()
                    };
                    Box::new(FilterCheck {
                        document: subject.document(&event_type, &apiresource),
                        filters: vec![(subscription, filter.clone())],
                    })
                });
                Event {
                    id: snapshot_event_id(backfill, key),
                    event_type: event_type.clone(),
                    apiresource,
                    revision,
                    commit_lsn: low.commit_lsn,
                    seq: u32::try_from(seq).unwrap_or(u32::MAX),
                    commit_time: low.commit_time,
                    source_table: route.source_table.clone(),
                    body,
                    error,
                    subscriptions: vec![subscription],
                    filter,
                    snapshot: true,
                }
            })
            .collect();
        Some(events)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::mapping::routes::Route;
    use crate::replication::lsn::Lsn;

    fn route(extra: serde_json::Value) -> Route {
        let mut row = json!({
            "source_oid": "42", "source_table": "directory.orgs", "resource": "organisation",
            "apiresource": "/organisations/{id}", "payload": null,
            "exclude_columns": ["secret"], "enabled": true
        });
        row.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        Route::from_row(&Row::from_json(row)).unwrap()
    }

    fn low() -> TxnBegin {
        TxnBegin {
            commit_lsn: Lsn(0x1_0000),
            commit_time: chrono::DateTime::from_timestamp(1_700_000_000, 0).unwrap(),
            xid: 7,
        }
    }

    fn rows() -> Vec<SnapshotRow> {
        vec![SnapshotRow {
            key: "[1]".into(),
            row: Row::from_json(json!({"id": 1, "name": "a", "secret": "s", "rev": 9})),
        }]
    }

    #[test]
    fn a_snapshot_is_the_insert_with_its_own_type_id_and_position() {
        let mapper = Mapper::new(vec![route(json!({}))], Vec::new());
        let (backfill, sub) = (Uuid::from_u128(1), Uuid::from_u128(2));
        let events = mapper.snapshot(42, backfill, sub, &low(), &rows()).unwrap();
        assert_eq!(events.len(), 1);
        let e = &events[0];
        assert_eq!(e.event_type, "organisation.snapshot");
        assert_eq!(e.apiresource, "/organisations/1");
        assert_eq!(e.revision, 0x1_0000);
        assert_eq!(e.commit_lsn, Lsn(0x1_0000));
        assert_eq!(e.subscriptions, vec![sub]);
        assert_eq!(e.id, snapshot_event_id(backfill, "[1]"));
        let body: serde_json::Value = serde_json::from_str(e.body.as_deref().unwrap()).unwrap();
        assert_eq!(
            body["resourcepayload"],
            json!({"id": 1, "name": "a", "rev": 9})
        );
        assert_eq!(body["updatetimestamp"], "2023-11-14T22:13:20.000Z");
    }

    #[test]
    fn the_revision_column_wins_and_a_missing_route_gives_none() {
        let mapper = Mapper::new(vec![route(json!({"revision_column": "rev"}))], Vec::new());
        let events = mapper
            .snapshot(42, Uuid::nil(), Uuid::nil(), &low(), &rows())
            .unwrap();
        assert_eq!(events[0].revision, 9);
        assert!(
            mapper
                .snapshot(43, Uuid::nil(), Uuid::nil(), &low(), &rows())
                .is_none()
        );
    }

    #[test]
    fn ids_depend_on_backfill_and_key() {
        let a = snapshot_event_id(Uuid::from_u128(1), "[1]");
        assert_eq!(a, snapshot_event_id(Uuid::from_u128(1), "[1]"));
        assert_ne!(a, snapshot_event_id(Uuid::from_u128(2), "[1]"));
        assert_ne!(a, snapshot_event_id(Uuid::from_u128(1), "[2]"));
    }

    #[test]
    fn an_oversized_row_is_stored_with_its_error() {
        let mut mapper = Mapper::new(vec![route(json!({}))], Vec::new());
        mapper.set_max_payload_bytes(10);
        let events = mapper
            .snapshot(42, Uuid::nil(), Uuid::nil(), &low(), &rows())
            .unwrap();
        assert!(events[0].body.is_none());
        assert!(
            events[0]
                .error
                .as_deref()
                .unwrap()
                .contains("max_payload_bytes")
        );
    }
}
