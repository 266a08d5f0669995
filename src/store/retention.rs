//! Retention: old events and attempts are deleted in small batches.
//!
//! Batched deletes (not partitions) keep the schema plain for operators who
//! query it; each statement removes at most [`BATCH`] rows, so locks stay short
//! and autovacuum keeps the tables from bloating. Events with a pending
//! delivery are never removed, whatever their age, nor events whose
//! deliveries from memory may still lack a row (owed, at or past the mark of
//! `store::obligations`), nor events whose deferred deliveries may still lack
//! a row (past their subscription's position in `walhook.deferrals`): their
//! delivery is undetermined. The audit log is kept forever unless the
//! `audit_retention` setting names an interval.

use tokio_postgres::Client;
use tokio_postgres::types::ToSql;

use super::settings::Settings;

/// Rows per delete statement.
pub const BATCH: i64 = 5_000;

/// Delete attempts and events past retention. Returns (events, attempts) removed.
pub async fn sweep(
    client: &Client,
    settings: &Settings,
) -> Result<(u64, u64), tokio_postgres::Error> {
    // an infinite retention (PostgreSQL 17's 'infinity') keeps everything:
    // a century is as good and stays inside `interval`'s range
    const CENTURY: f64 = 100.0 * 365.25 * 86_400.0;
    let attempt_secs = settings.attempt_retention.as_secs_f64().min(CENTURY);
    let event_secs = settings.event_retention.as_secs_f64().min(CENTURY);
    let attempts = delete_in_batches(
        client,
        "DELETE FROM walhook.delivery_attempts WHERE id IN (
             SELECT id FROM walhook.delivery_attempts
              WHERE attempted_at < now() - make_interval(secs => $1) LIMIT $2)",
        &[&attempt_secs, &BATCH],
    )
    .await?;
    let events = delete_in_batches(
        client,
        "DELETE FROM walhook.events WHERE id IN (
             SELECT e.id FROM walhook.events e
              WHERE e.commit_time < now() - make_interval(secs => $1)
                AND NOT EXISTS (SELECT 1 FROM walhook.deliveries d
                                 WHERE d.event_id = e.id AND d.status = 'pending')
                AND (e.owed IS NULL
                     OR e.commit_lsn < (SELECT min(materialised_lsn)
                                          FROM walhook.delivery_marks))
                AND (e.deferred IS NULL
                     OR NOT EXISTS (SELECT 1 FROM walhook.deferrals f
                                     WHERE f.subscription_id = ANY (e.deferred)
                                       AND (e.commit_lsn, e.seq, e.id)
                                           > (f.after_lsn, f.after_seq, f.after_id)))
              LIMIT $2)",
        &[&event_secs, &BATCH],
    )
    .await?;
    let audit = sweep_audit(client).await?;
    if audit > 0 {
        tracing::info!(audit, "retention removed old audit log rows");
    }
    Ok((events, attempts))
}

/// Delete audit rows older than `audit_retention`; none when that setting is
/// absent or `forever` (the default). Returns the rows removed.
pub async fn sweep_audit(client: &Client) -> Result<u64, tokio_postgres::Error> {
    delete_in_batches(
        client,
        "DELETE FROM walhook.audit_log WHERE id IN (
             SELECT id FROM walhook.audit_log
              WHERE at < now() - (SELECT value::interval FROM walhook.settings
                                   WHERE key = 'audit_retention' AND value <> 'forever')
              LIMIT $1)",
        &[&BATCH],
    )
    .await
}

/// Run `delete` (which removes at most [`BATCH`] rows) until it removes
/// fewer; the rows removed in all.
async fn delete_in_batches(
    client: &Client,
    delete: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<u64, tokio_postgres::Error> {
    let mut removed = 0;
    loop {
        let n = client.execute(delete, params).await?;
        removed += n;
        if n < BATCH as u64 {
            return Ok(removed);
        }
    }
}
