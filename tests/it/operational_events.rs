//! Operational events end to end: state transitions of
//! `walhook.subscription_health`, written here by SQL as the delivering
//! instances write them, reach `webhook.*` subscribers as
//! `webhook.failing`, `webhook.recovered` and `webhook.disabled`, never the
//! subscription they are about; an update of counters alone is no event.

use std::collections::HashMap;
use std::time::Duration;

use serde_json::Value;

use crate::support::{Cluster, Receiver, migrate, subscribe, wait_until, walhook_streaming};

const WAIT: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread")]
async fn health_transitions_reach_webhook_subscribers_but_not_their_subject() {
    let db = Cluster::shared().new_database();
    migrate(&db.url());
    db.psql("INSERT INTO walhook.settings VALUES ('allow_insecure_targets', 'true')");
    let watcher = Receiver::start().await;
    let subject_receiver = Receiver::start().await;
    subscribe(&db, &watcher.url(), ", events", ", '{webhook.*}'");
    let subject = subscribe(&db, &subject_receiver.url(), ", events", ", '{webhook.*}'");
    let subject = subject.trim();
    let _walhook = walhook_streaming(&db);

    let health = "walhook.subscription_health";
    for sql in [
        format!(
            "INSERT INTO {health} (subscription_id, state, failing_since, consecutive_failures, last_error, last_failure_at)
             VALUES ('{subject}', 'failing', now(), 5, 'HTTP 503', now())"
        ),
        // counters only: no event
        format!(
            "UPDATE {health} SET consecutive_failures = 6, last_failure_at = now(), probes = 1
              WHERE subscription_id = '{subject}'"
        ),
        format!(
            "UPDATE {health} SET state = 'healthy', failing_since = NULL, consecutive_failures = 0,
                    last_success_at = now() WHERE subscription_id = '{subject}'"
        ),
        format!(
            "UPDATE {health} SET state = 'failing', failing_since = now(), consecutive_failures = 5,
                    last_error = 'connection refused', last_failure_at = now()
              WHERE subscription_id = '{subject}'"
        ),
        // auto-disable: the subscription and its health in one transaction
        format!(
            "BEGIN;
             UPDATE walhook.subscriptions SET disabled = true, disabled_at = now(),
                    disabled_reason = 'failing for 5 days' WHERE id = '{subject}';
             UPDATE {health} SET state = 'disabled' WHERE subscription_id = '{subject}';
             COMMIT"
        ),
    ] {
        db.psql(&sql);
    }

    // in commit order: the counter update made nothing
    let stored = wait_until(WAIT, "four operational events stored", || async {
        let rows = db
            .client()
            .await
            .query(
                "SELECT type, apiresource, revision, body::text FROM walhook.events
                  WHERE source_table = 'walhook.subscription_health' ORDER BY commit_lsn, seq",
                &[],
            )
            .await
            .unwrap();
        (rows.len() >= 4).then_some(rows)
    })
    .await;
    let types: Vec<String> = stored.iter().map(|r| r.get(0)).collect();
    assert_eq!(
        types,
        [
            "webhook.failing",
            "webhook.recovered",
            "webhook.failing",
            "webhook.disabled"
        ]
    );
    let revisions: Vec<i64> = stored.iter().map(|r| r.get(2)).collect();
    assert!(
        revisions.windows(2).all(|w| w[0] < w[1]) && revisions[0] > 0,
        "WAL positions: {revisions:?}"
    );
    for row in &stored {
        assert_eq!(row.get::<_, String>(1), format!("/webhooks/{subject}"));
    }

    // the watcher gets all four (and webhook.updated for the disabling)
    let by_type = wait_until(WAIT, "the four at the watcher", || async {
        let mut by_type: HashMap<String, Vec<Value>> = HashMap::new();
        for request in watcher.received() {
            let kind = request.header("webhook-event-type").unwrap();
            by_type.entry(kind).or_default().push(request.json());
        }
        let count = |t: &str| by_type.get(t).map_or(0, Vec::len);
        (count("webhook.failing") >= 2
            && count("webhook.recovered") >= 1
            && count("webhook.disabled") >= 1)
            .then_some(by_type)
    })
    .await;
    let failing = by_type["webhook.failing"]
        .iter()
        .find(|b| b["resourcepayload"]["last_error"] == "HTTP 503")
        .expect("the first failing event");
    let payload = &failing["resourcepayload"];
    assert_eq!(failing["apiresource"], format!("/webhooks/{subject}"));
    assert_eq!(payload["subscription_id"], subject);
    assert_eq!(payload["state"], "failing");
    assert_eq!(payload["consecutive_failures"], 5);
    assert!(payload["failing_since"].is_string(), "{payload}");
    assert!(payload["last_failure_at"].is_string(), "{payload}");
    assert!(payload.get("last_success_at").is_none(), "{payload}");
    let recovered = &by_type["webhook.recovered"][0]["resourcepayload"];
    assert_eq!(recovered["state"], "healthy");
    assert_eq!(recovered["failing_since"], Value::Null);
    assert!(recovered["last_success_at"].is_string(), "{recovered}");
    let disabled = &by_type["webhook.disabled"][0]["resourcepayload"];
    assert_eq!(disabled["state"], "disabled");
    assert_eq!(disabled["last_error"], "connection refused");
    assert!(disabled["failing_since"].is_string(), "{disabled}");

    // the subject: no delivery of an operational event, in a row or owed
    // from memory (its events were stored with the watcher's, so this is final)
    let client = db.client().await;
    let about_itself: i64 = client
        .query_one(
            "SELECT count(*) FROM walhook.events e
              WHERE e.source_table = 'walhook.subscription_health'
                AND ($1::text::uuid = ANY(e.owed)
                     OR EXISTS (SELECT 1 FROM walhook.deliveries d
                                 WHERE d.event_id = e.id AND d.subscription_id = $1::text::uuid))",
            &[&subject],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(about_itself, 0);
    assert!(
        subject_receiver
            .received()
            .iter()
            .all(|r| r.header("webhook-event-type").as_deref() == Some("webhook.updated")),
        "the subject got an operational event about itself"
    );
}
