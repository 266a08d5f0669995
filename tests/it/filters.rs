//! Row filters end to end: a real PostgreSQL, the walhook binary
//! and real receivers on loopback. A subscription's `filter` is a jsonpath
//! predicate over `{new, old, changed, type, apiresource}`; an event it does
//! not match creates no delivery for it, a filter that cannot be evaluated
//! is no match and stops nothing, and a filter that is not a predicate is
//! refused when written, in SQL and through the API.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use serde_json::json;

use crate::support::api::ApiServer;
use crate::support::{
    Cluster, Receiver, TestDb, migrate, subscribe, wait_until, walhook_streaming, without_a_row,
};

const WAIT: Duration = Duration::from_secs(60);

/// A migrated database with a routed `orgs` table (`secret` excluded,
/// `status` -> `organisation.suspended`) and insecure targets allowed.
fn prepare(db: &TestDb<'_>) {
    migrate(&db.url());
    db.psql(
        "INSERT INTO walhook.settings VALUES ('allow_insecure_targets', 'true');
         CREATE TABLE orgs (id int PRIMARY KEY, org text, status text, email text, note text, secret text);
         INSERT INTO walhook.routes (source_table, resource, apiresource, status_column, status_events, exclude_columns)
              VALUES ('orgs', 'organisation', '/organisations/{id}', 'status',
                      '{\"suspended\": \"suspended\"}', '{secret}');",
    );
}

