//! A slow or failing subscription's backlog is deferred: its deliveries wait
//! in their events (`walhook.events.deferred`, counted in
//! `walhook.deferrals`), at most `max_pending_rows` of them as pending rows
//! at once, and every one is delivered once its receiver recovers; then the
//! deferral ends. A deferred delivery is as durable as a row: a walhook
//! killed meanwhile leaves nothing undelivered.

use std::time::Duration;

use crate::support::process::walhook_streaming;
use crate::support::receiver::Reply;
use crate::support::{Cluster, Receiver, TestDb, items_table, scalar, subscribe, wait_until_or};

const WAIT: Duration = Duration::from_secs(180);

/// The rows' events.
const ITEM_EVENTS: &str = "SELECT count(*) FROM walhook.events WHERE type LIKE 'item.%'";

/// A receiver that hangs (500 ms timeouts, one request at a time) behind a
/// subscription given at most 100 pending rows, and a subscription id.
async fn hung_subscription(db: &TestDb<'_>) -> (Receiver, String) {
    items_table(db, "");
    db.psql("INSERT INTO walhook.settings (key, value) VALUES ('max_pending_rows', '100')");
    let receiver = Receiver::replying(Reply::Hang).await;
    let id = subscribe(
        db,
        &receiver.url(),
        ", events, timeout_ms, max_in_flight, probe_interval",
        ", '{item.*}', 500, 1, '1 second'",
    );
    (receiver, id)
}

/// Deliveries of `id` with a row, and deferred ones without.
async fn rows_and_deferred(db: &TestDb<'_>, id: &str) -> (i64, i64) {
    let rows = scalar(
        db,
        &format!("SELECT count(*) FROM walhook.deliveries WHERE subscription_id = '{id}'"),
    )
    .await;
    let deferred = scalar(
        db,
        &format!(
            "SELECT coalesce(sum(deferred - materialised), 0)::int8 FROM walhook.deferrals
              WHERE subscription_id = '{id}'"
        ),
    )
    .await;
    (rows, deferred)
}

/// Write row 0 and wait until its first attempt timed out: the
/// subscription is slow, its next deliveries are deferred.
async fn make_it_slow(db: &TestDb<'_>, id: &str) {
    db.psql("INSERT INTO items (id) VALUES (0)");
    wait_until_or(
        Duration::from_secs(30),
        "the first attempt timed out",
        || async {
            let attempts = format!(
                "SELECT count(*) FROM walhook.delivery_attempts a
                   JOIN walhook.deliveries d ON d.id = a.delivery_id
                  WHERE d.subscription_id = '{id}'"
            );
            (scalar(db, &attempts).await > 0).then_some(())
        },
        || db.psql("SELECT * FROM walhook.deliveries"),
    )
    .await;
}

/// Write `total` rows (ids from `first`) once the subscription is found
/// slow (its first delivery timed out), and wait until their events are
/// stored and most of their deliveries are deferred.
async fn defer_a_backlog(db: &TestDb<'_>, id: &str, first: i64, total: i64) {
    make_it_slow(db, id).await;
    db.psql(&format!(
        "INSERT INTO items (id) SELECT generate_series({first}, {})",
        first + total - 1
    ));
    wait_until_or(
        WAIT,
        "every event stored, the backlog deferred",
        || async {
            let stored = scalar(db, ITEM_EVENTS).await;
            let (rows, deferred) = rows_and_deferred(db, id).await;
            (stored == total + 1 && rows + deferred >= total && deferred > total / 2).then_some(())
        },
        || {
            format!(
                "{} stored; {:?}",
                db.psql(ITEM_EVENTS),
                db.psql(&format!(
                    "SELECT * FROM walhook.deferrals WHERE subscription_id = '{id}'"
                ))
            )
        },
    )
    .await;
}

/// While the receiver hangs, the subscription has about `max_pending_rows`
/// rows and the rest of its backlog is deferred; once it answers again,
/// every event arrives and the deferral ends.
#[tokio::test(flavor = "multi_thread")]
async fn a_hung_subscriptions_backlog_is_deferred_then_delivered_when_it_recovers() {
    let db = Cluster::shared().new_database();
    let (receiver, id) = hung_subscription(&db).await;
    let daemon = walhook_streaming(&db);
    let total = 3_000;
    defer_a_backlog(&db, &id, 1, total).await;
    let (rows, deferred) = rows_and_deferred(&db, &id).await;
    // at most max_pending_rows pending at once (and the first row); those
    // that failed for good have ended and made room for as many more
    let pending = scalar(
        &db,
        &format!(
            "SELECT count(*) FROM walhook.deliveries
              WHERE subscription_id = '{id}' AND status = 'pending'"
        ),
    )
    .await;
    assert!(
        pending <= 100 + 1 && rows < total / 2,
        "{pending} pending of {rows} rows ({deferred} deferred): a slow subscription gets \
         max_pending_rows pending rows at once"
    );
    let metrics = daemon.metrics().await;
    assert!(
        metrics.contains("walhook_deferred_deliveries "),
        "{metrics}"
    );

    receiver.set_default(Reply::Status(204));
    wait_until_or(
        WAIT,
        "every event delivered after the receiver recovered",
        || async { (receiver.distinct_ids() == total as usize + 1).then_some(()) },
        || {
            format!(
                "{} delivered; {:?}\n{}",
                receiver.distinct_ids(),
                db.psql("SELECT * FROM walhook.deferrals"),
                daemon.log()
            )
        },
    )
    .await;
    wait_until_or(
        Duration::from_secs(60),
        "the deferral ended",
        || async {
            (scalar(&db, "SELECT count(*) FROM walhook.deferrals").await == 0).then_some(())
        },
        || db.psql("SELECT * FROM walhook.deferrals"),
    )
    .await;
    let rows = scalar(
        &db,
        &format!(
            "SELECT count(*) FROM walhook.deliveries
              WHERE subscription_id = '{id}' AND status = 'succeeded'"
        ),
    )
    .await;
    assert!(
        rows >= total,
        "{rows} succeeded rows: each delivery has its row"
    );
}

