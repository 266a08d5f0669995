//! `sql/schema.sql` is the schema the migrations build, as one file to read:
//! this test migrates a fresh database, dumps the walhook schema and compares.
//! After adding a migration, regenerate the file with
//! `WALHOOK_WRITE_SCHEMA=1 cargo test --test it schema::`.

use std::process::Command;

use crate::support::cluster::pg_bin;
use crate::support::{Cluster, migrate};

const SCHEMA_PATH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/sql/schema.sql");

const HEADER: &str = "\
-- The walhook schema as sql/migrations/ build it, generated: do not edit.
-- Read it to see the tables, functions and triggers as they are now; change
-- them with a new migration, then regenerate this file with
--   WALHOOK_WRITE_SCHEMA=1 cargo test --test it schema::
-- (the test schema::schema_sql_is_what_the_migrations_build fails until then).
-- Comments on tables and columns are kept; the migrations say why, as of
-- their time. Where the code has moved on since: 0004 says first attempts'
-- delivery rows are inserted already leased; since 0010 a first attempt's
-- row is written once, with its outcome, and the event's `owed` column holds
-- the obligation until then (README, Guarantees and how they are kept).
";

/// `pg_dump --schema-only` of the walhook schema, without the dump's
/// version-specific preamble (SET lines, its own comments, blank runs).
fn dump(url: &str) -> String {
    let out = Command::new(pg_bin("pg_dump"))
        .args([
            "--schema-only",
            "--schema=walhook",
            "--no-owner",
            "--no-privileges",
            "--dbname",
            url,
        ])
        .output()
        .expect("run pg_dump");
    assert!(
        out.status.success(),
        "pg_dump failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).expect("pg_dump writes UTF-8");
    let mut kept = String::new();
    let mut blank = true;
    for line in text.lines() {
        let preamble = line.starts_with("SET ")
            || line.starts_with("SELECT pg_catalog.set_config")
            || line.starts_with("--")
            || line.starts_with("\\restrict")
            || line.starts_with("\\unrestrict");
        if preamble {
            continue;
        }
        if line.trim().is_empty() {
            if !blank {
                kept.push('\n');
            }
            blank = true;
            continue;
        }
        blank = false;
        kept.push_str(line);
        kept.push('\n');
    }
    kept
}

#[tokio::test]
async fn schema_sql_is_what_the_migrations_build() {
    let cluster = Cluster::shared();
    if cluster.major() != 15 {
        // pg_dump's output differs between majors; the file is written by 15
        eprintln!("skipped: sql/schema.sql is generated with PostgreSQL 15");
        return;
    }
    let db = cluster.database();
    migrate(&db.url());
    let generated = format!("{HEADER}\n{}", dump(&db.url()));
    if std::env::var_os("WALHOOK_WRITE_SCHEMA").is_some() {
        std::fs::write(SCHEMA_PATH, &generated).expect("write sql/schema.sql");
        return;
    }
    let stored = std::fs::read_to_string(SCHEMA_PATH).unwrap_or_default();
    assert!(
        stored == generated,
        "sql/schema.sql is not what the migrations build: regenerate it with \
         WALHOOK_WRITE_SCHEMA=1 cargo test --test it schema:: (first differing line: {:?})",
        stored
            .lines()
            .zip(generated.lines())
            .find(|(a, b)| a != b)
            .map(|(a, b)| format!("file {a:?}, migrations {b:?}"))
    );
}

/// A pending delivery is in the index that keeps an `ordered` subscription's
/// deliveries in order exactly when its subscription is ordered: set by
/// walhook on insert, by the subscription's change, and when a finished
/// delivery becomes pending again.
#[tokio::test]
async fn pending_deliveries_follow_their_subscriptions_ordered_flag() {
    let db = Cluster::shared().database();
    crate::support::items_table(&db, "");
    let webhook = crate::support::subscribe(&db, "https://r.example/h", "", "");
    let webhook = webhook.trim();
    db.psql(&format!(
        "INSERT INTO walhook.events (id, type, apiresource, revision, commit_lsn, commit_time, body)
         SELECT gen_random_uuid(), 'item.updated', '/items/1', n, ('0/' || n * 16)::pg_lsn, now(), '{{}}'
           FROM generate_series(1, 3) n;
         INSERT INTO walhook.deliveries (event_id, subscription_id, apiresource, commit_lsn, status)
         SELECT id, '{webhook}', apiresource, commit_lsn,
                CASE WHEN revision = 3 THEN 'failed' ELSE 'pending' END
           FROM walhook.events"
    ));
    let flags = || {
        db.psql(
            "SELECT string_agg(status || ':' || ordered, ' ' ORDER BY commit_lsn)
               FROM walhook.deliveries",
        )
    };
    assert_eq!(flags(), "pending:false pending:false failed:false");
    db.psql(&format!(
        "UPDATE walhook.subscriptions SET ordered = true WHERE id = '{webhook}'"
    ));
    assert_eq!(
        flags(),
        "pending:true pending:true failed:false",
        "the pending ones join the order"
    );
    db.psql("UPDATE walhook.deliveries SET status = 'pending' WHERE status = 'failed'");
    assert_eq!(
        flags(),
        "pending:true pending:true pending:true",
        "a requeued one takes the subscription's flag"
    );
    db.psql(&format!(
        "UPDATE walhook.subscriptions SET ordered = false WHERE id = '{webhook}'"
    ));
    assert_eq!(flags(), "pending:false pending:false pending:false");
    let plan = db.psql(
        "SET enable_seqscan = off; SET enable_bitmapscan = off;
         EXPLAIN SELECT 1 FROM walhook.deliveries
          WHERE subscription_id = gen_random_uuid() AND apiresource = '/items/1'
            AND status = 'pending' AND ordered AND (commit_lsn, seq) < ('0/30'::pg_lsn, 0)",
    );
    assert!(plan.contains("deliveries_ordered_idx"), "{plan}");
}
