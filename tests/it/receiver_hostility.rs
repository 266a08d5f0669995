//! Nothing a receiver answers or a subscription sets stops delivery (issue
//! 22): a response body PostgreSQL would refuse as text is stored made valid,
//! and a retry step too long to wait is refused when it is written.

use std::time::Duration;

use serde_json::json;

use crate::support::api::ApiServer;
use crate::support::receiver::Reply;
use crate::support::{
    Cluster, Receiver, assert_refused, items_table, scalar, subscribe, wait_until,
    walhook_streaming,
};

const WAIT: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread")]
async fn a_body_with_nul_and_invalid_utf8_is_stored_and_delivery_goes_on() {
    let db = Cluster::shared().new_database();
    items_table(&db, "");
    let hostile = Receiver::start().await;
    // NUL (refused in PostgreSQL text) and invalid UTF-8, past the 256 bytes kept
    let body = b"oops\0\xff\xfe".repeat(100);
    hostile.push([Reply::StatusWithBody(500, body), Reply::Status(200)]);
    let hostile_id = subscribe(&db, &hostile.url(), "", "");
    let polite = Receiver::start().await;
    subscribe(&db, &polite.url(), "", "");
    let _walhook = walhook_streaming(&db);
    db.psql("INSERT INTO items (id) VALUES (1)");
    wait_until(WAIT, "the hostile receiver's retry", || async {
        (hostile.count() >= 2).then_some(())
    })
    .await;
    // the polite subscription's deliveries after the hostile answer are recorded too
    db.psql("INSERT INTO items (id) SELECT generate_series(2, 5)");
    let succeeded = "SELECT count(*) FROM walhook.deliveries WHERE status = 'succeeded'";
    wait_until(WAIT, "every delivery succeeded", || async {
        (scalar(&db, succeeded).await == 10).then_some(())
    })
    .await;
    assert_eq!(
        polite.distinct_ids(),
        5,
        "the other subscription got every event"
    );

    let rows = db
        .client()
        .await
        .query(
            "SELECT a.attempt, a.status_code, a.response_body
               FROM walhook.delivery_attempts a
               JOIN walhook.deliveries d ON d.id = a.delivery_id
               JOIN walhook.events e ON e.id = d.event_id
              WHERE d.subscription_id = $1::text::uuid AND e.apiresource = '/items/1'
              ORDER BY a.attempt",
            &[&hostile_id],
        )
        .await
        .unwrap();
    assert_eq!(
        rows.len(),
        2,
        "item 1: the 500 (its body made text PostgreSQL accepts) and the 200 are both stored"
    );
    let (attempt, status, stored): (i32, Option<i32>, Option<String>) =
        (rows[0].get(0), rows[0].get(1), rows[0].get(2));
    let stored = stored.expect("the 500's body is kept");
    assert_eq!((attempt, status), (1, Some(500)));
    assert!(stored.starts_with("oops\u{FFFD}"), "{stored:?}");
    assert!(!stored.contains('\0'));
    assert_eq!(
        stored.chars().count(),
        256,
        "the first 256 bytes, each a letter or a replacement character: {stored:?}"
    );
    assert_eq!(rows[1].get::<_, Option<i32>>(1), Some(200));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_retry_step_longer_than_365_days_is_refused_naming_the_rule() {
    let db = Cluster::shared().new_database();
    let api = ApiServer::start(&db).await;
    db.psql("INSERT INTO walhook.settings VALUES ('allow_insecure_targets', 'true')");
    assert_refused(
        &db,
        "INSERT INTO walhook.subscriptions (url, retry_schedule)
         VALUES ('http://127.0.0.1:9/hook', '{5s,300000 years}')",
        "retry_schedule rule maximum: step 300000 years is longer than 365 days",
    );
    let id = subscribe(&db, "http://127.0.0.1:9/hook", "", "");
    assert_refused(
        &db,
        &format!(
            "UPDATE walhook.subscriptions SET retry_schedule = '{{300000 years}}' WHERE id = '{id}'"
        ),
        "retry_schedule rule maximum",
    );
    db.psql(&format!(
        "UPDATE walhook.subscriptions SET retry_schedule = '{{0s,1 year,365 days}}' WHERE id = '{id}'"
    ));

    let reply = api
        .post(
            "/v1/webhooks",
            json!({"url": "https://receiver.example/hooks", "events": ["*"],
                   "retrySchedule": ["5s", "300000 years"]}),
        )
        .await;
    reply.assert_error(400, "retrySchedule");
    let message = reply.body["message"].as_str().unwrap();
    assert!(message.contains("retry_schedule rule maximum"), "{message}");
}
