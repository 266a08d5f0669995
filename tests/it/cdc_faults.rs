//! Failure paths of the CDC core: crashes, PostgreSQL restarts, malformed
//! streams, a server without logical decoding, and schema versions.

use std::time::Duration;

use crate::support::fake_peer::{FakePeer, begin, commit, insert, keepalive, relation, xlog_data};
use crate::support::{
    Cluster, ClusterOptions, TestDb, items_table, migrate, no_more_events, scalar, wait_events,
    wait_until, walhook, walhook_run,
};

const WAIT: Duration = Duration::from_secs(120);

fn prepare(db: &TestDb<'_>) {
    items_table(db, ", name text");
    db.psql(
        "CREATE PROCEDURE write_items(first int, n int, per_txn int) LANGUAGE plpgsql AS $$
         BEGIN
             FOR i IN first .. first + n - 1 LOOP
                 INSERT INTO items VALUES (i, repeat('x', 200));
                 IF (i - first + 1) % per_txn = 0 THEN COMMIT; END IF;
             END LOOP;
         END $$;",
    );
}

const EVENTS: &str = "SELECT count(*) FROM walhook.events";

/// Each item row has exactly one event, and no event is stored twice: once
/// `n` are stored, no more come for a second.
async fn assert_each_once(db: &TestDb<'_>, n: i64) {
    wait_events(db, n).await;
    no_more_events(db, n, Duration::from_secs(1)).await;
    assert_eq!(scalar(db, EVENTS).await, n);
    assert_eq!(
        scalar(db, "SELECT count(DISTINCT apiresource) FROM walhook.events").await,
        n
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn sigkill_mid_stream_loses_and_duplicates_nothing() {
    let db = Cluster::shared().new_database();
    prepare(&db);
    let mut first = walhook_run(&db.url(), &db.slot, &db.publication, &[]);
    first.wait_for_log("streaming", WAIT);
    let url = db.url();
    let writer = std::thread::spawn(move || {
        crate::support::cluster::psql_url(&url, "CALL write_items(1, 20000, 100)");
    });
    wait_until(WAIT, "some events before the kill", || async {
        (scalar(&db, EVENTS).await > 1000).then_some(())
    })
    .await;
    first.kill_9();
    let at_kill = scalar(&db, EVENTS).await;
    writer.join().unwrap();
    assert!(
        at_kill < 20000,
        "the kill must happen mid-stream ({at_kill} stored)"
    );
    let _second = walhook_run(&db.url(), &db.slot, &db.publication, &[]);
    assert_each_once(&db, 20000).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn postgres_restart_mid_stream_loses_nothing() {
    let cluster = Cluster::start(ClusterOptions::default());
    let db = cluster.database();
    prepare(&db);
    let walhook = walhook_run(&db.url(), &db.slot, &db.publication, &[]);
    walhook.wait_for_log("streaming", WAIT);
    db.psql("CALL write_items(1, 3000, 50)");
    cluster.restart();
    db.psql("CALL write_items(3001, 3000, 50)");
    assert_each_once(&db, 6000).await;
    assert!(
        walhook.log().contains("reconnecting"),
        "walhook should have reconnected:\n{}",
        walhook.log()
    );
}

/// A peer that sends one good transaction, then `bad` at 0/3000; walhook
/// reports it, reconnects, and confirms only the good transaction.
async fn malformed_stream(
    bad: &[u8],
    expect_in_log: &str,
) -> (crate::support::ChildProcess, FakePeer, TestDb<'static>) {
    let db = Cluster::shared().new_database();
    migrate(&db.url());
    let mut script: Vec<bytes::Bytes> = vec![
        xlog_data(0x2000_0000, &begin(0x2000_0008, 7)),
        xlog_data(0x2000_0000, &relation(99999, "public", "remote", &["id"])),
        xlog_data(0x2000_0004, &insert(99999, &["1"])),
        xlog_data(0x2000_0008, &commit(0x2000_0008, 0x2000_0010)),
        keepalive(0x2000_0010, true),
    ];
    script.push(xlog_data(0x3000_0000, bad));
    script.push(xlog_data(0x3000_0100, &begin(0x3000_0108, 8)));
    script.push(xlog_data(0x3000_0108, &commit(0x3000_0108, 0x3000_0110)));
    script.push(keepalive(0x3000_0110, true));
    let peer = FakePeer::start(script).await;
    let replication = peer.url();
    let mut walhook = walhook_run(
        &db.url(),
        &db.slot,
        &db.publication,
        &["--replication-url", &replication],
    );
    walhook.wait_for_log(expect_in_log, WAIT);
    wait_until(WAIT, "a reconnect after the bad message", || async {
        (peer.starts.load(std::sync::atomic::Ordering::SeqCst) >= 2).then_some(())
    })
    .await;
    assert!(
        walhook.is_running(),
        "walhook must not exit:\n{}",
        walhook.log()
    );
    // the good transaction is stored by one session or a replay of it (on a
    // loaded machine the bad message can end the first session before the
    // writer's commit): it is confirmed, and nothing past the bad message is
    wait_until(WAIT, "the good transaction confirmed", || async {
        (peer.max_confirmed() >= 0x2000_0010).then_some(())
    })
    .await;
    assert_eq!(
        peer.max_confirmed(),
        0x2000_0010,
        "confirms the good transaction, never past the bad message"
    );
    (walhook, peer, db)
}

#[tokio::test(flavor = "multi_thread")]
async fn truncated_message_is_reported_and_not_confirmed() {
    malformed_stream(&[b'B', 0, 0, 0], "undecodable message at 0/30000000").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_message_is_reported_and_not_confirmed() {
    malformed_stream(b"Zhello", "undecodable message at 0/30000000").await;
}

/// The same bad message on every replay: after a few identical failures walhook
/// stops with an error naming the position and the table.
#[tokio::test(flavor = "multi_thread")]
async fn a_message_failing_every_replay_stops_walhook_naming_lsn_and_table() {
    // an Insert on the known relation 99999 whose tuple is cut short
    let bad = [b'I', 0, 1, 0x86, 0x9f, b'N', 0, 1, b't', 0, 0, 0, 9, b'x'];
    let (mut walhook, peer, _db) =
        malformed_stream(&bad, "undecodable message at 0/30000000").await;
    let status = walhook.wait_exit(Duration::from_secs(60));
    let log = walhook.log();
    assert!(
        status.is_some_and(|s| !s.success()),
        "walhook stops:\n{log}"
    );
    assert!(
        log.contains("failed 5 times in a row on the message at 0/30000000 (table public.remote)"),
        "{log}"
    );
    assert_eq!(peer.starts.load(std::sync::atomic::Ordering::SeqCst), 5);
    assert_eq!(peer.max_confirmed(), 0x2000_0010);
}

#[tokio::test(flavor = "multi_thread")]
async fn wal_level_replica_exits_naming_the_setting() {
    let cluster = Cluster::start(ClusterOptions {
        wal_level: Some("replica".into()),
        ..Default::default()
    });
    let db = cluster.database();
    migrate(&db.url());
    let mut walhook = walhook_run(&db.url(), &db.slot, &db.publication, &[]);
    let status = walhook
        .wait_exit(Duration::from_secs(30))
        .expect("walhook exits");
    assert!(!status.success());
    assert!(
        walhook.log().contains("set wal_level = logical"),
        "{}",
        walhook.log()
    );
}

#[test]
fn migrate_is_idempotent_and_refuses_a_newer_schema() {
    let db = Cluster::shared().database();
    migrate(&db.url());
    let (status, out, _) = walhook(&["migrate", "--database-url", &db.url()]);
    assert!(status.success());
    let latest = walhook::store::migrate::latest_version();
    assert!(
        out.contains(&format!("version {latest} (was {latest})")),
        "{out}"
    );
    db.psql("INSERT INTO walhook.schema_migrations (version, name) VALUES (999, 'future')");
    let (status, _, err) = walhook(&["migrate", "--database-url", &db.url()]);
    assert!(!status.success());
    assert!(err.contains("newer than this binary"), "{err}");
    let err = run_fails(&db);
    assert!(err.contains("upgrade walhook"), "{err}");
}

/// `walhook run` on `db` exits with failure; its stderr.
fn run_fails(db: &TestDb<'_>) -> String {
    let (status, _, err) = walhook(&[
        "run",
        "--database-url",
        &db.url(),
        "--http-addr",
        "127.0.0.1:0",
    ]);
    assert!(!status.success(), "{err}");
    err
}

/// A statement failing at start-up is reported as that statement's failure,
/// not as a connection problem.
#[test]
fn a_failing_startup_statement_is_not_reported_as_a_connection_problem() {
    let db = Cluster::shared().database();
    migrate(&db.url());
    db.psql("DROP FUNCTION walhook.register_publication(text)");
    let err = run_fails(&db);
    assert!(
        err.contains("registering the publication with its routed tables failed")
            && err.contains("function walhook.register_publication(")
            && err.contains("does not exist (SQLSTATE 42883)"),
        "{err}"
    );
    assert!(!err.contains("cannot connect"), "{err}");
}
