//! The database never waits on a receiver: the slot follows stored events
//! whatever receivers do, PostgreSQL shuts down in seconds with walhook
//! attached, queued work follows subscription changes, a redelivery never
//! runs beside the attempt it interrupts, retention keeps what is owed, and a
//! stage that dies ends the process non-zero.

use std::process::Command;
use std::time::{Duration, Instant};

use crate::support::process::{walhook, walhook_bin};
use crate::support::receiver::Reply;
use crate::support::{
    ChildProcess, Cluster, ClusterOptions, Receiver, TestDb, items_table, scalar, subscribe,
    wait_until, wait_until_or, walhook_streaming,
};

const WAIT: Duration = Duration::from_secs(180);

/// The rows' events (a hung receiver's subscription also makes a
/// `webhook.failing` event when its endpoint health trips).
const ITEM_EVENTS: &str = "SELECT count(*) FROM walhook.events WHERE type LIKE 'item.%'";

fn prepare(db: &TestDb<'_>) {
    items_table(db, ", n int NOT NULL DEFAULT 0");
}

/// Bytes between the slot's confirmed position and the last stored event's
/// commit (0 when the slot is past it).
async fn slot_behind_events(db: &TestDb<'_>) -> i64 {
    scalar(
        db,
        &format!(
            "SELECT coalesce(greatest(0, (SELECT max(commit_lsn) FROM walhook.events)
                                        - s.confirmed_flush_lsn), 0)::int8
               FROM pg_replication_slots s WHERE s.slot_name = '{}'",
            db.slot
        ),
    )
    .await
}

/// With a receiver that accepts connections and never answers, the slot's
/// confirmed position keeps up with the stored events, every event is
/// stored, the healthy subscription gets everything, and the hung one's
/// deliveries wait in PostgreSQL, not in memory: `max_pending_rows` of them
/// as pending rows, the rest deferred in their events.
#[tokio::test(flavor = "multi_thread")]
async fn a_hung_receiver_holds_neither_the_slot_nor_ingestion() {
    let db = Cluster::shared().new_database();
    prepare(&db);
    let healthy = Receiver::start().await;
    let hung = Receiver::replying(Reply::Hang).await;
    // the hung subscription's endpoint health trips (a webhook.failing
    // event): the healthy one takes the rows' events only
    subscribe(&db, &healthy.url(), ", events", ", '{item.*}'");
    let hung_id = subscribe(&db, &hung.url(), ", timeout_ms", ", 2000");
    let daemon = walhook_streaming(&db);
    // one large transaction, then many small ones
    db.psql("INSERT INTO items (id) SELECT generate_series(1, 20000)");
    db.psql(
        "DO $$ BEGIN FOR i IN 0..99 LOOP
             INSERT INTO items (id) SELECT 20001 + i * 50 + g FROM generate_series(0, 49) g;
             COMMIT;
         END LOOP; END $$",
    );
    let total = 25_000;
    wait_until_or(
        WAIT,
        "every event stored",
        || async { (scalar(&db, ITEM_EVENTS).await == total).then_some(()) },
        || format!("{} stored\n{}", db.psql(ITEM_EVENTS), daemon.log()),
    )
    .await;
    wait_until(
        Duration::from_secs(10),
        "the slot confirmed within seconds of the last stored event",
        || async { (slot_behind_events(&db).await == 0).then_some(()) },
    )
    .await;
    wait_until(WAIT, "the healthy receiver got every event", || async {
        (healthy.distinct_ids() == total as usize).then_some(())
    })
    .await;
    wait_until(
        Duration::from_secs(30),
        "the hung subscription's endpoint health tripped (one webhook.failing event)",
        || async {
            let failing = format!(
                "SELECT count(*) FROM walhook.events
                  WHERE type = 'webhook.failing' AND apiresource = '/webhooks/{hung_id}'"
            );
            (scalar(&db, &failing).await == 1).then_some(())
        },
    )
    .await;
    // its backlog waits in PostgreSQL: pending rows up to max_pending_rows
    // (10000 by default; more while held ones got theirs before it was
    // found slow), the rest deferred in their events
    let rows_of_hung =
        format!("SELECT count(*) FROM walhook.deliveries WHERE subscription_id = '{hung_id}'");
    let deferred_of_hung = format!(
        "SELECT coalesce(sum(deferred - materialised), 0)::int8 FROM walhook.deferrals
          WHERE subscription_id = '{hung_id}'"
    );
    wait_until_or(
        Duration::from_secs(30),
        "the hung subscription's deliveries wait in PostgreSQL, most of them deferred",
        || async {
            let rows = scalar(&db, &rows_of_hung).await;
            let deferred = scalar(&db, &deferred_of_hung).await;
            // all but those whose attempts are running (at most max_in_flight)
            (rows + deferred >= total - 32 && deferred > 0).then_some((rows, deferred))
        },
        || {
            format!(
                "rows {} deferred {}",
                db.psql(&rows_of_hung),
                db.psql(&deferred_of_hung)
            )
        },
    )
    .await;
    // pending rows (failed ones have ended): max_pending_rows, and those
    // that left memory before it was found slow (1,024 at most)
    let pending = scalar(&db, &format!("{rows_of_hung} AND status = 'pending'")).await;
    assert!(
        pending <= 10_000 + 1_024 + 32,
        "{pending} pending rows: a hung subscription gets max_pending_rows, not one per event"
    );
    // every obligation is visible: the gauges, and `walhook status`
    let metrics = daemon.metrics().await;
    for gauge in [
        "walhook_deliveries_in_memory ",
        "walhook_pending_deliveries ",
        "walhook_delivery_mark_lag_bytes ",
        "walhook_deferred_deliveries ",
    ] {
        assert!(metrics.contains(gauge), "{gauge} in:\n{metrics}");
    }
    assert!(
        metrics.contains("walhook_deliveries_materialised_total{reason=\"held\"}"),
        "{metrics}"
    );
    let (status, out, err) = walhook(&["status", "--database-url", &db.url(), "--slot", &db.slot]);
    assert!(status.success(), "{err}");
    assert!(out.contains("in memory, no row yet: "), "{out}");
    assert!(out.contains("deferred, no row yet: "), "{out}");
}

