//! Endpoint health: a receiver that keeps failing opens its subscription's
//! breaker (deliveries wait in PostgreSQL, one probe at a time on a
//! backoff, no retries used), the first success closes it and the backlog
//! goes out at once in order, and failing past `disable_after` disables the
//! subscription with its reason, in the same transaction as the health row.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::support::receiver::Reply;
use crate::support::{
    Cluster, Receiver, TestDb, routed_table, wait_until, walhook, walhook_streaming,
};

const WAIT: Duration = Duration::from_secs(60);

/// A database with table `accounts` routed as `account` events.
pub(crate) fn prepare(db: &TestDb<'_>) {
    routed_table(
        db,
        "accounts",
        "account",
        ", balance int NOT NULL DEFAULT 0",
    );
}

/// Wait until subscription `id`'s health row is in `state`.
async fn wait_for_state(db: &TestDb<'_>, id: &str, state: &str) {
    let sql =
        format!("SELECT state FROM walhook.subscription_health WHERE subscription_id = '{id}'");
    wait_until(WAIT, &format!("the subscription {state}"), || async {
        (one(db, &sql) == state).then_some(())
    })
    .await;
}

/// The one value `sql` selects, as text.
fn one(db: &TestDb<'_>, sql: &str) -> String {
    db.psql(sql).trim().to_owned()
}

