//! The references of the delivery tables (migration 0009): deliveries refer
//! to an event and a subscription, attempts to a delivery. Checked by
//! statement-level triggers instead of foreign keys, they must keep what the
//! keys guaranteed: no row refers to a missing one, concurrent deletes wait
//! or fail as they did, and deleting the rows referred to deletes the rows
//! referring to them.

use tokio_postgres::error::SqlState;

use crate::support::{Cluster, TestDb, assert_refused, migrate, wait_lock_waiter};

const SUBSCRIPTION: &str = "00000000-0000-0000-0000-00000000000a";
const OTHER_SUBSCRIPTION: &str = "00000000-0000-0000-0000-00000000000b";

fn event_sql(id: u32) -> String {
    format!(
        "INSERT INTO walhook.events (id, type, apiresource, revision, commit_lsn, commit_time, body)
         VALUES ('00000000-0000-0000-0000-{id:012}', 'organisation.created', '/organisations/{id}',
                 1, '0/1', now(), '{{}}');"
    )
}

fn delivery_sql(event: u32, subscription: &str) -> String {
    format!(
        "INSERT INTO walhook.deliveries (event_id, subscription_id, apiresource, commit_lsn)
         VALUES ('00000000-0000-0000-0000-{event:012}', '{subscription}', '/organisations/{event}', '0/1');"
    )
}

/// Two subscriptions, events 1-3, a delivery of each event to each
/// subscription, and one attempt per delivery.
fn seed(db: &TestDb<'_>) {
    migrate(&db.url());
    db.psql(&format!(
        "INSERT INTO walhook.subscriptions (id, url) VALUES
             ('{SUBSCRIPTION}', 'https://receiver.example/a'),
             ('{OTHER_SUBSCRIPTION}', 'https://receiver.example/b');
         {} {} {}
         {} {} {} {} {} {}
         INSERT INTO walhook.delivery_attempts (delivery_id, attempt, attempted_at, duration_ms)
         SELECT id, 1, now(), 1 FROM walhook.deliveries;",
        event_sql(1),
        event_sql(2),
        event_sql(3),
        delivery_sql(1, SUBSCRIPTION),
        delivery_sql(2, SUBSCRIPTION),
        delivery_sql(3, SUBSCRIPTION),
        delivery_sql(1, OTHER_SUBSCRIPTION),
        delivery_sql(2, OTHER_SUBSCRIPTION),
        delivery_sql(3, OTHER_SUBSCRIPTION),
    ));
}

fn counts(db: &TestDb<'_>) -> (String, String) {
    (
        db.psql("SELECT count(*) FROM walhook.deliveries"),
        db.psql("SELECT count(*) FROM walhook.delivery_attempts"),
    )
}

#[test]
fn rows_referring_to_missing_rows_are_refused() {
    let db = Cluster::shared().new_database();
    seed(&db);
    for (sql, names) in [
        (delivery_sql(9, SUBSCRIPTION), "event 00000000-0000-0000-0000-000000000009"),
        (
            delivery_sql(1, "00000000-0000-0000-0000-0000000000ff"),
            "subscription 00000000-0000-0000-0000-0000000000ff",
        ),
        (
            "INSERT INTO walhook.delivery_attempts (delivery_id, attempt, attempted_at, duration_ms)
             VALUES (424242, 1, now(), 1)"
                .to_owned(),
            "delivery 424242",
        ),
        (
            "UPDATE walhook.deliveries SET event_id = '00000000-0000-0000-0000-000000000002'
              WHERE event_id = '00000000-0000-0000-0000-000000000001'"
                .to_owned(),
            "deliveries.event_id cannot change",
        ),
        (
            "UPDATE walhook.delivery_attempts SET delivery_id = delivery_id + 1".to_owned(),
            "delivery_attempts.delivery_id cannot change",
        ),
    ] {
        assert_refused(&db, &sql, names);
    }
    // one missing row refuses the whole statement
    assert_refused(
        &db,
        &format!(
            "INSERT INTO walhook.deliveries (event_id, subscription_id, apiresource, commit_lsn)
             SELECT e.id, '{OTHER_SUBSCRIPTION}', 'x', '0/1'
               FROM (VALUES ('00000000-0000-0000-0000-000000000004'::uuid),
                            ('00000000-0000-0000-0000-000000000009'::uuid)) e(id)"
        ),
        "does not exist",
    );
    assert_eq!(counts(&db), ("6".to_owned(), "6".to_owned()));
}

