//! Backfills end to end: a real PostgreSQL, the walhook binary (daemon and
//! `walhook backfill`), and real receivers on loopback.
//!
//! Sizes are kept modest for CI time (20,000 rows, 4 writers); the issue's
//! 1,000,000-row memory check is the ignored test at the end
//! (`cargo test --test it backfill:: -- --ignored`).

use std::collections::HashMap;
use std::time::Duration;

use crate::support::{
    Cluster, Receiver, TestDb, assert_refused, items_table, nothing_happens_for, scalar, subscribe,
    wait_events, wait_scalar_at_least, wait_scalar_eq, wait_until, wait_until_or,
    walhook_streaming, without_a_row,
};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(180);

/// A migrated database with a routed `items` table of `rows` rows.
fn prepare(db: &TestDb<'_>, rows: i64) {
    items_table(
        db,
        ", kind text NOT NULL DEFAULT 'a', name text, v int NOT NULL DEFAULT 0",
    );
    db.psql(&format!(
        "INSERT INTO items (id, kind, name) SELECT i, CASE WHEN i % 3 = 0 THEN 'b' ELSE 'a' END, 'n' || i
           FROM generate_series(1, {rows}) i"
    ));
}

/// Start `walhook backfill --subscription SUB --table items EXTRA` on a
/// blocking thread; it ends with (success, stdout, stderr).
fn backfill_items(
    db: &TestDb<'_>,
    sub: &str,
    extra: &[&str],
) -> tokio::task::JoinHandle<(bool, String, String)> {
    let all: Vec<String> = ["backfill", "--database-url", &db.url()]
        .into_iter()
        .chain(["--subscription", sub, "--table", "items"])
        .chain(extra.iter().copied())
        .map(str::to_owned)
        .collect();
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = all.iter().map(String::as_str).collect();
        let (status, out, err) = crate::support::walhook(&args);
        (status.success(), out, err)
    })
}

/// Queue a backfill of `items` for subscription `sub`, at most
/// `rows_per_second` rows a second when given (else uncapped); its id.
fn queue_backfill(db: &TestDb<'_>, sub: &str, rows_per_second: Option<u32>) -> String {
    let rate = rows_per_second.map_or_else(|| "NULL".to_owned(), |r| r.to_string());
    db.psql(&format!(
        "INSERT INTO walhook.backfills (subscription_id, source_table, rows_per_second)
         VALUES ('{sub}', 'items', {rate}) RETURNING id"
    ))
}

/// Wait until backfill `id` has `status`.
async fn wait_backfill(db: &TestDb<'_>, id: &str, status: &str) {
    wait_backfill_within(db, id, status, WAIT).await;
}

/// [`wait_backfill`], giving it `timeout`.
async fn wait_backfill_within(db: &TestDb<'_>, id: &str, status: &str, timeout: Duration) {
    let sql =
        format!("SELECT count(*) FROM walhook.backfills WHERE id = '{id}' AND status = '{status}'");
    wait_scalar_eq(db, timeout, &format!("backfill {status}"), &sql, 1).await;
}

/// Backfill `id`'s `rows_sent`.
async fn rows_sent(db: &TestDb<'_>, id: &str) -> i64 {
    scalar(
        db,
        &format!("SELECT rows_sent FROM walhook.backfills WHERE id = '{id}'"),
    )
    .await
}

/// Wait until backfill `id` has sent at least `n` rows; how many it has.
async fn wait_rows_sent(db: &TestDb<'_>, id: &str, n: i64) -> i64 {
    let sql = format!("SELECT rows_sent FROM walhook.backfills WHERE id = '{id}'");
    wait_scalar_at_least(db, WAIT, &format!("{n} rows sent"), &sql, n).await
}

/// How many `item.snapshot` events are stored.
async fn snapshots_stored(db: &TestDb<'_>) -> i64 {
    scalar(
        db,
        "SELECT count(*) FROM walhook.events WHERE type = 'item.snapshot'",
    )
    .await
}

/// Exactly `n` snapshots are stored, of `n` distinct rows: none twice.
async fn assert_each_snapshot_once(db: &TestDb<'_>, n: i64) {
    assert_eq!(snapshots_stored(db).await, n, "snapshots stored");
    assert_eq!(
        scalar(
            db,
            "SELECT count(DISTINCT apiresource) FROM walhook.events WHERE type = 'item.snapshot'"
        )
        .await,
        n,
        "rows snapshotted"
    );
}

