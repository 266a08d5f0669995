//! CDC core against a real PostgreSQL: typed values, every operation, TOAST,
//! and the daemon's handling of a table altered mid-stream.

use crate::support::{Cluster, TestDb, items_table, migrate, wait_events, walhook_streaming};
use serde_json::{Value, json};

/// Migrate, create `sql`'s tables, route `table` with `{*}` payload.
fn prepare(db: &TestDb<'_>, sql: &str, table: &str, apiresource: &str) {
    migrate(&db.url());
    db.psql(sql);
    db.psql(&format!(
        "INSERT INTO walhook.routes (source_table, resource, apiresource) VALUES ('{table}', 'item', '{apiresource}')"
    ));
}

#[tokio::test(flavor = "multi_thread")]
async fn every_type_round_trips_into_its_json_value() {
    let db = Cluster::shared().new_database();
    prepare(
        &db,
        "CREATE TABLE typed (id int PRIMARY KEY, i2 int2, i8 int8, f4 float4, f8 float8,
            n numeric, b bool, t text, v varchar(10), u uuid, j json, jb jsonb, d date,
            ts timestamp, tstz timestamptz, by bytea, ai int[], at text[], nul text)",
        "typed",
        "/typed/{id}",
    );
    let mut walhook = walhook_streaming(&db);
    db.psql(
        "INSERT INTO typed VALUES (1, -2, 9007199254740993, 1.5, 2.25, 12.50, true, 'tëxt', 'vc',
            '79b34d52-125b-4e5a-8b69-db93e737aa78', '{\"a\": [1, null]}', '{\"b\": {\"c\": true}}',
            '2024-12-12', '2024-12-12 17:32:57.57', '2024-12-12 17:32:57.57+02', '\\x0102ff',
            '{1,2,NULL}', '{\"a b\",\"c,d\",NULL}', NULL)",
    );
    let events = wait_events(&db, 1).await;
    let (kind, _, body) = &events[0];
    assert_eq!(kind, "item.created");
    assert_eq!(body["apiresource"], json!("/typed/1"));
    let row = &body["resourcepayload"];
    assert_eq!(
        row,
        &json!({
            "id": 1, "i2": -2, "i8": 9007199254740993i64, "f4": 1.5, "f8": 2.25, "n": 12.5,
            "b": true, "t": "tëxt", "v": "vc", "u": "79b34d52-125b-4e5a-8b69-db93e737aa78",
            "j": {"a": [1, null]}, "jb": {"b": {"c": true}}, "d": "2024-12-12",
            "ts": "2024-12-12T17:32:57.570Z", "tstz": "2024-12-12T15:32:57.570Z",
            "by": "AQL/", "ai": [1, 2, null], "at": ["a b", "c,d", null], "nul": null
        })
    );
    let ts = body["updatetimestamp"].as_str().unwrap();
    assert!(
        ts.ends_with('Z') && ts.len() == "2024-12-12T17:38:03.850Z".len(),
        "{ts}"
    );
    assert!(walhook.is_running());
}

#[tokio::test(flavor = "multi_thread")]
async fn operations_transactions_and_altered_tables() {
    let db = Cluster::shared().new_database();
    items_table(&db, ", name text");
    let _walhook = walhook_streaming(&db);
    db.psql("INSERT INTO items VALUES (1, 'one')");
    db.psql("UPDATE items SET name = 'uno' WHERE id = 1");
    db.psql("BEGIN; INSERT INTO items VALUES (2, 'two'); INSERT INTO items VALUES (3, 'three'); DELETE FROM items WHERE id = 2; COMMIT");
    db.psql("BEGIN; INSERT INTO items VALUES (9, 'rolled back'); ROLLBACK");
    db.psql("DELETE FROM items WHERE id = 1");
    db.psql("ALTER TABLE items ADD COLUMN colour text DEFAULT 'red'");
    db.psql("INSERT INTO items (id, name) VALUES (4, 'four')");
    db.psql("TRUNCATE items");
    db.psql("INSERT INTO items (id, name, colour) VALUES (5, 'five', 'blue')");
    let events = wait_events(&db, 7).await;
    let kinds: Vec<(&str, &Value)> = events
        .iter()
        .map(|(k, _, b)| (k.as_str(), &b["resourcepayload"]))
        .collect();
    assert_eq!(
        kinds,
        vec![
            ("item.created", &json!({"id": 1, "name": "one"})),
            ("item.updated", &json!({"id": 1, "name": "uno"})),
            ("item.created", &json!({"id": 2, "name": "two"})),
            ("item.created", &json!({"id": 3, "name": "three"})),
            ("item.deleted", &json!({"id": 2, "name": "two"})),
            ("item.deleted", &json!({"id": 1, "name": "uno"})),
            (
                "item.created",
                &json!({"id": 4, "name": "four", "colour": "red"})
            ),
            (
                "item.created",
                &json!({"id": 5, "name": "five", "colour": "blue"})
            ),
        ][..events.len().min(8)]
    );
    let events = wait_events(&db, 8).await;
    assert_eq!(
        events.len(),
        8,
        "rolled-back and truncated rows yield no events"
    );
    // the three changes of one transaction share one commit time
    let times: Vec<&Value> = events[2..5]
        .iter()
        .map(|(_, _, b)| &b["updatetimestamp"])
        .collect();
    assert!(times.iter().all(|t| *t == times[0]));
    // revisions grow
    let revs: Vec<i64> = events
        .iter()
        .map(|(_, _, b)| b["revision"].as_i64().unwrap())
        .collect();
    assert!(revs.windows(2).all(|w| w[0] < w[1]), "{revs:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn unchanged_toast_values_are_filled_from_the_old_row() {
    let db = Cluster::shared().new_database();
    prepare(
        &db,
        "CREATE TABLE docs (id int PRIMARY KEY, title text, content text);
         ALTER TABLE docs ALTER COLUMN content SET STORAGE EXTERNAL",
        "docs",
        "/docs/{id}",
    );
    let _walhook = walhook_streaming(&db);
    db.psql(
        "INSERT INTO docs SELECT 1, 'first', string_agg(md5(i::text), '') FROM generate_series(1, 3200) i",
    );
    db.psql("UPDATE docs SET title = 'second' WHERE id = 1");
    let events = wait_events(&db, 2).await;
    let expected: String = db.psql("SELECT content FROM docs WHERE id = 1");
    assert_eq!(expected.len(), 102_400);
    let (kind, _, body) = &events[1];
    assert_eq!(kind, "item.updated");
    assert_eq!(body["resourcepayload"]["title"], json!("second"));
    assert_eq!(body["resourcepayload"]["content"], json!(expected));
}
