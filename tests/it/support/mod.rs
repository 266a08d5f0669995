//! Shared test support: throwaway PostgreSQL clusters, the walhook process, a
//! test receiver, polling helpers and the fixtures most modules share (a
//! routed `items` table, a subscription), for every module of the test binary.

pub mod api;
pub mod cluster;
pub mod fake_peer;
pub mod process;
pub mod python;
pub mod receiver;
pub mod refusals;
pub mod waits;

pub use cluster::{Cluster, ClusterOptions, TestDb};
pub use process::{ChildProcess, migrate, walhook, walhook_run, walhook_streaming};
pub use receiver::Receiver;
pub use refusals::assert_refused;
pub use waits::{
    no_more_events, nothing_happens_for, wait_events, wait_lock_waiter, wait_scalar_at_least,
    wait_scalar_eq, wait_until, wait_until_or,
};

/// Every event name of the IAM example's vocabulary (issue 12),
/// which `sql/examples/iam.sql` must produce.
pub const IAM_VOCABULARY: &[&str] = &[
    "user.created",
    "user.updated",
    "user.deleted",
    "user.bulk_deleted",
    "user.role.assigned",
    "user.role.unassigned",
    "user.credentials.deleted",
    "auth.reset_password",
    "client.created",
    "client.updated",
    "client.deleted",
    "client.role.created",
    "client.role.updated",
    "redirect_uri.created",
    "redirect_uri.updated",
    "redirect_uri.deleted",
    "role.created",
    "role.updated",
    "role.deleted",
    "role.permission.updated",
    "realm.created",
    "realm.updated",
    "realm.deleted",
    "realm.settings.updated",
];

/// `(type, apiresource, body)` of the stored events in WAL order; an event
/// without a body has its error (a JSON string) in its place.
pub async fn stored_events(db: &TestDb<'_>) -> Vec<(String, String, serde_json::Value)> {
    db.client()
        .await
        .query(
            "SELECT type, apiresource, coalesce(body::text, to_json(error)::text)
               FROM walhook.events ORDER BY commit_lsn, created_at, revision",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| {
            (
                r.get(0),
                r.get(1),
                serde_json::from_str(r.get::<_, &str>(2)).unwrap(),
            )
        })
        .collect()
}

/// Insert a subscription retrying every 10 ms (three retries), with extra
/// columns and values (each list starting with a comma); returns its id.
pub fn subscribe(db: &TestDb<'_>, url: &str, extra_cols: &str, extra_vals: &str) -> String {
    db.psql(&format!(
        "INSERT INTO walhook.subscriptions (url, retry_schedule{extra_cols})
         VALUES ('{url}', '{{10ms,10ms,10ms}}'{extra_vals}) RETURNING id"
    ))
}

/// Deliveries of stored events without a row yet, as `walhook status`
/// counts them: owed from memory (from the mark on), or deferred while their
/// subscription was slow or failing.
pub async fn without_a_row(db: &TestDb<'_>) -> i64 {
    let client = db.client().await;
    walhook::store::obligations::owed_without_row(&client, &db.slot)
        .await
        .unwrap()
        + walhook::store::deferrals::backlog(&client).await.unwrap()
}

/// The first column of `sql`'s one row, as an `i64` (a `count(*)`, or any
/// integer cast to `int8`).
pub async fn scalar(db: &TestDb<'_>, sql: &str) -> i64 {
    db.client()
        .await
        .query_one(sql, &[])
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .get(0)
}

/// Migrate `db`, allow loopback receivers, and [`route_items`].
pub fn items_table(db: &TestDb<'_>, columns: &str) {
    routed_table(db, "items", "item", columns);
}

/// In a migrated `db`, a table `items (id int PRIMARY KEY<columns>)` routed
/// as `item` events at `/items/{id}`; `columns` is empty or starts with a
/// comma.
pub fn route_items(db: &TestDb<'_>, columns: &str) {
    route_table(db, "items", "item", columns);
}

/// Migrate `db`, allow loopback receivers, and [`route_table`].
pub fn routed_table(db: &TestDb<'_>, table: &str, resource: &str, columns: &str) {
    migrate(&db.url());
    db.psql("INSERT INTO walhook.settings VALUES ('allow_insecure_targets', 'true')");
    route_table(db, table, resource, columns);
}

/// In a migrated `db`, a table `<table> (id int PRIMARY KEY<columns>)`
/// routed as `<resource>` events at `/<table>/{id}`; `columns` is empty or
/// starts with a comma.
pub fn route_table(db: &TestDb<'_>, table: &str, resource: &str, columns: &str) {
    db.psql(&format!(
        "CREATE TABLE {table} (id int PRIMARY KEY{columns});
         INSERT INTO walhook.routes (source_table, resource, apiresource)
              VALUES ('{table}', '{resource}', '/{table}/{{id}}');"
    ));
}