/// `type apiresource` of each distinct event (by `webhook-id`) the receiver got.
fn received(receiver: &Receiver) -> BTreeSet<String> {
    let mut seen = HashMap::new();
    for request in receiver.received() {
        let body = request.json();
        seen.insert(
            request.header("webhook-id").unwrap(),
            format!(
                "{} {}",
                request.header("webhook-event-type").unwrap(),
                body["apiresource"].as_str().unwrap()
            ),
        );
    }
    seen.into_values().collect()
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

/// Wait until every delivery of the stored events has been answered: no
/// pending row, and no delivery (owed from memory, or deferred) without its
/// row.
async fn wait_settled(db: &TestDb<'_>) {
    wait_until(WAIT, "every delivery answered", || async {
        let client = db.client().await;
        let pending: i64 = client
            .query_one(
                "SELECT count(*) FROM walhook.deliveries WHERE status = 'pending'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        (pending + without_a_row(db).await == 0).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn filters_over_new_old_changed_type_deliver_only_what_matches() {
    let db = Cluster::shared().new_database();
    prepare(&db);
    let filters = [
        ("all", None),
        (
            "suspended",
            Some(r#"$.new.status == "suspended" && $.old.status != "suspended""#),
        ),
        ("org_x", Some(r#"$.new.org == "x" || $.old.org == "x""#)),
        ("email", Some(r#"exists($.changed ? (@ == "email"))"#)),
        ("deleted", Some(r#"$.type == "organisation.deleted""#)),
        ("path", Some(r#"$.apiresource == "/organisations/2""#)),
        // excluded columns are not in the document: never matches
        (
            "secret",
            Some(r#"$.new.secret == "s" || $.old.secret == "s""#),
        ),
        // a date against a timestamp with time zone errs even in silent
        // mode: no match, and the other filters of the batch still work
        (
            "broken",
            Some(r#"$.new.note.datetime() < "2025-01-01".datetime()"#),
        ),
    ];
    let mut receivers = HashMap::new();
    for (name, filter) in filters {
        let receiver = Receiver::start().await;
        let filter = filter.map_or("NULL".to_owned(), |f| format!("'{f}'"));
        subscribe(
            &db,
            &receiver.url(),
            ", name, filter",
            &format!(", '{name}', {filter}"),
        );
        receivers.insert(name, receiver);
    }
    let _walhook = walhook_streaming(&db);
    for sql in [
        "INSERT INTO orgs VALUES (1, 'x', 'active', 'a@x', '2024-01-01 00:00:00+00', 's'),
                                 (2, 'y', 'active', 'b@y', NULL, 's')",
        "UPDATE orgs SET status = 'suspended' WHERE id = 1",
        "UPDATE orgs SET email = 'c@y' WHERE id = 2",
        "UPDATE orgs SET status = 'suspended' WHERE id = 2",
        "UPDATE orgs SET secret = 't' WHERE id = 2", // excluded only: no event
        "DELETE FROM orgs WHERE id = 1",
        "INSERT INTO orgs VALUES (99, 'z', 'active', 'z@z', NULL, 's')",
    ] {
        db.psql(sql);
    }
    let all = set(&[
        "organisation.created /organisations/1",
        "organisation.created /organisations/2",
        "organisation.suspended /organisations/1",
        "organisation.updated /organisations/2",
        "organisation.suspended /organisations/2",
        "organisation.deleted /organisations/1",
        "organisation.created /organisations/99",
    ]);
    wait_until(WAIT, "every event at the unfiltered receiver", || async {
        (received(&receivers["all"]) == all).then_some(())
    })
    .await;
    wait_settled(&db).await;
    let expected: HashMap<&str, BTreeSet<String>> = HashMap::from([
        ("all", all),
        (
            "suspended",
            set(&[
                "organisation.suspended /organisations/1",
                "organisation.suspended /organisations/2",
            ]),
        ),
        (
            "org_x",
            set(&[
                "organisation.created /organisations/1",
                "organisation.suspended /organisations/1",
                "organisation.deleted /organisations/1",
            ]),
        ),
        ("email", set(&["organisation.updated /organisations/2"])),
        ("deleted", set(&["organisation.deleted /organisations/1"])),
        (
            "path",
            set(&[
                "organisation.created /organisations/2",
                "organisation.updated /organisations/2",
                "organisation.suspended /organisations/2",
            ]),
        ),
        ("secret", BTreeSet::new()),
        ("broken", BTreeSet::new()),
    ]);
    for (name, receiver) in &receivers {
        assert_eq!(received(receiver), expected[name], "subscription {name}");
    }
    // no delivery row either for what a filter refused
    let rows = db.psql(
        "SELECT count(*) FROM walhook.deliveries d JOIN walhook.subscriptions s ON s.id = d.subscription_id
          WHERE s.name IN ('secret', 'broken')",
    );
    assert_eq!(rows.trim(), "0");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_filter_that_is_not_a_predicate_is_refused_in_sql_and_by_the_api() {
    let db = Cluster::shared().new_database();
    migrate(&db.url());
    let client = db.client().await;
    let insert = "INSERT INTO walhook.subscriptions (url, filter) VALUES ('https://receiver.example/h', $1::text::jsonpath)";
    // a path that does not parse: the column type refuses it
    let error = client
        .execute(insert, &[&"$.new.status =="])
        .await
        .unwrap_err();
    assert!(
        error.as_db_error().unwrap().message().contains("jsonpath"),
        "{error:?}"
    );
    // a path that parses but is no yes-or-no, or needs a variable: the rule
    for filter in ["$.new.status", "$.changed", "$.new.id == $id"] {
        let error = client.execute(insert, &[&filter]).await.unwrap_err();
        let db_error = error.as_db_error().unwrap();
        assert!(
            db_error.message().starts_with("filter rule predicate:"),
            "{filter}: {}",
            db_error.message()
        );
        assert_eq!(db_error.column(), Some("filter"), "{filter}");
    }
    // predicates are accepted, on insert and update
    for filter in [
        r#"$.new.status == "suspended" && $.old.status != "suspended""#,
        r#"exists($.changed ? (@ == "email"))"#,
        r#"$.type starts with "organisation." && $.apiresource like_regex "^/organisations/""#,
    ] {
        client.execute(insert, &[&filter]).await.unwrap();
    }
    let error = client
        .execute("UPDATE walhook.subscriptions SET filter = '$.new'", &[])
        .await
        .unwrap_err();
    assert_eq!(error.as_db_error().unwrap().column(), Some("filter"));
    drop(client);

    let api = ApiServer::start(&db).await;
    api.post(
        "/v1/webhooks",
        json!({"url": "https://receiver.example/hooks", "events": ["*"], "filter": "$.new.status"}),
    )
    .await
    .assert_error(400, "filter");
}

/// A backfill's snapshots pass through its subscription's filter, as their
/// `new` row with the type `<resource>.snapshot`.
#[tokio::test(flavor = "multi_thread")]
async fn snapshots_pass_through_the_filter() {
    let db = Cluster::shared().new_database();
    prepare(&db);
    db.psql(
        "INSERT INTO orgs (id, org, status) SELECT i, CASE WHEN i % 3 = 0 THEN 'x' ELSE 'y' END, 'active'
           FROM generate_series(1, 30) i",
    );
    let receiver = Receiver::start().await;
    let id = subscribe(
        &db,
        &receiver.url(),
        ", events, filter",
        r#", '{organisation.snapshot}', '$.new.org == "x" && $.old == null && $.type == "organisation.snapshot"'"#,
    );
    let _walhook = walhook_streaming(&db);
    let backfill = db.psql(&format!(
        "INSERT INTO walhook.backfills (subscription_id, source_table) VALUES ('{}', 'orgs') RETURNING id",
        id.trim()
    ));
    wait_until(WAIT, "the backfill done", || async {
        let status = db.psql(&format!(
            "SELECT status FROM walhook.backfills WHERE id = '{}'",
            backfill.trim()
        ));
        (status.trim() == "done").then_some(())
    })
    .await;
    wait_settled(&db).await;
    let expected: BTreeSet<String> = (1..=30)
        .filter(|i| i % 3 == 0)
        .map(|i| format!("organisation.snapshot /organisations/{i}"))
        .collect();
    assert_eq!(received(&receiver), expected);
    // every row was read and stored; only the matching ones were delivered
    assert_eq!(
        db.psql("SELECT count(*) FROM walhook.events WHERE type = 'organisation.snapshot'")
            .trim(),
        "30"
    );
}

/// `walhook replay` of a subscription with a filter re-queues the events its
/// filter matched (those with a delivery for it), not every event of its types.
#[test]
fn replay_of_a_filtered_subscription_requeues_what_it_was_sent() {
    let db = Cluster::shared().database();
    migrate(&db.url());
    let id = db.psql(
        "INSERT INTO walhook.subscriptions (url, events, filter)
              VALUES ('https://receiver.example/hook', '{organisation.*}', '$.new.org == \"x\"') RETURNING id",
    );
    let id = id.trim();
    db.psql(&format!(
        "INSERT INTO walhook.events (id, type, apiresource, revision, commit_lsn, commit_time, body, seq) VALUES
             ('00000000-0000-0000-0000-000000000001', 'organisation.created', '/organisations/1', 10, '0/100', now(), '{{}}', 0),
             ('00000000-0000-0000-0000-000000000002', 'organisation.created', '/organisations/2', 11, '0/100', now(), '{{}}', 1);
         INSERT INTO walhook.deliveries (event_id, subscription_id, apiresource, commit_lsn, seq, status)
              VALUES ('00000000-0000-0000-0000-000000000001', '{id}', '/organisations/1', '0/100', 0, 'succeeded');"
    ));
    let (status, out, err) = crate::support::walhook(&[
        "replay",
        "--subscription",
        id,
        "--from-revision",
        "0",
        "--database-url",
        &db.url(),
    ]);
    assert!(status.success(), "{err}");
    assert!(out.contains("queued 1 deliveries"), "{out}");
    let queued = db.psql(&format!(
        "SELECT string_agg(right(event_id::text, 1) || ':' || status, ',') FROM walhook.deliveries
          WHERE subscription_id = '{id}'"
    ));
    assert_eq!(queued.trim(), "1:pending");
}
