//! Failover slots (PostgreSQL 17+, docs/slot-safety.md "Failover slots"): a
//! primary with a physical standby that keeps a synchronised copy of
//! walhook's `--slot-failover` slot; walhook killed with rows written but not
//! delivered, and more written while it is down; the primary stopped, the
//! standby promoted, and walhook pointed at the new primary delivers every
//! row's event, having accepted the synchronised slot as the one it consumed.
//!
//! Below 17 there are no failover slots: the test returns at once (passing)
//! and prints why, as the version checks of `pg_versions` do.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;
use std::time::{Duration, Instant};

use walhook::local_cluster::{LocalCluster, StandbyOptions};

use crate::support::cluster::psql_url;
use crate::support::receiver::Reply;
use crate::support::{
    ChildProcess, Cluster, ClusterOptions, Receiver, TestDb, routed_table, subscribe, wait_until,
    walhook, walhook_run,
};

const WAIT: Duration = Duration::from_secs(120);

/// The primary's physical slot the standby streams through.
const STANDBY_SLOT: &str = "standby1";

/// Rows written while walhook streams from the primary before the standby's
/// copy of the slot is checked, while it streams afterwards (it is killed
/// during their delivery), and while it is down.
const IN_STEP: std::ops::RangeInclusive<i32> = 1..=5;
const KILLED_DURING: std::ops::RangeInclusive<i32> = 101..=400;
const WHILE_DOWN: std::ops::RangeInclusive<i32> = 1001..=1100;

/// `walhook run --slot-failover` on `url`, once it streams.
fn streaming_with_failover(url: &str, db: &TestDb<'_>) -> ChildProcess {
    let walhook = walhook_run(url, &db.slot, &db.publication, &["--slot-failover"]);
    walhook.wait_for_log("streaming", WAIT);
    walhook
}

/// Insert rows `ids` into `accounts` on `url`, one transaction each.
fn insert_each(url: &str, ids: &std::ops::RangeInclusive<i32>) {
    psql_url(
        url,
        &format!(
            "DO $$ BEGIN
               FOR i IN {}..{} LOOP
                 INSERT INTO accounts VALUES (i, 'account ' || i);
                 COMMIT;
               END LOOP;
             END $$",
            ids.start(),
            ids.end()
        ),
    );
}

/// The ids of the accounts the receiver answered with 204 (every request
/// but those that arrived while it hung) got an `account.created` of. Every
/// request is checked: one body per webhook-id (a repeat is the same event
/// again) and the row as written.
fn answered_ids(receiver: &Receiver, hung: &Range<Instant>) -> BTreeSet<i32> {
    let mut bodies: BTreeMap<String, serde_json::Value> = BTreeMap::new();
    let mut ids = BTreeSet::new();
    for request in receiver.received() {
        let body = request.json();
        let webhook_id = request.header("webhook-id").expect("a webhook-id");
        let first = bodies.entry(webhook_id.clone()).or_insert(body.clone());
        assert_eq!(*first, body, "webhook-id {webhook_id} sent with two bodies");
        assert_eq!(
            request.header("webhook-event-type").as_deref(),
            Some("account.created")
        );
        let id = body["resourcepayload"]["id"].as_i64().expect("an id") as i32;
        assert_eq!(body["apiresource"], format!("/accounts/{id}"));
        assert_eq!(body["resourcepayload"]["name"], format!("account {id}"));
        if !hung.contains(&request.at) {
            ids.insert(id);
        }
    }
    ids
}

async fn wait_answered(receiver: &Receiver, hung: &Range<Instant>, ids: impl Iterator<Item = i32>) {
    let want: BTreeSet<i32> = ids.collect();
    wait_until(
        WAIT,
        &format!("{} accounts answered", want.len()),
        || async {
            answered_ids(receiver, hung)
                .is_superset(&want)
                .then_some(())
        },
    )
    .await;
}

fn status_text(url: &str, slot: &str) -> String {
    let (status, out, err) = walhook(&["status", "--database-url", url, "--slot", slot]);
    assert!(status.success(), "{out}\n{err}");
    out
}

/// Wait until the standby holds a persistent synchronised copy of `slot`
/// confirmed at least as far as `lsn`.
async fn wait_synced(standby: &LocalCluster, primary: &TestDb<'_>, lsn: &str) {
    let copy = format!(
        "SELECT synced AND failover AND NOT temporary AND confirmed_flush_lsn >= '{lsn}'
           FROM pg_replication_slots WHERE slot_name = '{}'",
        primary.slot
    );
    let standby_url = standby.url(&primary.name);
    wait_until(WAIT, "the standby's copy of the slot in step", || async {
        // a running-xacts record lets the copy's restart_lsn move on sooner
        primary.psql("SELECT pg_log_standby_snapshot()");
        tokio::time::sleep(Duration::from_millis(300)).await;
        (psql_url(&standby_url, &copy) == "t").then_some(())
    })
    .await;
}

