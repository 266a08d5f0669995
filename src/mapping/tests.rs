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
    v.as_object().unwrap().clone()
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

fn user_route() -> Value {
    json!({
        "source_table": "iam.users", "source_oid": "600", "resource": "user",
        "apiresource": "/realms/{realm_id}/users/{user_id}",
        "payload": {"user": "{*}", "changed": "{changed}", "previousemail": "{old.email}",
                    "label": "{old.username}->{username}"},
        "exclude_columns": ["password_hash"], "enabled": true
    })
}

fn user(id: &str, realm: &str, email: &str, hash: &str) -> Value {
    json!({"user_id": id, "realm_id": realm, "username": id, "email": email,
           "enabled": true, "password_hash": hash})
}

fn payload(event: &Event) -> Value {
    serde_json::from_str::<Value>(event.body.as_ref().unwrap()).unwrap()["resourcepayload"].clone()
}

fn with_route(route: Value) -> Mapper {
    Mapper::new(vec![Route::from_row(&row(route)).unwrap()], vec![])
}

fn users() -> Arc<RelationInfo> {
    rel(600, "iam", "users")
}

#[test]
fn changed_and_old_values_for_insert_update_and_delete() {
    let mut m = with_route(user_route());
    let insert = m.map(
        "s",
        &txn(60),
        &change(
            users(),
            Op::Insert,
            Some(user("u1", "r1", "a@x", "h1")),
            None,
            60,
        ),
    );
    let p = payload(&insert[0]);
    assert_eq!(insert[0].event_type, "user.created");
    assert_eq!(p["changed"], json!([]), "an insert changes nothing");
    assert_eq!(
        p["previousemail"],
        Value::Null,
        "no old values for an insert"
    );
    assert_eq!(p["label"], json!("->u1"));

    // email and the excluded hash change: only the visible column is listed
    let mut renamed = user("u1", "r1", "b@x", "h2");
    renamed["username"] = json!("u1b");
    let update = m.map(
        "s",
        &txn(61),
        &change(
            users(),
            Op::Update,
            Some(renamed),
            Some(user("u1", "r1", "a@x", "h1")),
            61,
        ),
    );
    let p = payload(&update[0]);
    assert_eq!(update[0].event_type, "user.updated");
    assert_eq!(p["changed"], json!(["username", "email"]), "table order");
    assert_eq!(p["previousemail"], json!("a@x"));
    assert_eq!(p["label"], json!("u1->u1b"));
    assert!(!update[0].body.as_ref().unwrap().contains("h2"));

    let delete = m.map(
        "s",
        &txn(62),
        &change(
            users(),
            Op::Delete,
            None,
            Some(user("u1", "r1", "b@x", "h2")),
            62,
        ),
    );
    let p = payload(&delete[0]);
    assert_eq!(delete[0].event_type, "user.deleted");
    assert_eq!(p["changed"], json!([]), "a delete changes nothing");
    assert_eq!(
        p["previousemail"],
        json!("b@x"),
        "old values of a delete are the deleted ones"
    );
    assert_eq!(p["user"]["email"], json!("b@x"));
}

#[test]
fn event_names_rename_operations_and_status_events_win() {
    let mut route = user_route();
    route["event_names"] =
        json!({"insert": "assigned", "update": "changed", "delete": "unassigned"});
    route["status_column"] = json!("enabled");
    route["status_events"] = json!({"false": "disabled"});
    let mut m = with_route(route);
    let types = |events: Vec<Event>| {
        events
            .iter()
            .map(|e| e.event_type.clone())
            .collect::<Vec<_>>()
    };
    let a = user("u1", "r1", "a@x", "h");
    let mut disabled = a.clone();
    disabled["enabled"] = json!(false);
    let mut renamed = disabled.clone();
    renamed["email"] = json!("b@x");
    assert_eq!(
        types(m.map(
            "s",
            &txn(70),
            &change(users(), Op::Insert, Some(a.clone()), None, 70)
        )),
        ["user.assigned"]
    );
    assert_eq!(
        types(m.map(
            "s",
            &txn(71),
            &change(users(), Op::Update, Some(disabled.clone()), Some(a), 71)
        )),
        ["user.disabled"],
        "a status transition wins over event_names.update"
    );
    assert_eq!(
        types(m.map(
            "s",
            &txn(72),
            &change(
                users(),
                Op::Update,
                Some(renamed.clone()),
                Some(disabled),
                72
            )
        )),
        ["user.changed"]
    );
    assert_eq!(
        types(m.map(
            "s",
            &txn(73),
            &change(users(), Op::Delete, None, Some(renamed), 73)
        )),
        ["user.unassigned"]
    );
}

fn bulk_mapper() -> Mapper {
    let mut route = user_route();
    route["bulk_delete_event"] = json!("bulk_deleted");
    with_route(route)
}

