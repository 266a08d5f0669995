//! Unit tests of the event vocabulary: `{changed}` and `{old.col}`,
//! `event_names`, and deletes grouped by `bulk_delete_event`.

use super::*;

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