/// Wait until the standby has replayed everything the primary wrote so far.
async fn wait_replayed(standby: &LocalCluster, primary: &TestDb<'_>) {
    let at = primary.psql("SELECT pg_current_wal_lsn()");
    let replayed = format!("SELECT pg_last_wal_replay_lsn() >= '{at}'");
    wait_until(WAIT, "the standby replayed the primary's WAL", || async {
        (psql_url(&standby.url("postgres"), &replayed) == "t").then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn after_a_promotion_walhook_continues_on_the_synchronised_slot_with_nothing_lost() {
    let major = Cluster::shared().major();
    if major < 17 {
        eprintln!("skipped: failover slots need PostgreSQL 17 or later, this is {major}");
        return;
    }
    let primary = Cluster::start(ClusterOptions {
        prefix: "walhook-primary",
        ..Default::default()
    });
    let db = primary.database();
    let receiver = Receiver::start().await;
    routed_table(&db, "accounts", "account", ", name text");
    subscribe(&db, &receiver.url(), "", "");

    let standby = primary
        .start_standby(&StandbyOptions {
            physical_slot: STANDBY_SLOT.into(),
            dbname: db.name.clone(),
            extra_conf: vec!["sync_replication_slots = on".into()],
            ..Default::default()
        })
        .unwrap_or_else(|e| panic!("{e}"));
    // ALTER SYSTEM runs alone, outside a transaction block
    db.psql(&format!(
        "ALTER SYSTEM SET synchronized_standby_slots = '{STANDBY_SLOT}'"
    ));
    db.psql("SELECT pg_reload_conf()");

    let mut walhook = streaming_with_failover(&db.url(), &db);
    let started = Instant::now();
    let never_hung = started..started;
    insert_each(&db.url(), &IN_STEP);
    wait_answered(&receiver, &never_hung, IN_STEP).await;
    let status = status_text(&db.url(), &db.slot);
    assert!(
        status.contains(&format!(
            "failover       yes (synchronised: changes reach walhook only once the standbys of '{STANDBY_SLOT}' have them)"
        )),
        "{status}"
    );
    let stored_up_to = db.psql("SELECT max(commit_lsn) FROM walhook.events");
    wait_synced(&standby, &db, &stored_up_to).await;
    let status = status_text(&standby.url(&db.name), &db.slot);
    assert!(
        status.contains("failover       yes (this is a standby's synchronised copy)"),
        "{status}"
    );

    // the receiver hangs, so none of the next rows is delivered, and walhook
    // is killed once their first delivery has begun
    let hang_from = Instant::now();
    receiver.set_default(Reply::Hang);
    insert_each(&db.url(), &KILLED_DURING);
    wait_until(WAIT, "a delivery of the next rows begun", || async {
        receiver
            .received()
            .iter()
            .any(|r| r.at > hang_from)
            .then_some(())
    })
    .await;
    walhook.kill_9();
    // written while walhook is down: only the slot has them
    insert_each(&db.url(), &WHILE_DOWN);

    // the failover: the primary goes, the standby is promoted
    wait_replayed(&standby, &db).await;
    primary.stop();
    standby.promote().unwrap_or_else(|e| panic!("{e}"));
    receiver.set_default(Reply::Status(204));
    let hung = hang_from..Instant::now();
    assert!(
        answered_ids(&receiver, &hung).is_disjoint(&KILLED_DURING.collect()),
        "none of the rows written before the kill was delivered"
    );
    let new_primary = standby.url(&db.name);
    // what walhook finds there: the standby's copy (still marked synced),
    // in step at least up to the rows delivered before, at or behind the
    // position walhook recorded, on the same system
    let found = psql_url(
        &new_primary,
        &format!(
            "SELECT s.synced, s.confirmed_flush_lsn >= '{stored_up_to}',
                    s.confirmed_flush_lsn <= i.confirmed_lsn,
                    i.system_identifier = (SELECT system_identifier::text FROM pg_control_system())
               FROM pg_replication_slots s JOIN walhook.slot_identity i USING (slot_name)
              WHERE slot_name = '{}'",
            db.slot
        ),
    );
    assert_eq!(
        found, "t|t|t|t",
        "synced, in step, behind the record, same system"
    );
    let mut walhook = streaming_with_failover(&new_primary, &db);
    let log = walhook.log();
    let refusals = [
        "is not the slot walhook consumed",
        "is gone",
        "was invalidated",
        "created replication slot",
    ];
    assert!(
        walhook.is_running() && !refusals.iter().any(|r| log.contains(r)),
        "walhook streams the synchronised slot as the one it recorded:\n{log}"
    );
    wait_answered(
        &receiver,
        &hung,
        IN_STEP.chain(KILLED_DURING).chain(WHILE_DOWN),
    )
    .await;
    // and goes on streaming on the new primary
    let after = 5000..=5000;
    insert_each(&new_primary, &after);
    wait_answered(&receiver, &hung, after).await;
    assert_eq!(
        psql_url(
            &new_primary,
            "SELECT recreations, lost_wal_bytes FROM walhook.slot_identity"
        ),
        "0|0",
        "nothing declared lost"
    );
    assert!(walhook.is_running(), "{}", walhook.log());
    walhook.signal(libc::SIGTERM);
    let exit = walhook.wait_exit(WAIT).expect("walhook stops");
    assert!(exit.success(), "{}", walhook.log());
}