/// Wait until `receiver` has the sentinel row and nothing is pending.
async fn wait_settled(db: &TestDb<'_>, receiver: &Receiver, sentinel: &str) {
    wait_until(WAIT, "the sentinel at the receiver", || async {
        receiver
            .received()
            .iter()
            .any(|r| r.json()["apiresource"] == sentinel)
            .then_some(())
    })
    .await;
    // a first attempt from memory has no row until its outcome is stored:
    // the events naming it in `owed` count too
    wait_until(WAIT, "no pending deliveries", || async {
        (scalar(
            db,
            "SELECT count(*) FROM walhook.deliveries WHERE status <> 'succeeded'",
        )
        .await
            + without_a_row(db).await
            == 0)
            .then_some(())
    })
    .await;
}

/// Per apiresource, the item event with the highest revision: (type, body).
fn last_by_revision(
    events: impl IntoIterator<Item = (String, Value)>,
) -> HashMap<String, (String, Value)> {
    let mut last: HashMap<String, (i64, String, Value)> = HashMap::new();
    for (kind, body) in events {
        if !kind.starts_with("item.") {
            continue;
        }
        let resource = body["apiresource"].as_str().unwrap().to_owned();
        let revision = body["revision"].as_i64().unwrap();
        if last
            .get(&resource)
            .is_none_or(|(rev, _, _)| revision > *rev)
        {
            last.insert(resource, (revision, kind, body));
        }
    }
    last.into_iter().map(|(k, (_, t, b))| (k, (t, b))).collect()
}

/// The events addressed to subscription `sub`, as stored: (type, body).
async fn events_for(db: &TestDb<'_>, sub: &str) -> Vec<(String, Value)> {
    db.client()
        .await
        .query(
            &format!(
                "SELECT e.type, e.body::text FROM walhook.events e
                   JOIN walhook.deliveries d ON d.event_id = e.id
                  WHERE d.subscription_id = '{sub}'"
            ),
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), serde_json::from_str(r.get::<_, &str>(1)).unwrap()))
        .collect()
}

/// The items table as `/items/<id>` -> row JSON.
async fn table_rows(db: &TestDb<'_>) -> HashMap<String, Value> {
    db.client()
        .await
        .query("SELECT id, kind, name, v FROM items", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| {
            let id: i32 = r.get(0);
            let row = json!({"id": id, "kind": r.get::<_, String>(1),
                             "name": r.get::<_, Option<String>>(2), "v": r.get::<_, i32>(3)});
            (format!("/items/{id}"), row)
        })
        .collect()
}

/// Every row's last event is its current state; every gone row's is a delete.
fn assert_final_state(last: &HashMap<String, (String, Value)>, table: &HashMap<String, Value>) {
    for (resource, row) in table {
        let (kind, body) = last
            .get(resource)
            .unwrap_or_else(|| panic!("{resource} has no event"));
        assert_ne!(kind, "item.deleted", "{resource} exists");
        assert_eq!(&body["resourcepayload"], row, "{resource} ({kind})");
    }
    for (resource, (kind, _)) in last {
        if !table.contains_key(resource) {
            assert_eq!(kind, "item.deleted", "{resource} is gone");
        }
    }
}

const CHURN: &str = "CREATE PROCEDURE churn(n int, max_id int) LANGUAGE plpgsql AS $$
    DECLARE k int;
    BEGIN
        FOR i IN 1 .. n LOOP
            k := 1 + floor(random() * max_id)::int;
            IF random() < 0.2 THEN
                DELETE FROM items WHERE id = k;
            ELSE
                INSERT INTO items (id, name) VALUES (k, md5(random()::text))
                    ON CONFLICT (id) DO UPDATE SET v = items.v + 1, name = excluded.name;
            END IF;
            COMMIT;
            PERFORM pg_sleep(0.004);
        END LOOP;
    END $$;";

/// `writers` sessions each making `n` random single-row changes (updates,
/// deletes, inserts of ids up to `max_id`).
fn churn(
    db: &TestDb<'_>,
    writers: usize,
    n: u32,
    max_id: u32,
) -> Vec<std::thread::JoinHandle<String>> {
    (0..writers)
        .map(|_| {
            let url = db.url();
            let call = format!("CALL churn({n}, {max_id})");
            std::thread::spawn(move || crate::support::cluster::psql_url(&url, &call))
        })
        .collect()
}

