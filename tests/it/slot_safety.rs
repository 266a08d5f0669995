//! A slot cannot silently lose changes (docs/slot-safety.md): an invalidated
//! slot, a slot dropped behind walhook's back and one re-created behind its
//! back each stop walhook with a message naming the slot; `walhook slot
//! recreate` is the way forward, and receivers converge through backfills.
//! Also: the slot's cost in `walhook status` and `/metrics`, and the start-up
//! warning about an unlimited `max_slot_wal_keep_size`.

use std::time::Duration;

use serde_json::Value;

use crate::support::{
    ChildProcess, Cluster, ClusterOptions, Receiver, TestDb, items_table, subscribe, wait_until,
    walhook, walhook_run, walhook_streaming,
};

const WAIT: Duration = Duration::from_secs(120);

/// A migrated database with a routed `items` table, rows 1..=3, and a
/// subscription to `receiver`.
fn prepare(db: &TestDb<'_>, receiver: &Receiver) {
    items_table(db, ", name text");
    subscribe(db, &receiver.url(), "", "");
}

/// SIGTERM, and wait for a clean exit.
fn stop(mut walhook: ChildProcess) {
    walhook.signal(libc::SIGTERM);
    let status = walhook.wait_exit(WAIT).expect("walhook stops");
    assert!(status.success(), "{}", walhook.log());
}

/// The last body the receiver got for `apiresource`, with its event type.
fn last_for(receiver: &Receiver, apiresource: &str) -> Option<(String, Value)> {
    receiver
        .received()
        .iter()
        .filter(|r| r.json()["apiresource"] == apiresource)
        .map(|r| (r.header("webhook-event-type").unwrap_or_default(), r.json()))
        .next_back()
}

/// Wait until the receiver's last event for `/items/{id}` is of `kind` and
/// carries `name`.
async fn wait_received(receiver: &Receiver, id: i32, kind: &str, name: &str) {
    let resource = format!("/items/{id}");
    wait_until(
        WAIT,
        &format!("{kind} of {resource} named {name}"),
        || async {
            last_for(receiver, &resource)
                .filter(|(k, body)| k == kind && body["resourcepayload"]["name"] == name)
                .map(drop)
        },
    )
    .await;
}

/// Stream rows 1..=3 to the receiver, so walhook has a confirmed position.
async fn streamed(db: &TestDb<'_>, receiver: &Receiver) -> ChildProcess {
    let walhook = walhook_streaming(db);
    db.psql("INSERT INTO items VALUES (1, 'one'), (2, 'two'), (3, 'three')");
    for (id, name) in [(1, "one"), (2, "two"), (3, "three")] {
        wait_received(receiver, id, "item.created", name).await;
    }
    walhook
}

/// Changes made while the slot is not walhook's: lost to the stream.
fn write_the_gap(db: &TestDb<'_>) {
    db.psql(
        "UPDATE items SET name = 'two, changed in the gap' WHERE id = 2;
         INSERT INTO items VALUES (4, 'four, inserted in the gap');",
    );
}

/// `walhook run` exits non-zero on its own; its log.
fn stops_with_error(db: &TestDb<'_>) -> String {
    let mut walhook = walhook_run(&db.url(), &db.slot, &db.publication, &[]);
    let status = walhook.wait_exit(WAIT);
    let log = walhook.log();
    assert!(
        status.is_some_and(|s| !s.success()),
        "walhook must stop non-zero:\n{log}"
    );
    assert!(
        !log.contains("replication stream failed"),
        "no reconnect loop on a lost slot:\n{log}"
    );
    log
}

fn slot_cli(db: &TestDb<'_>, args: &[&str]) -> (Option<i32>, String, String) {
    let url = db.url();
    let mut all = vec![
        "slot",
        "recreate",
        "--database-url",
        &url,
        "--slot",
        &db.slot,
    ];
    all.extend(args);
    let (status, out, err) = walhook(&all);
    (status.code(), out, err)
}

fn status_text(db: &TestDb<'_>) -> String {
    let (status, out, err) = walhook(&["status", "--database-url", &db.url(), "--slot", &db.slot]);
    assert!(status.success(), "{out}\n{err}");
    out
}