/// Writes 10-row transactions every few milliseconds until told to stop,
/// reconnecting through a restart; the table itself says what committed.
fn start_load(
    url: String,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut next = 1_000_000;
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            let Ok((client, conn)) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await
            else {
                // pacing: PostgreSQL is restarting; try again shortly
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            };
            tokio::spawn(conn);
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let sql = format!(
                    "INSERT INTO items (id) SELECT generate_series({next}, {})",
                    next + 9
                );
                next += 10;
                if client.batch_execute(&sql).await.is_err() {
                    break;
                }
                // pacing: a transaction every few milliseconds is the load
                tokio::time::sleep(Duration::from_millis(3)).await;
            }
        }
    })
}

/// `pg_ctl -m fast` restarts PostgreSQL in seconds with walhook attached
/// under load, with a healthy and a hung receiver; afterwards every event
/// is delivered to the healthy one.
#[tokio::test(flavor = "multi_thread")]
async fn a_fast_shutdown_under_load_takes_seconds_and_loses_nothing() {
    let cluster = Cluster::start(ClusterOptions::default());
    let db = cluster.database();
    prepare(&db);
    let healthy = Receiver::start().await;
    let hung = Receiver::replying(Reply::Hang).await;
    subscribe(&db, &healthy.url(), ", events", ", '{item.*}'");
    subscribe(&db, &hung.url(), ", timeout_ms", ", 3000");
    let walhook = walhook_streaming(&db);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = start_load(db.url(), stop.clone());
    let items = "SELECT count(*) FROM items";
    // under load: walhook stores the load's events and the hung receiver holds requests
    wait_until(WAIT, "the load streamed and a request hanging", || async {
        (scalar(&db, ITEM_EVENTS).await >= 500 && hung.count() >= 1).then_some(())
    })
    .await;
    let began = Instant::now();
    cluster.restart();
    let restart = began.elapsed();
    // the load goes on after the restart
    let at_restart = scalar(&db, items).await;
    wait_until(WAIT, "the load writing again", || async {
        (scalar(&db, items).await >= at_restart + 200).then_some(())
    })
    .await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    assert!(
        restart < Duration::from_secs(30),
        "pg_ctl -m fast restart took {restart:?} with walhook attached:\n{}",
        walhook.log()
    );
    load.await.unwrap();
    let rows = scalar(&db, items).await;
    assert!(rows > 100, "the load wrote {rows} rows");
    wait_until(WAIT, "every committed row delivered", || async {
        (healthy.distinct_ids() as i64 == rows).then_some(())
    })
    .await;
    assert_eq!(
        scalar(&db, ITEM_EVENTS).await,
        rows,
        "one event per committed row"
    );
}

/// A job waiting in memory takes its subscription as it is when it starts:
/// after the URL changes, what was queued goes to the new receiver.
#[tokio::test(flavor = "multi_thread")]
async fn queued_deliveries_follow_a_subscription_change() {
    let db = Cluster::shared().new_database();
    prepare(&db);
    let old = Receiver::replying(Reply::Hang).await;
    let new = Receiver::start().await;
    let id = subscribe(&db, &old.url(), ", timeout_ms, max_in_flight", ", 1500, 1");
    let walhook = walhook_streaming(&db);
    db.psql("INSERT INTO items (id) SELECT generate_series(1, 6)");
    wait_until(WAIT, "the first request", || async {
        (old.count() >= 1).then_some(())
    })
    .await;
    db.psql(&format!(
        "UPDATE walhook.subscriptions SET url = '{}' WHERE id = '{id}'",
        new.url()
    ));
    wait_until_or(
        Duration::from_secs(60),
        "6 events at the new url",
        || async { (new.distinct_ids() >= 6).then_some(()) },
        || {
            format!(
                "{} of 6 there:\n{}\n{}",
                new.distinct_ids(),
                db.psql("SELECT status, attempts, last_error FROM walhook.deliveries"),
                walhook.log()
            )
        },
    )
    .await;
    assert!(
        old.count() <= 2,
        "the old url got {} requests after the change took effect",
        old.count()
    );
}

