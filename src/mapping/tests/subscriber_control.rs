//! Unit tests of subscriber control in the mapper: the filter checks an
//! event carries, and the operational events of `walhook.subscription_health`.

use super::*;

const WATCHER: &str = "0b6a4b5e-0d3e-4a4e-9b55-3f4a3c2d1e0f";
const FILTERED: &str = "1c7b5c6f-1e4f-4b5f-8c66-4a5b4d3e2f10";
const SUBJECT: &str = "2d8c6d70-2f50-4c60-9d77-5b6c5e4f3021";

/// The statement route, and three subscriptions: one to everything, one
/// with a filter, and the subject of the health changes (to `webhook.*`).
fn mapper() -> Mapper {
    let mut m = mapper_with_route();
    let subs = rel(11, "walhook", "subscriptions");
    m.begin(&txn(20));
    for (id, events, filter) in [
        (WATCHER, json!(["*"]), Value::Null),
        (
            FILTERED,
            json!(["software_statement.*", "webhook.*"]),
            json!("$.new.status == \"suspended\""),
        ),
        (SUBJECT, json!(["webhook.*"]), Value::Null),
    ] {
        let sub = json!({"id": id, "events": events, "disabled": false, "filter": filter});
        m.map(
            "s",
            &txn(20),
            &change(subs.clone(), Op::Insert, Some(sub), None, 20),
        );
    }
    m.commit(&commit(20));
    m
}

fn ids(list: &[&str]) -> HashSet<Uuid> {
    list.iter().map(|s| s.parse().unwrap()).collect()
}

/// A change of the statement table at WAL position 30.
fn statement_change(m: &mut Mapper, op: Op, new: Value, old: Option<Value>) -> Vec<Event> {
    let table = rel(500, "directory", "software_statements");
    m.map("s", &txn(30), &change(table, op, Some(new), old, 30))
}

#[test]
fn a_filtered_subscription_leaves_mapping_with_its_check() {
    let mut m = mapper();
    let e = statement_change(
        &mut m,
        Op::Update,
        statement("suspended", "new-secret", 2),
        Some(statement("active", "old-secret", 1)),
    );
    assert_eq!(
        e[0].subscriptions.iter().copied().collect::<HashSet<_>>(),
        ids(&[WATCHER, FILTERED]),
        "addressed to the filtered subscription until the writer checks it"
    );
    let check = e[0]
        .filter
        .as_ref()
        .expect("a check for the filtered subscription");
    assert_eq!(
        check.filters,
        vec![(
            FILTERED.parse().unwrap(),
            Arc::from("$.new.status == \"suspended\"")
        )]
    );
    let document: Value = serde_json::from_str(&check.document).unwrap();
    assert_eq!(document["type"], "software_statement.suspended");
    assert_eq!(document["old"]["status"], "active");
    assert_eq!(document["new"]["status"], "suspended");
    assert_eq!(document["changed"], json!(["status", "revision"]));
    assert!(
        !check.document.contains("secret"),
        "excluded columns stay out of the document: {}",
        check.document
    );
}

#[test]
fn without_a_filter_an_event_carries_no_check() {
    let mut m = mapper_with_route();
    let e = statement_change(&mut m, Op::Insert, statement("active", "x", 1), None);
    assert_eq!(e[0].filter, None);
}

fn health(state: &str, failures: i64) -> Value {
    json!({"subscription_id": SUBJECT, "state": state, "failing_since": "2026-01-01T00:00:00.000Z",
           "consecutive_failures": failures, "last_error": "HTTP 503",
           "last_failure_at": "2026-01-01T00:05:00.000Z", "last_success_at": null,
           "next_probe_at": null, "probes": 0, "updated_at": "2026-01-01T00:05:00.000Z"})
}

#[test]
fn health_transitions_reach_every_webhook_subscriber_but_their_subject() {
    let mut m = mapper();
    let table = rel(12, "walhook", "subscription_health");
    let failing = m.map(
        "s",
        &txn(40),
        &change(
            table.clone(),
            Op::Insert,
            Some(health("failing", 5)),
            None,
            40,
        ),
    );
    assert_eq!(failing.len(), 1);
    let event = &failing[0];
    assert_eq!(event.event_type, "webhook.failing");
    assert_eq!(event.apiresource, format!("/webhooks/{SUBJECT}"));
    assert_eq!(event.revision, 40, "the change's WAL position");
    assert_eq!(event.source_table, "walhook.subscription_health");
    assert_eq!(
        event.subscriptions.iter().copied().collect::<HashSet<_>>(),
        ids(&[WATCHER, FILTERED])
    );
    let body: Value = serde_json::from_str(event.body.as_deref().unwrap()).unwrap();
    assert_eq!(
        body["resourcepayload"],
        json!({"subscription_id": SUBJECT, "state": "failing",
               "failing_since": "2026-01-01T00:00:00.000Z", "last_error": "HTTP 503",
               "consecutive_failures": 5, "last_failure_at": "2026-01-01T00:05:00.000Z"})
    );
    let counter = m.map(
        "s",
        &txn(41),
        &change(
            table.clone(),
            Op::Update,
            Some(health("failing", 6)),
            Some(health("failing", 5)),
            41,
        ),
    );
    assert!(counter.is_empty(), "a counter-only update is no event");
    let mut recovered = health("healthy", 0);
    recovered["last_success_at"] = json!("2026-01-01T00:09:00.000Z");
    let back = m.map(
        "s",
        &txn(42),
        &change(
            table,
            Op::Update,
            Some(recovered),
            Some(health("failing", 6)),
            42,
        ),
    );
    assert_eq!(back[0].event_type, "webhook.recovered");
    let body: Value = serde_json::from_str(back[0].body.as_deref().unwrap()).unwrap();
    assert_eq!(
        body["resourcepayload"]["last_success_at"],
        "2026-01-01T00:09:00.000Z"
    );
}