/// Re-create the slot, then check the gap is named and receivers converge.
async fn recreate_and_converge(db: &TestDb<'_>, receiver: &Receiver) {
    let (code, out, err) = slot_cli(db, &[]);
    assert_eq!(
        code,
        Some(2),
        "without --yes nothing changes:\n{out}\n{err}"
    );
    assert!(out.contains("items -> subscription"), "{out}");
    assert_eq!(db.psql("SELECT count(*) FROM walhook.backfills"), "0");

    let (code, out, err) = slot_cli(db, &["--yes"]);
    assert_eq!(code, Some(0), "{out}\n{err}");
    assert!(out.contains("are lost to walhook"), "{out}");
    assert!(
        err.contains("are lost to walhook"),
        "the log names the gap: {err}"
    );
    let audit = db.psql(&format!(
        "SELECT after->>'lost_from_lsn', after->>'lost_to_lsn', (after->>'lost_wal_bytes')::int8 > 0,
                jsonb_array_length(after->'backfills')
           FROM walhook.audit_log WHERE action = 'slot_recreate' AND object_id = '{}'",
        db.slot
    ));
    assert!(audit.ends_with("|t|1"), "audit row: {audit}");
    assert_eq!(
        db.psql("SELECT recreations, lost_wal_bytes > 0 FROM walhook.slot_identity"),
        "1|t"
    );

    let walhook = walhook_streaming(db);
    // the backfill sends every row's current state: the gap's update and insert
    wait_received(receiver, 2, "item.snapshot", "two, changed in the gap").await;
    wait_received(receiver, 4, "item.snapshot", "four, inserted in the gap").await;
    // and the stream goes on from the new slot
    db.psql("INSERT INTO items VALUES (5, 'five')");
    wait_received(receiver, 5, "item.created", "five").await;
    // the gauges follow within a few seconds
    let addr = walhook.http_addr.clone().unwrap();
    let metrics = wait_until(WAIT, "the slot gauges", || async {
        let metrics = reqwest::get(format!("http://{addr}/metrics"))
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        let lost: i64 = metrics
            .lines()
            .find_map(|l| l.strip_prefix("walhook_slot_lost_wal_bytes "))
            .and_then(|v| v.trim().parse().ok())?;
        (lost > 0).then_some(metrics)
    })
    .await;
    assert!(metrics.contains("walhook_slot_recreations 1"), "{metrics}");
    assert!(
        metrics.contains("walhook_slot_retained_wal_bytes "),
        "{metrics}"
    );
    assert!(
        !metrics.contains("walhook_slot_wal_status{status=\"missing\"} 1"),
        "{metrics}"
    );
    stop(walhook);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_invalidated_slot_stops_walhook_and_recreate_converges() {
    let cluster = Cluster::start(ClusterOptions {
        extra_conf: vec!["max_slot_wal_keep_size = 1MB".into()],
        ..Default::default()
    });
    let db = cluster.database();
    let receiver = Receiver::start().await;
    prepare(&db, &receiver);
    let walhook = streamed(&db, &receiver).await;
    let log = walhook.log();
    assert!(
        !log.contains("max_slot_wal_keep_size is -1"),
        "a limit is set: no warning\n{log}"
    );
    stop(walhook);
    let recorded = db.psql(&format!(
        "SELECT confirmed_lsn FROM walhook.slot_identity WHERE slot_name = '{}'",
        db.slot
    ));
    write_the_gap(&db);
    // walhook stopped: WAL past max_slot_wal_keep_size, then checkpoints
    db.psql("CREATE TABLE filler (x text)");
    for round in 0.. {
        let status = db.psql(&format!(
            "SELECT wal_status FROM pg_replication_slots WHERE slot_name = '{}'",
            db.slot
        ));
        if status == "lost" {
            break;
        }
        assert!(
            round < 20,
            "the slot is not invalidated (wal_status {status})"
        );
        db.psql(
            "INSERT INTO filler SELECT repeat('x', 1000) FROM generate_series(1, 3000);
             SELECT pg_switch_wal();
             CHECKPOINT;",
        );
    }
    let status = status_text(&db);
    assert!(status.contains("was invalidated"), "{status}");
    assert!(status.contains("wal_status     lost"), "{status}");

    let log = stops_with_error(&db);
    assert!(
        log.contains(&format!("replication slot '{}' was invalidated", db.slot)),
        "{log}"
    );
    assert!(
        log.contains(&format!("last confirmed position {recorded}")),
        "{log}"
    );
    assert!(log.contains("walhook slot recreate"), "{log}");
    recreate_and_converge(&db, &receiver).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_slot_dropped_behind_walhooks_back_stops_walhook_and_recreate_converges() {
    let db = Cluster::shared().new_database();
    let receiver = Receiver::start().await;
    prepare(&db, &receiver);
    let mut walhook = streamed(&db, &receiver).await;
    assert!(
        walhook
            .log()
            .contains("max_slot_wal_keep_size is -1 (unlimited)"),
        "the start-up warning about an unlimited max_slot_wal_keep_size:\n{}",
        walhook.log()
    );
    let status = status_text(&db);
    assert!(status.contains("WAL retained"), "{status}");
    assert!(status.contains("max_slot_wal_keep_size is -1"), "{status}");
    // a DBA ends walhook's walsender and drops the slot while walhook runs
    // (pg_sleep paces the two: the ended walsender lets go of the slot)
    let dropped = format!(
        "SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots
          WHERE slot_name = '{0}' AND active_pid IS NOT NULL;
         SELECT pg_sleep(0.05);
         SELECT pg_drop_replication_slot('{0}');",
        db.slot
    );
    wait_until(WAIT, "the slot dropped", || async {
        db.try_psql(&dropped).ok().map(drop)
    })
    .await;
    write_the_gap(&db);
    let exit = walhook.wait_exit(WAIT);
    let log = walhook.log();
    assert!(exit.is_some_and(|s| !s.success()), "walhook stops:\n{log}");
    assert!(
        log.contains(&format!("replication slot '{}' is gone", db.slot)),
        "{log}"
    );
    assert!(log.contains("walhook slot recreate"), "{log}");
    assert_eq!(
        db.psql(&format!(
            "SELECT count(*) FROM pg_replication_slots WHERE slot_name = '{}'",
            db.slot
        )),
        "0",
        "walhook created no new slot silently"
    );
    let status = status_text(&db);
    assert!(status.contains("is gone"), "{status}");
    // a restart changes nothing
    let log = stops_with_error(&db);
    assert!(log.contains("is gone"), "{log}");
    recreate_and_converge(&db, &receiver).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_slot_recreated_behind_walhooks_back_stops_walhook_and_recreate_converges() {
    let db = Cluster::shared().new_database();
    let receiver = Receiver::start().await;
    prepare(&db, &receiver);
    let walhook = streamed(&db, &receiver).await;
    stop(walhook);
    write_the_gap(&db);
    db.psql(&format!(
        "SELECT pg_drop_replication_slot('{0}');
         SELECT pg_create_logical_replication_slot('{0}', 'pgoutput');",
        db.slot
    ));
    let log = stops_with_error(&db);
    assert!(
        log.contains(&format!(
            "replication slot '{}' is not the slot walhook consumed",
            db.slot
        )),
        "{log}"
    );
    assert!(log.contains("walhook slot recreate"), "{log}");
    recreate_and_converge(&db, &receiver).await;
}

/// Restarts of walhook on its own slot are never taken for a re-created slot.
#[tokio::test(flavor = "multi_thread")]
async fn restarts_and_kills_keep_streaming_the_same_slot() {
    let db = Cluster::shared().new_database();
    let receiver = Receiver::start().await;
    prepare(&db, &receiver);
    let mut walhook = streamed(&db, &receiver).await;
    for round in 0..3 {
        db.psql(&format!(
            "INSERT INTO items SELECT i, 'bulk' FROM generate_series({0} * 1000 + 10, {0} * 1000 + 400) i",
            round
        ));
        if round % 2 == 0 {
            walhook.kill_9();
        } else {
            stop(walhook);
        }
        walhook = walhook_streaming(&db);
    }
    wait_until(WAIT, "every row's event", || async {
        (db.psql("SELECT count(*) FROM walhook.events") == "1176").then_some(())
    })
    .await;
    // the command refuses while walhook streams the slot, changing nothing
    let (code, out, err) = slot_cli(&db, &["--yes"]);
    assert_eq!(
        code,
        Some(1),
        "{out}
{err}"
    );
    assert!(err.contains("is in use by process"), "{err}");
    assert_eq!(
        db.psql("SELECT recreations FROM walhook.slot_identity"),
        "0"
    );
    stop(walhook);
    // an installation from before the record adopts the slot it finds
    db.psql("DELETE FROM walhook.slot_identity");
    let walhook = walhook_streaming(&db);
    assert!(
        walhook.log().contains("recorded the slot walhook consumes"),
        "{}",
        walhook.log()
    );
    db.psql("INSERT INTO items VALUES (9999, 'after adoption')");
    wait_received(&receiver, 9999, "item.created", "after adoption").await;
    stop(walhook);
}

/// `--slot-failover`: a failover slot on 17+, shown by `walhook status`; a
/// clear stop naming the version before 17.
#[tokio::test(flavor = "multi_thread")]
async fn slot_failover_makes_a_failover_slot_on_17_and_stops_before() {
    let db = Cluster::shared().new_database();
    let receiver = Receiver::start().await;
    prepare(&db, &receiver);
    let version: i32 = db
        .psql("SELECT current_setting('server_version_num')")
        .parse()
        .unwrap();
    let mut walhook = walhook_run(&db.url(), &db.slot, &db.publication, &["--slot-failover"]);
    if version < 170_000 {
        let status = walhook.wait_exit(WAIT);
        let log = walhook.log();
        assert!(status.is_some_and(|s| !s.success()), "{log}");
        assert!(
            log.contains("--slot-failover needs PostgreSQL 17 or later"),
            "{log}"
        );
        return;
    }
    walhook.wait_for_log("streaming", WAIT);
    assert!(walhook.log().contains("the slot is a failover slot now"));
    assert_eq!(
        db.psql(&format!(
            "SELECT failover FROM pg_replication_slots WHERE slot_name = '{}'",
            db.slot
        )),
        "t"
    );
    let status = status_text(&db);
    assert!(
        status.contains("failover       yes (not synchronised"),
        "{status}"
    );
    assert!(
        status.contains("synchronized_standby_slots is empty"),
        "{status}"
    );
    db.psql("INSERT INTO items VALUES (1, 'one')");
    wait_received(&receiver, 1, "item.created", "one").await;
    stop(walhook);
}