/// The consistency check at the store: 20,000 rows, 4 writers. Receivers are
/// slow to drain 20,000 deliveries in a debug build on a shared machine, so
/// this test reads what each subscription is sent from walhook.deliveries;
/// the next test checks the same at a receiver, smaller and ordered.
#[tokio::test(flavor = "multi_thread")]
async fn concurrent_writers_every_row_ends_in_its_final_state() {
    let db = Cluster::shared().new_database();
    prepare(&db, 20_000);
    db.psql(CHURN);
    let receiver = Receiver::start().await;
    let bystander = Receiver::start().await;
    let sub = subscribe(&db, &receiver.url(), "", "");
    let other = subscribe(&db, &bystander.url(), "", "");
    let walhook = walhook_streaming(&db);
    let writers = churn(&db, 4, 1500, 22_000);
    wait_events(&db, 201).await; // the writers' first changes

    let (ok, out, err) = backfill_items(&db, &sub, &[]).await.unwrap();
    assert!(ok, "walhook backfill failed:\n{out}\n{err}");
    let id = out.lines().next().unwrap().trim().to_owned();
    assert!(
        uuid::Uuid::parse_str(&id).is_ok(),
        "first line is the id:\n{out}"
    );
    assert!(out.lines().last().unwrap().contains("done"), "{out}");

    for writer in writers {
        writer.join().unwrap();
    }
    db.psql("INSERT INTO items (id, name) VALUES (99999, 'sentinel')");
    // stored, and the slot confirmed past it: every event before it is stored,
    // owing what has no row yet (a first attempt's row comes with its outcome)
    let sentinel_confirmed = format!(
        "SELECT count(*) FROM walhook.events e, pg_replication_slots s
          WHERE e.apiresource = '/items/99999'
            AND s.slot_name = '{}' AND s.confirmed_flush_lsn > e.commit_lsn",
        db.slot
    );
    wait_until(WAIT, "the sentinel stored and confirmed", || async {
        (scalar(&db, &sentinel_confirmed).await == 1).then_some(())
    })
    .await;
    wait_until(WAIT, "every owed delivery with its row", || async {
        (without_a_row(&db).await == 0).then_some(())
    })
    .await;
    // the writers did write while the backfill ran
    let during = format!(
        "SELECT count(*) FROM walhook.events e, walhook.backfills b
          WHERE b.id = '{id}' AND e.type <> 'item.snapshot'
            AND e.commit_time BETWEEN b.started_at AND b.finished_at"
    );
    assert!(
        scalar(&db, &during).await > 100,
        "too few changes overlapped the backfill"
    );

    // for every row, the last event by commit order is the row's final state
    let last = last_by_revision(events_for(&db, &sub).await);
    assert_final_state(&last, &table_rows(&db).await);

    // snapshots: stored once each, counted, for that subscription only
    let rows_sent = rows_sent(&db, &id).await;
    assert!(rows_sent > 10_000 && rows_sent <= 22_000, "{rows_sent}");
    assert_each_snapshot_once(&db, rows_sent).await;
    assert!(
        events_for(&db, &other)
            .await
            .iter()
            .all(|(kind, _)| kind != "item.snapshot")
    );

    // metrics and status
    let metrics = walhook.metrics().await;
    assert!(
        metrics.contains(&format!("walhook_backfill_rows_total {rows_sent}")),
        "{metrics}"
    );
    assert!(metrics.contains("walhook_backfills_running 0"), "{metrics}");
    let (status, out, _) =
        crate::support::walhook(&["status", "--database-url", &db.url(), "--slot", &db.slot]);
    assert!(status.success());
    assert!(
        out.contains(&id) && out.contains(&format!("done: {rows_sent} rows sent")),
        "{out}"
    );
}

