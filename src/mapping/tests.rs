//! Unit tests of the mapper on hand-built changes.

use std::sync::Arc;

use chrono::TimeZone;
use serde_json::{Value, json};

use super::*;
use crate::replication::change::RelationInfo;
use crate::replication::lsn::Lsn;

fn rel(oid: u32, schema: &str, name: &str) -> Arc<RelationInfo> {
    Arc::new(RelationInfo {
        oid,
        schema: schema.into(),
        name: name.into(),
        columns: vec![],
    })
}

fn row(v: Value) -> Row {
    Row::from_json(v)
}

fn txn(lsn: u64) -> TxnBegin {
    TxnBegin {
        commit_lsn: Lsn(lsn),
        commit_time: Utc.with_ymd_and_hms(2024, 12, 12, 17, 38, 3).unwrap()
            + chrono::Duration::milliseconds(850),
        xid: 1,
    }
}

fn commit(lsn: u64) -> TxnCommit {
    TxnCommit {
        commit_lsn: Lsn(lsn),
        end_lsn: Lsn(lsn + 1),
        commit_time: Utc::now(),
    }
}

fn change(
    relation: Arc<RelationInfo>,
    op: Op,
    new: Option<Value>,
    old: Option<Value>,
    lsn: u64,
) -> Change {
    Change {
        relation,
        op,
        new: new.map(row),
        old: old.map(row),
        lsn: Lsn(lsn),
        ordinal: 0,
    }
}

fn statement_route() -> Value {
    json!({
        "source_table": "directory.software_statements", "source_oid": "500",
        "resource": "software_statement",
        "apiresource": "/organisations/{organisation_id}/softwarestatements/{software_statement_id}",
        "payload": {"organisationdetails": {"organisationid": "{organisation_id}"},
                    "softwarestatements": {"{software_statement_id}": {"softwaredetails": {"status": "{status}", "revision": "{revision}"}}}},
        "revision_column": "revision", "status_column": "status",
        "status_events": {"suspended": "suspended", "suspended->active": "suspension_lifted"},
        "exclude_columns": ["client_secret"], "enabled": true
    })
}

fn mapper_with_route() -> Mapper {
    let mut m = Mapper::new(vec![], vec![]);
    let routes = rel(10, "walhook", "routes");
    m.begin(&txn(1));
    assert!(
        m.map(
            "s",
            &txn(1),
            &change(routes, Op::Insert, Some(statement_route()), None, 1)
        )
        .is_empty()
    );
    m.commit(&commit(1));
    m
}

fn statement(status: &str, secret: &str, revision: i64) -> Value {
    json!({"software_statement_id": "81b9", "organisation_id": "79b3", "status": status,
           "client_secret": secret, "revision": revision})
}

#[test]
fn route_applies_from_the_next_transaction() {
    let mut m = Mapper::new(vec![], vec![]);
    let routes = rel(10, "walhook", "routes");
    let table = rel(500, "directory", "software_statements");
    m.begin(&txn(1));
    m.map(
        "s",
        &txn(1),
        &change(routes.clone(), Op::Insert, Some(statement_route()), None, 1),
    );
    let same_txn = m.map(
        "s",
        &txn(1),
        &change(
            table.clone(),
            Op::Insert,
            Some(statement("active", "x", 1)),
            None,
            2,
        ),
    );
    assert!(
        same_txn.is_empty(),
        "rows of the route's own transaction are not routed"
    );
    m.commit(&commit(1));
    let next = m.map(
        "s",
        &txn(5),
        &change(
            table.clone(),
            Op::Insert,
            Some(statement("active", "x", 1)),
            None,
            6,
        ),
    );
    assert_eq!(next.len(), 1);
    assert_eq!(next[0].event_type, "software_statement.created");
    // disabling stops events from its commit on
    let mut disabled = statement_route();
    disabled["enabled"] = json!(false);
    m.begin(&txn(7));
    m.map(
        "s",
        &txn(7),
        &change(
            routes,
            Op::Update,
            Some(disabled),
            Some(statement_route()),
            7,
        ),
    );
    m.commit(&commit(7));
    assert!(
        m.map(
            "s",
            &txn(9),
            &change(
                table,
                Op::Insert,
                Some(statement("active", "x", 1)),
                None,
                9
            )
        )
        .is_empty()
    );
}

