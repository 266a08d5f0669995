//! Delivery under crashes, ordering constraints and concurrent instances.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use crate::support::receiver::Reply;
use crate::support::{
    Cluster, Receiver, TestDb, items_table, scalar, wait_lock_waiter, wait_until, wait_until_or,
    walhook_run, walhook_streaming,
};

const WAIT: Duration = Duration::from_secs(180);

fn prepare(db: &TestDb<'_>) {
    items_table(db, ", n int NOT NULL DEFAULT 0");
}

/// [`prepare`], and a receiver with a subscription to everything, its
/// columns left at their defaults.
async fn prepare_subscribed(db: &TestDb<'_>) -> Receiver {
    prepare(db);
    let receiver = Receiver::start().await;
    db.psql(&format!(
        "INSERT INTO walhook.subscriptions (url) VALUES ('{}')",
        receiver.url()
    ));
    receiver
}

/// The slot never waits on a receiver: wait until its confirmed position is
/// past every stored event.
async fn wait_slot_confirms_every_event(db: &TestDb<'_>) {
    let sql = format!(
        "SELECT count(*) FROM walhook.events e, pg_replication_slots s
          WHERE s.slot_name = '{}' AND s.confirmed_flush_lsn <= e.commit_lsn",
        db.slot
    );
    wait_until(
        WAIT,
        "the slot confirmed past every stored event",
        || async { (scalar(db, &sql).await == 0).then_some(()) },
    )
    .await;
}

/// Events whose deliveries have no row, each naming its subscription in
/// `owed` (the obligation the next instance to stream sweeps into a row).
async fn events_owing_without_a_row(db: &TestDb<'_>) -> i64 {
    scalar(
        db,
        "SELECT count(*) FROM walhook.events e
          WHERE cardinality(e.owed) = 1
            AND NOT EXISTS (SELECT 1 FROM walhook.deliveries d WHERE d.event_id = e.id)",
    )
    .await
}

async fn wait_succeeded(db: &TestDb<'_>, n: i64) {
    let sql = "SELECT count(*) FROM walhook.deliveries WHERE status = 'succeeded'";
    wait_until_or(
        WAIT,
        &format!("{n} deliveries succeeded"),
        || async { (scalar(db, sql).await >= n).then_some(()) },
        || {
            db.psql(
                "SELECT status || ' x' || count(*) || ' (' || coalesce(max(last_error), '') || ')'
                   FROM walhook.deliveries GROUP BY status",
            )
        },
    )
    .await;
}

/// Insert one item and wait for its first request, its outcome held back:
/// outcomes insert into `delivery_attempts`, and the returned session locks
/// it until `ROLLBACK`; returns once the outcome's write waits for that lock.
async fn first_request_outcome_held(
    db: &TestDb<'_>,
    receiver: &Receiver,
) -> tokio_postgres::Client {
    let locker = db.client().await;
    locker
        .batch_execute("BEGIN; LOCK TABLE walhook.delivery_attempts IN EXCLUSIVE MODE")
        .await
        .unwrap();
    db.psql("INSERT INTO items (id) VALUES (1)");
    wait_until(WAIT, "the first request", || async {
        (receiver.count() == 1).then_some(())
    })
    .await;
    wait_lock_waiter(db, "relation = 'walhook.delivery_attempts'::regclass").await;
    locker
}