#[test]
fn deleting_or_truncating_takes_the_rows_referring_along() {
    let db = Cluster::shared().new_database();
    seed(&db);
    db.psql("DELETE FROM walhook.events WHERE id = '00000000-0000-0000-0000-000000000001'");
    assert_eq!(counts(&db), ("4".to_owned(), "4".to_owned()));
    db.psql(&format!(
        "DELETE FROM walhook.subscriptions WHERE id = '{SUBSCRIPTION}'"
    ));
    assert_eq!(counts(&db), ("2".to_owned(), "2".to_owned()));
    assert_eq!(
        db.psql("SELECT DISTINCT subscription_id FROM walhook.deliveries"),
        OTHER_SUBSCRIPTION
    );
    db.psql(
        "DELETE FROM walhook.deliveries WHERE event_id = '00000000-0000-0000-0000-000000000002'",
    );
    assert_eq!(counts(&db), ("1".to_owned(), "1".to_owned()));
    db.psql("TRUNCATE walhook.events");
    assert_eq!(counts(&db), ("0".to_owned(), "0".to_owned()));
}

async fn backend_pid(client: &tokio_postgres::Client) -> i32 {
    client
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0)
}

#[tokio::test]
async fn a_delete_and_an_insert_at_once_wait_for_each_other_as_a_foreign_key_does() {
    let db = Cluster::shared().new_database();
    seed(&db);
    let (mut inserter, deleter) = (db.client().await, db.client().await);
    let (inserter_pid, deleter_pid) = (backend_pid(&inserter).await, backend_pid(&deleter).await);

    // an insert in flight holds its event: the delete waits, then takes the
    // new delivery along
    let insert = inserter.transaction().await.unwrap();
    insert
        .batch_execute(&format!("{} {}", event_sql(4), event_sql(5)))
        .await
        .unwrap();
    insert.commit().await.unwrap();
    let insert = inserter.transaction().await.unwrap();
    insert
        .batch_execute(&delivery_sql(4, SUBSCRIPTION))
        .await
        .unwrap();
    let delete = tokio::spawn(async move {
        deleter
            .batch_execute(
                "DELETE FROM walhook.events WHERE id = '00000000-0000-0000-0000-000000000004'",
            )
            .await
            .unwrap();
        deleter
    });
    wait_lock_waiter(&db, &format!("pid = {deleter_pid}")).await;
    assert!(!delete.is_finished(), "the delete waits for the insert");
    insert.commit().await.unwrap();
    let mut deleter = delete.await.unwrap();
    assert_eq!(counts(&db), ("6".to_owned(), "6".to_owned()));

    // a delete in flight: the insert waits, then finds its event gone
    let delete = deleter.transaction().await.unwrap();
    delete
        .batch_execute(
            "DELETE FROM walhook.events WHERE id = '00000000-0000-0000-0000-000000000005'",
        )
        .await
        .unwrap();
    let insert =
        tokio::spawn(async move { inserter.batch_execute(&delivery_sql(5, SUBSCRIPTION)).await });
    wait_lock_waiter(&db, &format!("pid = {inserter_pid}")).await;
    assert!(!insert.is_finished(), "the insert waits for the delete");
    delete.commit().await.unwrap();
    let error = insert.await.unwrap().expect_err("its event is gone");
    assert_eq!(
        error.code(),
        Some(&SqlState::FOREIGN_KEY_VIOLATION),
        "{error}"
    );
    assert_eq!(counts(&db), ("6".to_owned(), "6".to_owned()));
}