#[test]
fn status_events_body_shape_and_exclusions() {
    let mut m = mapper_with_route();
    let table = rel(500, "directory", "software_statements");
    let ev = m.map(
        "s",
        &txn(20),
        &change(
            table.clone(),
            Op::Update,
            Some(statement("suspended", "x", 8)),
            Some(statement("active", "x", 7)),
            20,
        ),
    );
    assert_eq!(ev.len(), 1);
    let e = &ev[0];
    assert_eq!(e.event_type, "software_statement.suspended");
    assert_eq!(e.apiresource, "/organisations/79b3/softwarestatements/81b9");
    assert_eq!(e.revision, 8);
    let body = e.body.as_ref().unwrap();
    assert!(!body.contains("client_secret"));
    assert!(body.starts_with(r#"{"apiresource":"/organisations/79b3/softwarestatements/81b9","updatetimestamp":"2024-12-12T17:38:03.850Z","resourcepayload":"#));
    let v: Value = serde_json::from_str(body).unwrap();
    assert_eq!(
        v["resourcepayload"]["softwarestatements"]["81b9"]["softwaredetails"]["status"],
        json!("suspended")
    );
    assert_eq!(v["revision"], json!(8));
    let lifted = m.map(
        "s",
        &txn(21),
        &change(
            table.clone(),
            Op::Update,
            Some(statement("active", "x", 9)),
            Some(statement("suspended", "x", 8)),
            21,
        ),
    );
    assert_eq!(lifted[0].event_type, "software_statement.suspension_lifted");
    let other = m.map(
        "s",
        &txn(22),
        &change(
            table.clone(),
            Op::Update,
            Some(statement("blocked", "x", 9)),
            Some(statement("active", "x", 9)),
            22,
        ),
    );
    assert_eq!(other[0].event_type, "software_statement.updated");
    // only an excluded column changed: no event
    assert!(
        m.map(
            "s",
            &txn(23),
            &change(
                table.clone(),
                Op::Update,
                Some(statement("active", "y", 10)),
                Some(statement("active", "x", 9)),
                23
            )
        )
        .is_empty()
    );
    let deleted = m.map(
        "s",
        &txn(24),
        &change(
            table,
            Op::Delete,
            None,
            Some(statement("active", "x", 9)),
            24,
        ),
    );
    assert_eq!(deleted[0].event_type, "software_statement.deleted");
}

#[test]
fn subscriptions_match_and_webhook_events_are_redacted() {
    let mut m = mapper_with_route();
    let subs = rel(11, "walhook", "subscriptions");
    let id = "0b6a4b5e-0d3e-4a4e-9b55-3f4a3c2d1e0f";
    let sub = json!({"id": id, "events": ["software_statement.*"], "disabled": false,
                     "secret": "whsec_abc", "auth_token": "t", "auth_password": "p", "url": "https://r.example/h"});
    m.begin(&txn(30));
    let ev = m.map(
        "s",
        &txn(30),
        &change(subs, Op::Insert, Some(sub), None, 30),
    );
    m.commit(&commit(30));
    assert_eq!(ev[0].event_type, "webhook.created");
    let body = ev[0].body.as_ref().unwrap();
    assert!(
        !body.contains("whsec_abc")
            && !body.contains("\"auth_token\"")
            && !body.contains("\"auth_password\"")
    );
    assert!(
        ev[0].subscriptions.is_empty(),
        "a subscription applies after its own commit"
    );
    let table = rel(500, "directory", "software_statements");
    let e = m.map(
        "s",
        &txn(31),
        &change(
            table,
            Op::Insert,
            Some(statement("active", "x", 1)),
            None,
            31,
        ),
    );
    assert_eq!(e[0].subscriptions, vec![id.parse::<Uuid>().unwrap()]);
}

#[test]
fn oversized_payloads_become_error_events() {
    let mut m = mapper_with_route();
    m.set_max_payload_bytes(50);
    let table = rel(500, "directory", "software_statements");
    let e = m.map(
        "s",
        &txn(40),
        &change(
            table,
            Op::Insert,
            Some(statement("active", "x", 1)),
            None,
            40,
        ),
    );
    assert!(e[0].body.is_none());
    assert!(
        e[0].error
            .as_ref()
            .unwrap()
            .contains("exceeds max_payload_bytes (50)")
    );
}

#[test]
fn revision_defaults_to_the_change_position() {
    let mut route = statement_route();
    route["revision_column"] = Value::Null;
    let mut m = Mapper::new(vec![Route::from_row(&row(route)).unwrap()], vec![]);
    let table = rel(500, "directory", "software_statements");
    let e = m.map(
        "s",
        &txn(50),
        &change(
            table,
            Op::Insert,
            Some(statement("active", "x", 1)),
            None,
            0x1234,
        ),
    );
    assert_eq!(e[0].revision, 0x1234);
}

mod subscriber_control;
mod vocabulary;