#[tokio::test(flavor = "multi_thread")]
async fn sigkill_during_delivery_still_delivers_everything() {
    let db = Cluster::shared().new_database();
    let receiver = prepare_subscribed(&db).await;
    let mut first = walhook_streaming(&db);
    db.psql("INSERT INTO items (id) SELECT generate_series(1, 10000)");
    wait_until(WAIT, "deliveries under way", || async {
        (receiver.count() > 1000).then_some(())
    })
    .await;
    first.kill_9();
    let at_kill = receiver.count();
    assert!(
        at_kill < 10000,
        "the kill must happen mid-delivery ({at_kill} received)"
    );
    let _second = walhook_streaming(&db);
    wait_succeeded(&db, 10000).await;
    assert_eq!(
        scalar(&db, "SELECT count(*) FROM walhook.deliveries").await,
        10000
    );
    assert_eq!(
        receiver.distinct_ids(),
        10000,
        "every event delivered at least once"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn ordered_subscriptions_keep_per_resource_order_under_retries() {
    let db = Cluster::shared().new_database();
    prepare(&db);
    let receiver = Receiver::start().await;
    // every third request fails when it is a first attempt: a third of the
    // deliveries are retried, and none can exhaust its retries, whatever the
    // interleaving (a plain 500 at every third request let one resource's
    // retries fall on those requests each time: seven 500s, `failed`)
    receiver.push((0..120).map(|i| {
        if i % 3 == 0 {
            Reply::FailBeforeAttempt(2)
        } else {
            Reply::Status(204)
        }
    }));
    db.psql(&format!(
        "INSERT INTO walhook.subscriptions (url, ordered, retry_schedule, max_in_flight)
         VALUES ('{}', true, '{{10ms,10ms,10ms,10ms,10ms,10ms}}', 16)",
        receiver.url()
    ));
    let _walhook = walhook_streaming(&db);
    db.psql("INSERT INTO items (id) SELECT generate_series(1, 5)");
    for _ in 0..10 {
        db.psql("UPDATE items SET n = n + 1");
    }
    wait_succeeded(&db, 55).await;
    let mut last: HashMap<String, i64> = HashMap::new();
    let mut max_concurrent_seen = 0usize;
    for r in receiver.received() {
        let body = r.json();
        let resource = body["apiresource"].as_str().unwrap().to_owned();
        let n = body["resourcepayload"]["n"].as_i64().unwrap();
        let prev = last.insert(resource.clone(), n).unwrap_or(-1);
        assert!(n >= prev, "{resource}: n={n} arrived after n={prev}");
        max_concurrent_seen += 1;
    }
    assert!(max_concurrent_seen >= 55);
    assert_eq!(last.len(), 5);
    assert!(last.values().all(|n| *n == 10));
    // the first request was a first attempt and failed: retries happened
    let retried = "SELECT count(*) FROM walhook.delivery_attempts WHERE attempt > 1";
    assert!(scalar(&db, retried).await > 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn two_daemons_never_make_the_same_attempt_twice() {
    let db = Cluster::shared().new_database();
    prepare(&db);
    let receiver = Receiver::start().await;
    // ten failed attempts per event: both instances' claim loops get their turns;
    // the breaker never opens (its probes would keep an attempt's number)
    receiver.set_default(Reply::FailBeforeAttempt(11));
    db.psql(&format!(
        "INSERT INTO walhook.subscriptions
                (url, retry_schedule, failure_threshold, failure_window_min_attempts)
         VALUES ('{}', '{{10ms,10ms,10ms,10ms,10ms,10ms,10ms,10ms,10ms,10ms,10ms,10ms}}',
                 10000, 1000000)",
        receiver.url()
    ));
    let _active = walhook_streaming(&db);
    let standby = walhook_run(&db.url(), &db.slot, &db.publication, &[]);
    standby.wait_for_log("waiting as standby", Duration::from_secs(60));
    db.psql("INSERT INTO items (id) SELECT generate_series(1, 200)");
    wait_succeeded(&db, 200).await;
    let mut seen = HashSet::new();
    for r in receiver.received() {
        let key = (
            r.header("webhook-id").unwrap(),
            r.header("webhook-attempt").unwrap(),
        );
        assert!(seen.insert(key.clone()), "attempt made twice: {key:?}");
    }
    let instances = scalar(
        &db,
        "SELECT count(DISTINCT instance_id) FROM walhook.delivery_attempts",
    )
    .await;
    assert_eq!(
        instances,
        2,
        "both instances deliver retries:\n{}",
        standby.log()
    );
    assert_eq!(
        scalar(&db, "SELECT count(*) FROM (SELECT delivery_id, attempt FROM walhook.delivery_attempts GROUP BY 1, 2 HAVING count(*) > 1) d").await,
        0
    );
}

/// The crash window between the receiver's 2xx and the outcome's commit: the
/// outcome write is held back by a lock, walhook is killed, and after a restart
/// the delivery goes out again with the same `webhook-id`.
#[tokio::test(flavor = "multi_thread")]
async fn sigkill_after_the_2xx_before_the_outcome_is_stored_delivers_again() {
    let db = Cluster::shared().new_database();
    prepare(&db);
    let receiver = Receiver::start().await;
    db.psql(&format!(
        "INSERT INTO walhook.subscriptions (url, timeout_ms) VALUES ('{}', 1000)",
        receiver.url()
    ));
    let mut first = walhook_streaming(&db);
    let locker = first_request_outcome_held(&db, &receiver).await;
    // the receiver answered and the outcome waits on a lock: the slot is
    // confirmed past the event anyway, which owes the delivery
    wait_slot_confirms_every_event(&db).await;
    first.kill_9();
    locker.batch_execute("ROLLBACK").await.unwrap();
    assert_eq!(
        scalar(&db, "SELECT count(*) FROM walhook.delivery_attempts").await,
        0,
        "the outcome must not have been stored before the kill"
    );
    // a first attempt's row is written once, with its outcome: until then the
    // event's row holds the obligation
    assert_eq!(
        scalar(&db, "SELECT count(*) FROM walhook.deliveries").await,
        0,
        "no outcome stored, so no delivery row yet"
    );
    assert_eq!(
        events_owing_without_a_row(&db).await,
        1,
        "the stored event names the delivery it owes"
    );
    let _second = walhook_streaming(&db);
    wait_succeeded(&db, 1).await;
    let received = receiver.received();
    assert!(received.len() >= 2, "delivered again after the restart");
    let ids: HashSet<String> = received
        .iter()
        .map(|r| r.header("webhook-id").unwrap())
        .collect();
    assert_eq!(ids.len(), 1, "the same webhook-id both times");
    assert_eq!(
        scalar(&db, "SELECT count(*) FROM walhook.delivery_attempts").await,
        1,
        "the lost attempt is not invented; the one after the restart is recorded"
    );
}

/// The crash window between storing events (their deliveries waiting in
/// memory for a first attempt, with no row yet) and the first attempt: the
/// slot is confirmed past them (it never waits on a receiver), the events owe
/// their deliveries, and after a restart every event is delivered.
#[tokio::test(flavor = "multi_thread")]
async fn sigkill_after_events_are_stored_before_their_first_attempt_delivers_after_restart() {
    let db = Cluster::shared().new_database();
    prepare(&db);
    let receiver = Receiver::start().await;
    // one request at a time, and the first one hangs: the next deliveries wait
    // in memory, not yet attempted (held there for up to a minute, so a slow
    // machine still finds them in memory)
    receiver.push([Reply::Hang]);
    db.psql("INSERT INTO walhook.settings VALUES ('first_attempt_hold', '1 minute')");
    db.psql(&format!(
        "INSERT INTO walhook.subscriptions (url, timeout_ms, max_in_flight) VALUES ('{}', 2000, 1)",
        receiver.url()
    ));
    let mut first = walhook_streaming(&db);
    db.psql("INSERT INTO items (id) SELECT generate_series(1, 3)");
    wait_until(WAIT, "the first request", || async {
        (receiver.count() == 1).then_some(())
    })
    .await;
    wait_slot_confirms_every_event(&db).await;
    let rows = scalar(&db, "SELECT count(*) FROM walhook.deliveries").await;
    let owing = events_owing_without_a_row(&db).await;
    first.kill_9();
    assert_eq!(receiver.count(), 1);
    assert_eq!(
        rows, 0,
        "one delivery in flight and two waiting in memory, none recorded yet"
    );
    assert_eq!(owing, 3, "each stored event names the delivery it owes");
    assert_eq!(
        scalar(&db, "SELECT count(*) FROM walhook.events").await,
        3,
        "all events were stored before the kill"
    );
    let _second = walhook_streaming(&db);
    wait_succeeded(&db, 3).await;
    assert_eq!(
        receiver.distinct_ids(),
        3,
        "every event delivered after the restart"
    );
}

/// A first attempt's row is inserted with its outcome; a replay of its batch
/// may have inserted it `pending` meanwhile (the writer lost its session).
/// The outcome then goes to that row: stored once, one attempt row, and no
/// second request.
#[tokio::test(flavor = "multi_thread")]
async fn a_first_attempt_whose_row_a_replay_inserted_meanwhile_stores_its_outcome_there() {
    let db = Cluster::shared().new_database();
    let receiver = prepare_subscribed(&db).await;
    let _walhook = walhook_streaming(&db);
    let locker = first_request_outcome_held(&db, &receiver).await;
    // what the replay inserts (due later, so no claim takes it first)
    db.psql(
        "INSERT INTO walhook.deliveries (event_id, subscription_id, apiresource, commit_lsn, seq,
                                         next_attempt_at)
         SELECT e.id, s.id, e.apiresource, e.commit_lsn, e.seq, now() + interval '1 hour'
           FROM walhook.events e, walhook.subscriptions s",
    );
    locker.batch_execute("ROLLBACK").await.unwrap();
    wait_succeeded(&db, 1).await;
    assert_eq!(
        db.psql(
            "SELECT d.attempts || ' ' || count(a.*) FROM walhook.deliveries d
               JOIN walhook.delivery_attempts a ON a.delivery_id = d.id GROUP BY d.id"
        ),
        "1 1",
        "one delivery row, its outcome and one attempt row"
    );
    assert_eq!(
        receiver.count(),
        1,
        "the outcome was stored, not attempted again"
    );
}
