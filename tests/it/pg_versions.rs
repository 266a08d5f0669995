//! What differs by PostgreSQL major (docs/postgres-versions.md), tested on
//! whichever server `PG_BIN` chose: `.ci/run` runs this module on 15, 16, 17
//! and 18, and each test checks the behaviour of the major it finds.

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::{
    Cluster, ClusterOptions, TestDb, items_table, migrate, route_table, wait_events, wait_until,
    walhook_run, walhook_streaming,
};

const WAIT: Duration = Duration::from_secs(60);

/// Before 17 `'infinity'` is no interval at all: PostgreSQL refuses the text.
const NO_INFINITE_INTERVAL: &str = "invalid input syntax for type interval";

fn refused(db: &TestDb<'_>, sql: &str) -> String {
    db.try_psql(sql)
        .expect_err(&format!("refused: {sql}"))
        .to_string()
}

/// 17's infinite intervals: a retry step must be finite (refused by name),
/// an infinite retention keeps everything; before 17 both are refused, the
/// step by the interval type, the setting by its rule.
#[tokio::test(flavor = "multi_thread")]
async fn infinite_intervals_are_refused_as_retry_steps_and_keep_everything_as_retention() {
    let db = Cluster::shared().new_database();
    migrate(&db.url());
    db.psql("INSERT INTO walhook.settings VALUES ('allow_insecure_targets', 'true')");
    let major = db.cluster.major();
    for step in ["infinity", "-infinity"] {
        let err = refused(
            &db,
            &format!(
                "INSERT INTO walhook.subscriptions (url, retry_schedule)
                 VALUES ('http://127.0.0.1:9/h', '{{5s,{step}}}')"
            ),
        );
        let want = if major >= 17 {
            "retry_schedule rule finite"
        } else {
            NO_INFINITE_INTERVAL
        };
        assert!(err.contains(want), "PostgreSQL {major}, step {step}: {err}");
    }
    let err = refused(
        &db,
        "INSERT INTO walhook.settings VALUES ('event_retention', '-infinity')",
    );
    assert!(
        major < 17 || !err.contains(NO_INFINITE_INTERVAL),
        "PostgreSQL {major}: {err}"
    );

    let forever = "INSERT INTO walhook.settings VALUES
        ('event_retention', 'infinity'), ('attempt_retention', 'infinity'),
        ('audit_retention', 'infinity')";
    if major < 17 {
        // the setting's rule catches the bad text and names the setting
        let err = refused(&db, forever);
        assert!(
            err.contains("event_retention must be a positive interval"),
            "{err}"
        );
        return;
    }
    db.psql(forever);
    db.psql(
        "INSERT INTO walhook.events (id, type, apiresource, revision, commit_lsn, commit_time)
         VALUES (gen_random_uuid(), 'item.created', '/items/1', 1, '0/100', now() - interval '50 years');
         INSERT INTO walhook.audit_log (at, actor, action, object)
         VALUES (now() - interval '50 years', 'test', 'insert', 'settings')",
    );
    let client = db.client().await;
    let settings = walhook::store::settings::load(&client).await.unwrap();
    assert_eq!(settings.event_retention, Duration::MAX);
    assert_eq!(settings.attempt_retention, Duration::MAX);
    let (events, _) = walhook::store::retention::sweep(&client, &settings)
        .await
        .unwrap();
    assert_eq!(events, 0, "an infinite retention keeps a 50-year-old event");
    let audit: i64 = client
        .query_one(
            "SELECT count(*) FROM walhook.audit_log WHERE at < now() - interval '49 years'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(audit, 1, "an infinite audit_retention keeps the audit log");
}

/// An interval column is sent as PostgreSQL prints it, `infinity` (17+)
/// included, beside an infinite timestamp; the stream decodes the same on
/// every major (pgoutput protocol version 1).
#[tokio::test(flavor = "multi_thread")]
async fn infinite_values_reach_the_payload_as_text() {
    let db = Cluster::shared().new_database();
    migrate(&db.url());
    route_table(&db, "spans", "span", ", span interval, until timestamptz");
    let major = db.cluster.major();
    let mut walhook = walhook_streaming(&db);
    let span = if major >= 17 { "infinity" } else { "1 day" };
    db.psql(&format!(
        "INSERT INTO spans VALUES (1, '{span}', 'infinity'), (2, '-1 mons +2 days 03:00:00', '-infinity')"
    ));
    let client = db.client().await;
    let bodies: Vec<Value> = wait_until(WAIT, "2 events", || async {
        let rows = client
            .query(
                "SELECT body::text FROM walhook.events ORDER BY commit_lsn, revision",
                &[],
            )
            .await
            .unwrap();
        let bodies: Vec<Value> = rows
            .iter()
            .map(|r| serde_json::from_str(r.get::<_, &str>(0)).unwrap())
            .collect();
        (bodies.len() >= 2).then_some(bodies)
    })
    .await;
    let span = if major >= 17 { "infinity" } else { "1 day" };
    assert_eq!(
        bodies[0]["resourcepayload"],
        json!({"id": 1, "span": span, "until": "infinity"}),
        "PostgreSQL {major}"
    );
    assert_eq!(
        bodies[1]["resourcepayload"],
        json!({"id": 2, "span": "-1 mons +2 days 03:00:00", "until": "-infinity"}),
        "PostgreSQL {major}"
    );
    assert!(walhook.is_running());
}

/// 18's `idle_replication_slot_timeout`: a slot nobody streams from for
/// longer is invalidated at the next checkpoint (`invalidation_reason`
/// `idle_timeout`, `wal_status` lost, its `restart_lsn` kept, and the server's
/// error worded anew); walhook stops naming the slot, as for any invalidated
/// slot, instead of streaming or retrying. Before 18 the setting does not exist.
#[tokio::test(flavor = "multi_thread")]
async fn an_idle_timeout_on_18_invalidates_the_slot_and_walhook_stops_naming_it() {
    if Cluster::shared().major() < 18 {
        return;
    }
    let cluster = Cluster::start(ClusterOptions {
        extra_conf: vec!["idle_replication_slot_timeout = 1s".into()],
        ..Default::default()
    });
    let db = cluster.database();
    items_table(&db, "");
    let mut walhook = walhook_streaming(&db);
    db.psql("INSERT INTO items VALUES (1)");
    wait_events(&db, 1).await;
    walhook.signal(libc::SIGTERM);
    let status = walhook.wait_exit(WAIT).expect("walhook stops");
    assert!(status.success(), "{}", walhook.log());

    let slot = &db.slot;
    let state = format!(
        "SELECT wal_status, invalidation_reason, restart_lsn IS NOT NULL
           FROM pg_replication_slots WHERE slot_name = '{slot}'"
    );
    wait_until(WAIT, "the idle slot invalidated", || async {
        // pacing: a checkpoint invalidates the slot once idle past 1 s;
        // one checkpoint each half second is enough
        tokio::time::sleep(Duration::from_millis(500)).await;
        db.psql("CHECKPOINT");
        (db.psql(&state) == "lost|idle_timeout|t").then_some(())
    })
    .await;

    let mut walhook = walhook_run(&db.url(), &db.slot, &db.publication, &[]);
    let status = walhook.wait_exit(WAIT);
    let log = walhook.log();
    assert!(
        status.is_some_and(|s| !s.success()),
        "walhook stops non-zero:\n{log}"
    );
    assert!(
        log.contains(&format!("replication slot '{slot}' was invalidated")),
        "{log}"
    );
    assert!(log.contains("walhook slot recreate"), "{log}");
}
