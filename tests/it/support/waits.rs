//! Waiting in tests: on a condition (never a fixed sleep), for stored events,
//! for a session blocked on a lock, and the negative check that nothing
//! happens for a while.

use std::fmt::Debug;
use std::future::Future;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{TestDb, scalar, stored_events};

/// How often a wait checks its condition.
const POLL: Duration = Duration::from_millis(100);

/// How long the waits below give walhook (a debug build on a shared machine).
const WAIT: Duration = Duration::from_secs(120);

/// Poll `check` until it returns Some or `timeout` passes.
pub async fn wait_until<T, F, Fut>(timeout: Duration, what: &str, check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    wait_until_or(timeout, what, check, String::new).await
}

/// [`wait_until`], and on timeout the panic message ends with `explain()`
/// (the state that says why, read only then).
pub async fn wait_until_or<T, F, Fut>(
    timeout: Duration,
    what: &str,
    mut check: F,
    explain: impl FnOnce() -> String,
) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        if Instant::now() > deadline {
            panic!(
                "timed out after {timeout:?} waiting for {what}\n{}",
                explain()
            );
        }
        tokio::time::sleep(POLL).await;
    }
}

/// The negative check: poll `happened` for `quiet`, and panic naming `what`
/// if it ever returns Some. Use it where the claim is that something does not
/// come (a request, an event); wait with [`wait_until`] for what does.
pub async fn nothing_happens_for<T, F, Fut>(quiet: Duration, what: &str, mut happened: F)
where
    T: Debug,
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + quiet;
    loop {
        if let Some(v) = happened().await {
            panic!("{what} within {quiet:?}: {v:?}");
        }
        if Instant::now() > deadline {
            return;
        }
        tokio::time::sleep(POLL.min(quiet / 4)).await;
    }
}

/// Wait up to `timeout` until `sql`'s [`scalar`] is exactly `want`.
pub async fn wait_scalar_eq(db: &TestDb<'_>, timeout: Duration, what: &str, sql: &str, want: i64) {
    wait_until_or(
        timeout,
        what,
        || async { (scalar(db, sql).await == want).then_some(()) },
        || format!("{sql} is not {want}"),
    )
    .await;
}

/// Wait up to `timeout` until `sql`'s [`scalar`] is at least `n`; returns it.
pub async fn wait_scalar_at_least(
    db: &TestDb<'_>,
    timeout: Duration,
    what: &str,
    sql: &str,
    n: i64,
) -> i64 {
    wait_until(timeout, what, || async {
        let now = scalar(db, sql).await;
        (now >= n).then_some(now)
    })
    .await
}

/// Wait until at least `n` events are stored; then the stored events, as
/// [`stored_events`] reads them (WAL order).
pub async fn wait_events(db: &TestDb<'_>, n: i64) -> Vec<(String, String, Value)> {
    wait_scalar_at_least(
        db,
        WAIT,
        &format!("{n} stored events"),
        "SELECT count(*) FROM walhook.events",
        n,
    )
    .await;
    stored_events(db).await
}

/// Wait until a session of `db`'s cluster waits for a lock: a row of
/// `pg_locks` not granted and matching `filter` (SQL on its columns, as
/// `pid = 4242` or `relation = 'walhook.delivery_attempts'::regclass`).
pub async fn wait_lock_waiter(db: &TestDb<'_>, filter: &str) {
    let sql = format!("SELECT count(*) FROM pg_locks WHERE NOT granted AND ({filter})");
    let what = format!("a session waiting for a lock ({filter})");
    wait_scalar_at_least(db, WAIT, &what, &sql, 1).await;
}

/// The negative check on events: no more than `n` are stored for `quiet`.
pub async fn no_more_events(db: &TestDb<'_>, n: i64, quiet: Duration) {
    nothing_happens_for(quiet, &format!("more than {n} stored events"), || async {
        let stored = scalar(db, "SELECT count(*) FROM walhook.events").await;
        (stored > n).then_some(stored)
    })
    .await;
}