/// At a receiver, for an ordered subscription: final states, and a row's
/// snapshot arrives before any later change of that row.
#[tokio::test(flavor = "multi_thread")]
async fn an_ordered_receiver_gets_each_snapshot_before_later_changes() {
    let db = Cluster::shared().new_database();
    prepare(&db, 1_000);
    db.psql(CHURN);
    let receiver = Receiver::start().await;
    let sub = subscribe(&db, &receiver.url(), ", ordered", ", true");
    let _walhook = walhook_streaming(&db);
    let writers = churn(&db, 2, 400, 1_100);
    wait_events(&db, 51).await; // the writers' first changes
    let id = queue_backfill(&db, &sub, Some(500));
    wait_backfill(&db, &id, "done").await;
    for writer in writers {
        writer.join().unwrap();
    }
    db.psql("INSERT INTO items (id, name) VALUES (99999, 'sentinel')");
    wait_settled(&db, &receiver, "/items/99999").await;

    let received: Vec<(String, Value)> = receiver
        .received()
        .iter()
        .map(|r| (r.header("webhook-event-type").unwrap(), r.json()))
        .collect();
    assert_final_state(&last_by_revision(received.clone()), &table_rows(&db).await);
    let mut snapshot_at: HashMap<String, (usize, i64)> = HashMap::new();
    for (i, (kind, body)) in received.iter().enumerate() {
        if kind == "item.snapshot" {
            let resource = body["apiresource"].as_str().unwrap().to_owned();
            snapshot_at
                .entry(resource)
                .or_insert((i, body["revision"].as_i64().unwrap()));
        }
    }
    assert!(snapshot_at.len() > 500, "{}", snapshot_at.len());
    for (i, (_, body)) in received.iter().enumerate() {
        let Some(&(at, revision)) = snapshot_at.get(body["apiresource"].as_str().unwrap_or(""))
        else {
            continue;
        };
        if body["revision"].as_i64().unwrap() > revision {
            assert!(
                i > at,
                "a later change of {} arrived before its snapshot",
                body["apiresource"]
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn sigkill_mid_backfill_resumes_and_stores_nothing_twice() {
    let db = Cluster::shared().new_database();
    prepare(&db, 20_000);
    let receiver = Receiver::start().await;
    let sub = subscribe(&db, &receiver.url(), "", "");
    let mut first = walhook_streaming(&db);
    let id = queue_backfill(&db, &sub, Some(4000));
    wait_rows_sent(&db, &id, 3000).await;
    first.kill_9();
    let at_kill = rows_sent(&db, &id).await;
    assert!(
        at_kill < 20_000,
        "the kill must happen mid-backfill ({at_kill})"
    );
    assert_eq!(
        db.psql(&format!(
            "SELECT status FROM walhook.backfills WHERE id = '{id}'"
        )),
        "running"
    );
    let _second = walhook_streaming(&db);
    wait_backfill(&db, &id, "done").await;
    assert_eq!(rows_sent(&db, &id).await, 20_000);
    assert_each_snapshot_once(&db, 20_000).await;
    assert_eq!(
        scalar(
            &db,
            "SELECT count(DISTINCT apiresource) FROM walhook.events"
        )
        .await,
        20_000
    );
    // a snapshot's commit_lsn is the low watermark's, below where the
    // delivery mark may be when it is stored, and the sweep after a crash
    // starts at the mark: its deliveries get rows with it, never owed from
    // memory
    assert_eq!(
        scalar(
            &db,
            "SELECT count(*) FROM walhook.events WHERE type = 'item.snapshot' AND owed IS NOT NULL"
        )
        .await,
        0
    );
    // one delivery each (a receiver drains them; the delivery tests cover
    // that); a first attempt from memory gets its row with its outcome
    wait_scalar_eq(
        &db,
        WAIT,
        "a delivery row for every snapshot",
        "SELECT count(DISTINCT event_id) FROM walhook.deliveries",
        20_000,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_where_clause_selects_exactly_its_rows_for_a_new_subscription() {
    let db = Cluster::shared().new_database();
    prepare(&db, 3_000);
    let bystander = Receiver::start().await;
    subscribe(&db, &bystander.url(), "", "");
    let _walhook = walhook_streaming(&db);
    // created right before the backfill, with patterns that match no snapshot
    let receiver = Receiver::start().await;
    let sub = subscribe(&db, &receiver.url(), ", events", ", '{other.created}'");
    let (ok, out, err) = backfill_items(&db, &sub, &["--where", "kind = 'b' AND id <= 2500"])
        .await
        .unwrap();
    assert!(ok, "{out}\n{err}");
    db.psql("INSERT INTO items (id, name) VALUES (99999, 'sentinel')");
    wait_settled(&db, &bystander, "/items/99999").await;
    let want: Vec<i64> = (1..=2500).filter(|i| i % 3 == 0).collect();
    wait_until(
        WAIT,
        "every selected row at the new subscription",
        || async { (receiver.count() >= want.len()).then_some(()) },
    )
    .await;
    let mut got: Vec<i64> = receiver
        .received()
        .iter()
        .map(|r| {
            assert_eq!(r.header("webhook-event-type").unwrap(), "item.snapshot");
            r.json()["resourcepayload"]["id"].as_i64().unwrap()
        })
        .collect();
    got.sort_unstable();
    got.dedup();
    assert_eq!(got, want);
    assert!(
        bystander
            .received()
            .iter()
            .all(|r| r.header("webhook-event-type").unwrap() != "item.snapshot")
    );
}

#[test]
fn refusals_name_their_cause() {
    let db = Cluster::shared().database();
    prepare(&db, 10);
    db.psql(
        "CREATE TABLE unrouted (id int PRIMARY KEY);
         CREATE TABLE keyless (id int);
         INSERT INTO walhook.routes (source_table, resource, apiresource) VALUES ('keyless', 'k', '/k/{id}');",
    );
    let sub = db.psql(
        "INSERT INTO walhook.subscriptions (url) VALUES ('http://127.0.0.1:9/h') RETURNING id",
    );
    let refused = |table: &str, clause: &str, cause: &str| {
        assert_refused(
            &db,
            &format!(
                "INSERT INTO walhook.backfills (subscription_id, source_table, where_clause)
                 VALUES ('{sub}', '{table}', {clause})"
            ),
            cause,
        )
    };
    refused("unrouted", "NULL", "route");
    let missing = assert_refused(
        &db,
        "INSERT INTO walhook.backfills (subscription_id, source_table)
         VALUES ('00000000-0000-0000-0000-000000000001', 'items')",
        "does not exist",
    );
    assert!(missing.contains("subscription"), "{missing}");
    refused("keyless", "NULL", "primary key");
    for clause in [
        "'nope = 1'",
        "'kind ='",
        "'true; DELETE FROM items'",
        "'true) UNION SELECT 1 FROM pg_class WHERE (true'",
        "'id'",
        "''",
    ] {
        refused("items", clause, "where_clause");
    }
    db.psql(&format!(
        "INSERT INTO walhook.backfills (subscription_id, source_table, where_clause)
         VALUES ('{sub}', 'items', 'kind = ''a;b'' OR id > 3')"
    ));
    // the command line says the same and exits non-zero
    let (status, out, err) = crate::support::walhook(&[
        "backfill",
        "--database-url",
        &db.url(),
        "--subscription",
        &sub,
        "--table",
        "unrouted",
    ]);
    assert!(!status.success());
    assert!(out.is_empty(), "{out}");
    assert!(err.contains("route"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn cancel_stops_the_backfill_and_keeps_what_was_stored() {
    let db = Cluster::shared().new_database();
    prepare(&db, 20_000);
    let receiver = Receiver::start().await;
    let sub = subscribe(&db, &receiver.url(), "", "");
    let walhook = walhook_streaming(&db);
    let (ok, out, err) = backfill_items(&db, &sub, &["--rows-per-second", "200", "--detach"])
        .await
        .unwrap();
    assert!(ok, "{err}");
    let id = out.trim().to_owned();
    assert_eq!(out.lines().count(), 1, "--detach prints the id only: {out}");
    wait_rows_sent(&db, &id, 1).await;
    db.psql(&format!(
        "UPDATE walhook.backfills SET status = 'cancelled' WHERE id = '{id}'"
    ));
    assert_eq!(
        db.psql(&format!(
            "SELECT finished_at IS NOT NULL FROM walhook.backfills WHERE id = '{id}'"
        )),
        "t"
    );
    walhook.wait_for_log("backfill stopped (cancelled)", WAIT);
    let stopped_at = rows_sent(&db, &id).await;
    nothing_happens_for(
        Duration::from_secs(2),
        "a row sent by a cancelled backfill",
        || async {
            let now = rows_sent(&db, &id).await;
            (now != stopped_at).then_some(now)
        },
    )
    .await;
    assert!(stopped_at < 20_000);
    let snapshots = snapshots_stored(&db).await;
    assert!(snapshots >= stopped_at);
    wait_scalar_eq(
        &db,
        WAIT,
        "stored snapshots delivered",
        "SELECT count(*) FROM walhook.deliveries WHERE status = 'succeeded'",
        snapshots,
    )
    .await;

    // set back to pending (uncapped), it resumes from its cursor
    db.psql(&format!(
        "UPDATE walhook.backfills SET status = 'pending', rows_per_second = NULL WHERE id = '{id}'"
    ));
    wait_backfill(&db, &id, "done").await;
    assert_eq!(rows_sent(&db, &id).await, 20_000);
    assert_each_snapshot_once(&db, 20_000).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_route_removed_mid_backfill_fails_it_with_its_error() {
    let db = Cluster::shared().new_database();
    prepare(&db, 5_000);
    let receiver = Receiver::start().await;
    let sub = subscribe(&db, &receiver.url(), "", "");
    let _walhook = walhook_streaming(&db);
    let id = queue_backfill(&db, &sub, Some(100));
    wait_backfill(&db, &id, "running").await;
    db.psql("DELETE FROM walhook.routes WHERE source_table = 'items'::regclass");
    wait_backfill(&db, &id, "failed").await;
    let error = db.psql(&format!(
        "SELECT error FROM walhook.backfills WHERE id = '{id}'"
    ));
    assert!(error.contains("route"), "{error}");
    assert!(rows_sent(&db, &id).await < 5_000);
}

/// The memory bound: a 1,000,000-row backfill under 64 MiB RSS. Not
/// timed; slow (about a minute of inserts), hence ignored by default. The
/// subscription is disabled so the measure is the backfill's, not delivery's.
#[tokio::test(flavor = "multi_thread")]
#[ignore]
async fn a_million_row_backfill_stays_under_64_mib() {
    let db = Cluster::shared().new_database();
    prepare(&db, 1_000_000);
    let sub = subscribe(&db, "http://127.0.0.1:9/h", ", disabled", ", true");
    let walhook = walhook_streaming(&db);
    let id = queue_backfill(&db, &sub, None);
    wait_backfill_within(&db, &id, "done", Duration::from_secs(1800)).await;
    let status = std::fs::read_to_string(format!("/proc/{}/status", walhook.pid())).unwrap();
    let hwm_kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    eprintln!(
        "peak RSS of walhook over a 1,000,000-row backfill: {} KiB",
        hwm_kib
    );
    assert_eq!(rows_sent(&db, &id).await, 1_000_000);
    assert!(hwm_kib < 64 * 1024, "peak RSS {hwm_kib} KiB");
}

/// A transaction that changed a row before a chunk's low watermark and
/// commits after its high one: the chunk waits for it to end, so the row's
/// last event by revision is that change, not a snapshot of the state before
/// it (whose revision, the low watermark's position, would be higher).
#[tokio::test(flavor = "multi_thread")]
async fn a_change_in_progress_at_the_low_watermark_is_never_outranked_by_its_snapshot() {
    let db = Cluster::shared().new_database();
    prepare(&db, 20);
    let receiver = Receiver::start().await;
    let sub = subscribe(&db, &receiver.url(), "", "");
    let _walhook = walhook_streaming(&db);
    let writer = db.client().await;
    writer
        .batch_execute("BEGIN; UPDATE items SET v = 42 WHERE id = 5")
        .await
        .unwrap();
    let backfill = backfill_items(&db, &sub, &[]);
    // the backfill's low watermark is written while the update is in progress:
    // its chunk asks whether that transaction has ended
    wait_until_or(
        Duration::from_secs(30),
        "the backfill's chunk waiting for the update's transaction",
        || async {
            let asking = "SELECT count(*) FROM pg_stat_activity
                           WHERE datname = current_database()
                             AND query LIKE '%pg_xact_status%'
                             AND query NOT LIKE '%pg_stat_activity%'";
            (scalar(&db, asking).await > 0).then_some(())
        },
        || {
            format!(
                "{}\n{}",
                db.psql("SELECT status, error FROM walhook.backfills"),
                db.psql("SELECT pid, state, wait_event_type, wait_event, left(query, 100) FROM pg_stat_activity WHERE datname = current_database()")
            )
        },
    )
    .await;
    writer.batch_execute("COMMIT").await.unwrap();
    let (ok, out, err) = backfill.await.unwrap();
    assert!(ok, "{out}\n{err}");
    db.psql("INSERT INTO items (id, name) VALUES (99999, 'sentinel')");
    wait_settled(&db, &receiver, "/items/99999").await;
    let last = last_by_revision(events_for(&db, &sub).await);
    let (kind, body) = &last["/items/5"];
    assert_eq!(
        body["resourcepayload"]["v"], 42,
        "the last event of /items/5 by revision is {kind}: {body}"
    );
    assert_final_state(&last, &table_rows(&db).await);
}