/// Killed while most of a backlog is deferred, walhook starts again and
/// delivers every event: the obligation is in the database, not in memory.
#[tokio::test(flavor = "multi_thread")]
async fn a_deferred_backlog_survives_a_kill() {
    let db = Cluster::shared().new_database();
    let (receiver, id) = hung_subscription(&db).await;
    let mut daemon = walhook_streaming(&db);
    let total = 2_000;
    defer_a_backlog(&db, &id, 1, total).await;
    daemon.kill_9();
    receiver.set_default(Reply::Status(204));
    let daemon = walhook_streaming(&db);
    wait_until_or(
        WAIT,
        "every event delivered after a kill",
        || async { (receiver.distinct_ids() == total as usize + 1).then_some(()) },
        || format!("{} delivered\n{}", receiver.distinct_ids(), daemon.log()),
    )
    .await;
}

/// Retention keeps an old event while a deferred delivery of it has no row
/// (past its subscription's position in `walhook.deferrals`), and removes it
/// once the position passes it or the deferral ends.
#[tokio::test(flavor = "multi_thread")]
async fn retention_keeps_events_whose_deferred_deliveries_have_no_row() {
    let db = Cluster::shared().new_database();
    items_table(&db, "");
    let id = subscribe(&db, "http://127.0.0.1:9/hook", "", "");
    db.psql(&format!(
        "INSERT INTO walhook.events (id, type, apiresource, revision, commit_lsn, seq,
                                     commit_time, deferred)
         VALUES (gen_random_uuid(), 'item.created', '/items/1', 1, '0/100', 0,
                 now() - interval '30 days', '{{{id}}}'),
                (gen_random_uuid(), 'item.created', '/items/2', 2, '0/200', 0,
                 now() - interval '30 days', '{{{id}}}');
         INSERT INTO walhook.deferrals (subscription_id, after_lsn, after_seq, after_id,
                                        last_lsn, last_seq, last_id)
              VALUES ('{id}', '0/150', -1, '00000000-0000-0000-0000-000000000000',
                      '0/200', 0, 'ffffffff-ffff-ffff-ffff-ffffffffffff')"
    ));
    let client = db.client().await;
    let settings = walhook::store::settings::Settings::default();
    let sweep = || walhook::store::retention::sweep(&client, &settings);
    let (removed, _) = sweep().await.unwrap();
    assert_eq!(removed, 1, "only the event before the deferral's position");
    db.psql(&format!(
        "UPDATE walhook.deferrals SET after_lsn = '0/200', after_seq = 0
          WHERE subscription_id = '{id}'"
    ));
    let (removed, _) = sweep().await.unwrap();
    assert_eq!(removed, 0, "the position is at the event, not past it");
    db.psql("DELETE FROM walhook.deferrals");
    let (removed, _) = sweep().await.unwrap();
    assert_eq!(
        removed, 1,
        "the deferral ended: every deferred delivery has its row"
    );
}

/// A transaction's grouped deletes are stored at its commit, after its later
/// changes, which earlier chunks of it may have given rows already: the
/// deferral's position moves back for them, and every deferred delivery of
/// the transaction gets its row.
#[tokio::test(flavor = "multi_thread")]
async fn grouped_deletes_stored_at_commit_get_their_rows() {
    let db = Cluster::shared().new_database();
    let (_receiver, id) = hung_subscription(&db).await;
    // room for every row: the materialiser keeps up with the writer
    db.psql(
        "UPDATE walhook.settings SET value = '1000000' WHERE key = 'max_pending_rows';
         UPDATE walhook.routes SET bulk_delete_event = 'bulk_deleted'",
    );
    let daemon = walhook_streaming(&db);
    make_it_slow(&db, &id).await;
    let rows = 20_000;
    db.psql(&format!(
        "INSERT INTO items (id) SELECT generate_series(1, {rows})"
    ));
    // the deletes are the transaction's first changes, their event its last
    db.psql(&format!(
        "BEGIN;
         DELETE FROM items WHERE id BETWEEN 1 AND 5;
         UPDATE items SET id = id + {rows} WHERE id > 5;
         COMMIT;"
    ));
    let bulk = "SELECT count(*) FROM walhook.events WHERE type = 'item.bulk_deleted'";
    wait_until_or(
        WAIT,
        "the transaction stored",
        || async { (scalar(&db, bulk).await == 1).then_some(()) },
        || format!("{}\n{}", db.psql(ITEM_EVENTS), daemon.log()),
    )
    .await;
    let without_row = format!(
        "SELECT count(*) FROM walhook.events e
          WHERE '{id}' = ANY (e.deferred)
            AND NOT EXISTS (SELECT 1 FROM walhook.deliveries d
                             WHERE d.event_id = e.id AND d.subscription_id = '{id}')"
    );
    let deferred_events =
        format!("SELECT count(*) FROM walhook.events WHERE '{id}' = ANY (deferred)");
    wait_until_or(
        Duration::from_secs(60),
        "every deferred delivery with its row",
        || async { (scalar(&db, &without_row).await == 0).then_some(()) },
        || {
            format!(
                "{} without a row of {} deferred; {}",
                db.psql(&without_row),
                db.psql(&deferred_events),
                db.psql("SELECT * FROM walhook.deferrals")
            )
        },
    )
    .await;
    assert!(
        scalar(&db, &deferred_events).await > i64::from(rows),
        "the transaction's deliveries were deferred"
    );
}
