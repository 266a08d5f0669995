//! What walhook reads about itself: the slot's position and lag, the
//! `walhook status` report, and the heartbeat that gives an idle slot a
//! position to confirm.

use serde::Serialize;
use tokio_postgres::Client;

use crate::replication::stream::HEARTBEAT_PREFIX;

/// The status report; rendered as a table or as JSON (`--json`).
#[derive(Debug, Serialize)]
pub struct StatusReport {
    pub slot: SlotStatus,
    /// Events stored in the last hour, by type.
    pub events_last_hour: Vec<(String, i64)>,
    /// Deliveries last attempted (or created) in the last hour, by status.
    pub deliveries_last_hour: Vec<(String, i64)>,
    pub pending_deliveries: i64,
    /// Deliveries owed by stored events with no row yet: held in the
    /// streaming instance's memory for their first attempt, or left by an
    /// instance that stopped (the next to stream writes their pending rows).
    pub owed_without_row: i64,
    /// Up to where every owed delivery has its row (`walhook.delivery_marks`).
    pub delivery_mark: Option<String>,
    pub failing_subscriptions: Vec<FailingSubscription>,
    /// Unfinished backfills and those finished in the last hour.
    pub backfills: Vec<crate::store::backfills::BackfillStatus>,
}

#[derive(Debug, Serialize)]
pub struct SlotStatus {
    pub name: String,
    pub exists: bool,
    pub active: bool,
    pub lag_bytes: Option<i64>,
    pub lag_seconds: Option<f64>,
    pub confirmed_flush_lsn: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct FailingSubscription {
    pub id: String,
    pub name: Option<String>,
    pub url: String,
    pub failed: i64,
    pub retrying: i64,
    pub last_error: Option<String>,
}

/// The slot's state and lag (`walhook status`, and the lag gauge).
pub async fn slot_status(client: &Client, slot: &str) -> Result<SlotStatus, tokio_postgres::Error> {
    let slot_row = client
        .query_opt(
            "SELECT s.active,
                    pg_wal_lsn_diff(pg_current_wal_lsn(), s.confirmed_flush_lsn)::int8,
                    extract(epoch FROM r.flush_lag)::float8,
                    s.confirmed_flush_lsn::text
               FROM pg_replication_slots s
               LEFT JOIN pg_stat_replication r ON r.pid = s.active_pid
              WHERE s.slot_name = $1",
            &[&slot],
        )
        .await?;
    Ok(match slot_row {
        Some(row) => SlotStatus {
            name: slot.to_owned(),
            exists: true,
            active: row.try_get(0)?,
            lag_bytes: row.try_get(1)?,
            lag_seconds: row.try_get(2)?,
            confirmed_flush_lsn: row.try_get(3)?,
        },
        None => SlotStatus {
            name: slot.to_owned(),
            exists: false,
            active: false,
            lag_bytes: None,
            lag_seconds: None,
            confirmed_flush_lsn: None,
        },
    })
}

/// Gather the `walhook status` report with a handful of queries.
pub async fn collect(client: &Client, slot: &str) -> Result<StatusReport, tokio_postgres::Error> {
    let slot = slot_status(client, slot).await?;
    let pairs =
        |rows: Vec<tokio_postgres::Row>| -> Result<Vec<(String, i64)>, tokio_postgres::Error> {
            rows.iter()
                .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
                .collect()
        };
    let events_last_hour = pairs(
        client
            .query(
                "SELECT type, count(*) FROM walhook.events
                  WHERE created_at > now() - interval '1 hour' GROUP BY type ORDER BY type",
                &[],
            )
            .await?,
    )?;
    let deliveries_last_hour = pairs(
        client
            .query(
                "SELECT status, count(*) FROM walhook.deliveries
                  WHERE coalesce(last_attempt_at, created_at) > now() - interval '1 hour'
                  GROUP BY status ORDER BY status",
                &[],
            )
            .await?,
    )?;
    let pending_deliveries = super::deliveries::pending_count(client).await?;
    let owed_without_row = super::obligations::owed_without_row(client, &slot.name).await?;
    let delivery_mark = super::obligations::mark(client, &slot.name)
        .await?
        .map(|lsn| lsn.to_string());
    let failing_subscriptions = client
        .query(
            "SELECT s.id::text, s.name, s.url,
                    count(*) FILTER (WHERE d.status = 'failed'),
                    count(*) FILTER (WHERE d.status = 'pending' AND d.attempts > 0),
                    (array_agg(d.last_error ORDER BY d.last_attempt_at DESC NULLS LAST)
                        FILTER (WHERE d.last_error IS NOT NULL))[1]
               FROM walhook.subscriptions s
               JOIN walhook.deliveries d ON d.subscription_id = s.id
              WHERE d.last_attempt_at > now() - interval '1 hour'
                AND (d.status = 'failed' OR (d.status = 'pending' AND d.attempts > 0))
              GROUP BY s.id, s.name, s.url
              ORDER BY 4 DESC, 5 DESC",
            &[],
        )
        .await?
        .iter()
        .map(|r| {
            Ok(FailingSubscription {
                id: r.try_get(0)?,
                name: r.try_get(1)?,
                url: r.try_get(2)?,
                failed: r.try_get(3)?,
                retrying: r.try_get(4)?,
                last_error: r.try_get(5)?,
            })
        })
        .collect::<Result<_, tokio_postgres::Error>>()?;
    let backfills = crate::store::backfills::recent(client).await?;
    Ok(StatusReport {
        slot,
        events_last_hour,
        deliveries_last_hour,
        pending_deliveries,
        owed_without_row,
        delivery_mark,
        failing_subscriptions,
        backfills,
    })
}

/// Emit a heartbeat message into the WAL (not transactional); an error when
/// not permitted (`pg_logical_emit_message` needs superuser or REPLICATION).
pub async fn heartbeat(client: &Client) -> Result<(), tokio_postgres::Error> {
    client
        .execute(
            "SELECT pg_logical_emit_message(false, $1, '')",
            &[&HEARTBEAT_PREFIX],
        )
        .await
        .map(drop)
}
