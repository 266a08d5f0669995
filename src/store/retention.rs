//! Retention: old events and attempts are deleted in small batches.
//!
//! Batched deletes (not partitions) keep the schema plain for operators who
//! query it; each statement removes at most [`BATCH`] rows, so locks stay short
//! and autovacuum keeps the tables from bloating. Events with a pending
//! delivery are never removed, whatever their age.

use tokio_postgres::Client;

use super::settings::Settings;

/// Rows per delete statement.
pub const BATCH: i64 = 5_000;

/// Delete attempts and events past retention. Returns (events, attempts) removed.
pub async fn sweep(
    client: &Client,
    settings: &Settings,
) -> Result<(u64, u64), tokio_postgres::Error> {
    let attempt_secs = settings.attempt_retention.as_secs_f64();
    let event_secs = settings.event_retention.as_secs_f64();
    let mut attempts = 0;
    loop {
        let n = client
            .execute(
                "DELETE FROM walhook.delivery_attempts WHERE id IN (
                     SELECT id FROM walhook.delivery_attempts
                      WHERE attempted_at < now() - make_interval(secs => $1) LIMIT $2)",
                &[&attempt_secs, &BATCH],
            )
            .await?;
        attempts += n;
        if n < BATCH as u64 {
            break;
        }
    }
    let mut events = 0;
    loop {
        let n = client
            .execute(
                "DELETE FROM walhook.events WHERE id IN (
                     SELECT e.id FROM walhook.events e
                      WHERE e.commit_time < now() - make_interval(secs => $1)
                        AND NOT EXISTS (SELECT 1 FROM walhook.deliveries d
                                         WHERE d.event_id = e.id AND d.status = 'pending')
                      LIMIT $2)",
                &[&event_secs, &BATCH],
            )
            .await?;
        events += n;
        if n < BATCH as u64 {
            break;
        }
    }
    Ok((events, attempts))
}