/// A receiver down under load, then back: the breaker opens after
/// `failure_threshold` failures, only probes reach the receiver while it is
/// down (the oldest pending delivery, again and again, without using its
/// one retry), and the first success delivers the whole backlog within
/// seconds, in commit order per resource (`ordered`), nothing lost or
/// failed. The outage is 8 s rather than 60: what matters is that the
/// breaker opened, the probes backed off, and the backlog did not wait for
/// its retries (an hour away); a longer outage only adds probes.
#[tokio::test(flavor = "multi_thread")]
async fn a_receiver_down_under_load_gets_its_backlog_at_once_when_back() {
    let db = Cluster::shared().new_database();
    prepare(&db);
    let receiver = Receiver::replying(Reply::Status(503)).await;
    let id = db.psql(&format!(
        "INSERT INTO walhook.subscriptions (url, retry_schedule, ordered, failure_threshold, probe_interval)
         VALUES ('{}', '{{1h}}', true, 3, '200ms') RETURNING id",
        receiver.url()
    ));
    let daemon = walhook_streaming(&db);
    db.psql("INSERT INTO accounts (id) SELECT generate_series(1, 20)");
    wait_for_state(&db, &id, "failing").await;
    // load while it is down: 20 resources, updated again and again
    let down_since = Instant::now();
    let before = receiver.count();
    while down_since.elapsed() < Duration::from_secs(8) {
        db.psql("UPDATE accounts SET balance = balance + 1");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let while_down = receiver.count() - before;
    let events: i64 = one(
        &db,
        "SELECT count(*) FROM walhook.events WHERE type LIKE 'account.%'",
    )
    .parse()
    .unwrap();
    assert!(events >= 200, "{events} events");
    assert!(
        while_down <= 12,
        "{while_down} requests while failing: only probes, backing off, should reach it"
    );
    // back: the first success closes the breaker
    let back = Instant::now();
    receiver.set_default(Reply::Status(204));
    let delivered = format!(
        "SELECT count(*) FROM walhook.deliveries WHERE subscription_id = '{id}' AND status = 'succeeded'"
    );
    let deadline = Instant::now() + WAIT;
    while one(&db, &delivered) != events.to_string() {
        assert!(
            Instant::now() < deadline,
            "{} of {events} delivered:\n{}\n{}\n{}",
            one(&db, &delivered),
            db.psql("SELECT status, attempts, retry_base, next_attempt_at > now(), lease_until IS NOT NULL, count(*) FROM walhook.deliveries GROUP BY 1, 2, 3, 4, 5"),
            db.psql("SELECT * FROM walhook.subscription_health"),
            daemon.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let received = receiver.received();
    let successes: Vec<_> = received.iter().filter(|r| r.at >= back).collect();
    let first = successes.first().expect("a success").at;
    let last = successes.last().unwrap().at;
    assert!(
        last - first < Duration::from_secs(10),
        "the backlog took {:?} after the first success:\n{}",
        last - first,
        daemon.log()
    );
    assert_eq!(
        one(
            &db,
            &format!(
                "SELECT count(*) FROM walhook.deliveries WHERE subscription_id = '{id}' AND status <> 'succeeded'"
            )
        ),
        "0",
        "nothing failed: probes use no retries"
    );
    let probed: i64 = one(&db, "SELECT max(attempts) FROM walhook.deliveries")
        .parse()
        .unwrap();
    assert!(
        probed >= 3,
        "the oldest delivery was probed again and again ({probed} attempts)"
    );
    // in commit order per resource
    let order: HashMap<String, (String, String)> = db
        .psql("SELECT id, apiresource, lpad((commit_lsn - '0/0'::pg_lsn)::text, 20, '0') || lpad(seq::text, 6, '0')
           FROM walhook.events WHERE type LIKE 'account.%'")
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split('|').collect();
            (f[0].to_owned(), (f[1].to_owned(), f[2].to_owned()))
        })
        .collect();
    let mut last_of: HashMap<&str, &str> = HashMap::new();
    for r in &successes {
        let (resource, position) = &order[&r.header("webhook-id").unwrap()];
        if let Some(previous) = last_of.insert(resource, position) {
            assert!(previous < position.as_str(), "{resource} out of order");
        }
    }
    assert_eq!(
        one(
            &db,
            &format!(
                "SELECT state FROM walhook.subscription_health WHERE subscription_id = '{id}'"
            )
        ),
        "healthy"
    );
    let metrics = daemon.metrics().await;
    for line in [
        "walhook_subscription_transitions_total{to=\"failing\"} 1",
        "walhook_subscription_transitions_total{to=\"healthy\"} 1",
        "walhook_subscriptions{state=\"healthy\"} 1",
    ] {
        assert!(metrics.contains(line), "{line} in:\n{metrics}");
    }
}

/// Failing for `disable_after` disables the subscription: `disabled`,
/// `disabled_reason` and `disabled_at` set in the same transaction as the
/// health row's `disabled` state; `walhook status` shows it; enabling it
/// again makes it healthy.
#[tokio::test(flavor = "multi_thread")]
async fn a_subscription_failing_past_disable_after_is_disabled_with_its_reason() {
    let db = Cluster::shared().new_database();
    prepare(&db);
    let receiver = Receiver::replying(Reply::Status(500)).await;
    let id = db.psql(&format!(
        "INSERT INTO walhook.subscriptions (url, retry_schedule, failure_threshold, probe_interval, disable_after)
         VALUES ('{}', '{{50ms,50ms}}', 2, '100ms', '2 seconds') RETURNING id",
        receiver.url()
    ));
    let daemon = walhook_streaming(&db);
    db.psql("INSERT INTO accounts (id) SELECT generate_series(1, 5)");
    wait_for_state(&db, &id, "failing").await;
    let (status, out, err) = walhook(&["status", "--database-url", &db.url(), "--slot", &db.slot]);
    assert!(status.success(), "{err}");
    assert!(out.contains(&id) && out.contains("failing since"), "{out}");
    wait_until(WAIT, "the subscription disabled", || async {
        (one(
            &db,
            &format!("SELECT disabled FROM walhook.subscriptions WHERE id = '{id}'"),
        ) == "t")
            .then_some(())
    })
    .await;
    let row = one(
        &db,
        &format!(
            "SELECT h.state, s.disabled_at IS NOT NULL, s.xmin = h.xmin, s.disabled_reason
               FROM walhook.subscriptions s JOIN walhook.subscription_health h ON h.subscription_id = s.id
              WHERE s.id = '{id}'"
        ),
    );
    let fields: Vec<&str> = row.split('|').collect();
    assert_eq!(&fields[..3], ["disabled", "t", "t"], "{row}");
    assert!(
        fields[3].starts_with("failing since ") && fields[3].contains("500"),
        "reason: {}",
        fields[3]
    );
    let (_, out, _) = walhook(&["status", "--database-url", &db.url(), "--slot", &db.slot]);
    assert!(out.contains("disabled: failing since"), "{out}");
    let metrics = daemon.metrics().await;
    for line in [
        "walhook_subscription_transitions_total{to=\"failing\"} 1",
        "walhook_subscription_transitions_total{to=\"disabled\"} 1",
    ] {
        assert!(metrics.contains(line), "{line} in:\n{metrics}");
    }
    // enabled again by a user: healthy, the reason gone
    db.psql(&format!(
        "UPDATE walhook.subscriptions SET disabled = false WHERE id = '{id}'"
    ));
    assert_eq!(
        one(
            &db,
            &format!(
                "SELECT h.state || ',' || coalesce(s.disabled_reason, '-') || ',' || (s.disabled_at IS NULL)
                   FROM walhook.subscriptions s JOIN walhook.subscription_health h ON h.subscription_id = s.id
                  WHERE s.id = '{id}'"
            )
        ),
        "healthy,-,true"
    );
}