/// Deletes of `ids` (realm `realm`) in one transaction, then its commit.
fn delete_users(m: &mut Mapper, lsn: u64, deletes: &[(&str, &str)]) -> Vec<Event> {
    m.begin(&txn(lsn));
    for (i, (id, realm)) in deletes.iter().enumerate() {
        let mut c = change(
            users(),
            Op::Delete,
            None,
            Some(user(id, realm, "e@x", "h")),
            lsn + i as u64,
        );
        c.ordinal = i as u32 + 1;
        assert!(m.map("s", &txn(lsn), &c).is_empty(), "held until commit");
    }
    m.commit(&commit(lsn))
}

#[test]
fn deletes_of_one_transaction_become_one_bulk_event() {
    let mut m = bulk_mapper();
    let single = delete_users(&mut m, 80, &[("u1", "r1")]);
    assert_eq!(single.len(), 1);
    assert_eq!(
        single[0].event_type, "user.deleted",
        "one delete stays a delete"
    );
    assert_eq!(single[0].apiresource, "/realms/r1/users/u1");
    assert_eq!(single[0].id, event_id("s", Lsn(80), 1));

    let bulk = delete_users(&mut m, 90, &[("u2", "r1"), ("u3", "r1"), ("u4", "r1")]);
    assert_eq!(bulk.len(), 1);
    let e = &bulk[0];
    assert_eq!(e.event_type, "user.bulk_deleted");
    assert_eq!(e.apiresource, "/realms/r1/users");
    assert_eq!(e.id, event_id("s", Lsn(90), 1), "the first delete's id");
    assert_eq!(e.seq, 1);
    assert_eq!(e.revision, 92, "the highest listed revision");
    let p = payload(e);
    assert_eq!(p["count"], json!(3));
    let listed: Vec<&Value> = p["deleted"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| &d["apiresource"])
        .collect();
    assert_eq!(
        listed,
        [
            &json!("/realms/r1/users/u2"),
            &json!("/realms/r1/users/u3"),
            &json!("/realms/r1/users/u4")
        ]
    );
    assert_eq!(
        p["deleted"][1]["resourcepayload"]["user"]["user_id"],
        json!("u3")
    );
    assert_eq!(p["deleted"][1]["revision"], json!(91));
    assert!(!e.body.as_ref().unwrap().contains("password_hash"));

    // across realms the shared path is shorter
    let across = delete_users(&mut m, 100, &[("u5", "r1"), ("u6", "r2")]);
    assert_eq!(across[0].apiresource, "/realms");

    // a transaction cut off before its commit leaves nothing behind
    m.begin(&txn(110));
    m.map(
        "s",
        &txn(110),
        &change(
            users(),
            Op::Delete,
            None,
            Some(user("u7", "r1", "e", "h")),
            110,
        ),
    );
    assert_eq!(
        delete_users(&mut m, 120, &[("u8", "r1")])[0].apiresource,
        "/realms/r1/users/u8"
    );
    m.map(
        "s",
        &txn(130),
        &change(
            users(),
            Op::Delete,
            None,
            Some(user("u9", "r1", "e", "h")),
            130,
        ),
    );
    m.abort();
    assert!(m.commit(&commit(130)).is_empty());
}

#[test]
fn bulk_listing_past_max_payload_bytes_is_an_error_event_not_memory() {
    let mut m = bulk_mapper();
    m.set_max_payload_bytes(600);
    let deletes: Vec<(String, &str)> = (0..50).map(|i| (format!("u{i}"), "r1")).collect();
    let deletes: Vec<(&str, &str)> = deletes.iter().map(|(a, b)| (a.as_str(), *b)).collect();
    let e = delete_users(&mut m, 140, &deletes);
    assert_eq!(e.len(), 1);
    assert_eq!(e[0].event_type, "user.bulk_deleted");
    assert!(e[0].body.is_none());
    let error = e[0].error.as_ref().unwrap();
    assert!(
        error.contains("listing 50 deleted rows exceeds max_payload_bytes (600)"),
        "{error}"
    );
}

#[test]
fn bulk_events_go_to_subscriptions_as_of_their_transaction() {
    let mut m = bulk_mapper();
    let subs = rel(11, "walhook", "subscriptions");
    let id: Uuid = "0b6a4b5e-0d3e-4a4e-9b55-3f4a3c2d1e0f".parse().unwrap();
    let sub = json!({"id": id.to_string(), "events": ["user.*"], "disabled": false});
    m.begin(&txn(150));
    m.map(
        "s",
        &txn(150),
        &change(subs, Op::Insert, Some(sub), None, 150),
    );
    let mut c = change(
        users(),
        Op::Delete,
        None,
        Some(user("u1", "r1", "e", "h")),
        151,
    );
    c.ordinal = 1;
    m.map("s", &txn(150), &c);
    c.ordinal = 2;
    m.map("s", &txn(150), &c);
    let same_txn = m.commit(&commit(150));
    assert!(
        same_txn[0].subscriptions.is_empty(),
        "the subscription applies after its commit"
    );
    let next = delete_users(&mut m, 160, &[("u2", "r1"), ("u3", "r1")]);
    assert_eq!(next[0].subscriptions, vec![id]);
}