/// `walhook.redeliver` on a delivery whose attempt is running keeps its
/// lease: the running attempt's outcome is recorded, and the redelivery
/// follows it, never beside it.
#[tokio::test(flavor = "multi_thread")]
async fn a_redelivery_during_an_attempt_waits_for_it() {
    let db = Cluster::shared().new_database();
    prepare(&db);
    let receiver = Receiver::start().await;
    // first attempt fails, the retry (claimed, leased) hangs, then 204
    receiver.push([Reply::Status(500), Reply::Hang]);
    subscribe(&db, &receiver.url(), ", timeout_ms", ", 3000");
    let _walhook = walhook_streaming(&db);
    db.psql("INSERT INTO items (id) VALUES (1)");
    wait_until(WAIT, "the retry running", || async {
        (receiver.count() == 2).then_some(())
    })
    .await;
    let leased = scalar(
        &db,
        "SELECT count(*) FROM walhook.deliveries WHERE lease_until > now()",
    )
    .await;
    assert_eq!(leased, 1, "the retry holds a lease");
    db.psql("SELECT walhook.redeliver(id) FROM walhook.deliveries");
    wait_until(WAIT, "the redelivery succeeded", || async {
        (scalar(
            &db,
            "SELECT count(*) FROM walhook.deliveries WHERE status = 'succeeded'",
        )
        .await
            == 1)
            .then_some(())
    })
    .await;
    let received = receiver.received();
    assert_eq!(received.len(), 3, "no request beside the running one");
    let waited = received[2].at - received[1].at;
    assert!(
        waited >= Duration::from_millis(2_800),
        "the redelivery went out {waited:?} after the attempt it interrupted began"
    );
    assert_eq!(
        scalar(&db, "SELECT count(*) FROM walhook.delivery_attempts").await,
        3,
        "the interrupted attempt's outcome is recorded too"
    );
}

/// Retention never deletes an event whose delivery from memory may lack a
/// row (owed, at or past the mark), however old.
#[tokio::test(flavor = "multi_thread")]
async fn retention_keeps_events_that_owe_deliveries() {
    let db = Cluster::shared().new_database();
    prepare(&db);
    let id = subscribe(&db, "http://127.0.0.1:9/hook", "", "");
    db.psql(&format!(
        "INSERT INTO walhook.events (id, type, apiresource, revision, commit_lsn, commit_time, owed)
         VALUES (gen_random_uuid(), 'item.created', '/items/1', 1, '0/100', now() - interval '30 days',
                 '{{{id}}}'),
                (gen_random_uuid(), 'item.created', '/items/2', 2, '0/200', now() - interval '30 days',
                 NULL)"
    ));
    let client = db.client().await;
    let settings = walhook::store::settings::Settings::default();
    let (removed, _) = walhook::store::retention::sweep(&client, &settings)
        .await
        .unwrap();
    assert_eq!(
        removed, 1,
        "only the event that owes nothing, without a mark"
    );
    db.psql(&format!(
        "INSERT INTO walhook.delivery_marks VALUES ('{}', '0/150')",
        db.slot
    ));
    let (removed, _) = walhook::store::retention::sweep(&client, &settings)
        .await
        .unwrap();
    assert_eq!(removed, 1, "past the mark, its deliveries have rows");
    assert_eq!(scalar(&db, "SELECT count(*) FROM walhook.events").await, 0);
}

/// A stage that dies ends the process non-zero with the reason.
#[tokio::test(flavor = "multi_thread")]
async fn a_dispatcher_that_dies_ends_the_process_non_zero() {
    let db = Cluster::shared().new_database();
    prepare(&db);
    let http_addr = format!("127.0.0.1:{}", crate::support::cluster::free_port());
    let mut cmd = Command::new(walhook_bin());
    cmd.args([
        "run",
        "--database-url",
        &db.url(),
        "--slot",
        &db.slot,
        "--publication",
        &db.publication,
        "--http-addr",
        &http_addr,
    ])
    .env("WALHOOK_FAILPOINTS", "dispatcher-panic");
    let mut walhook = ChildProcess::spawn(cmd);
    let status = walhook
        .wait_exit(Duration::from_secs(60))
        .unwrap_or_else(|| panic!("walhook kept running:\n{}", walhook.log()));
    assert!(!status.success(), "exit status {status:?}");
    assert!(
        walhook.log().contains("dispatcher stopped unexpectedly"),
        "{}",
        walhook.log()
    );
}
