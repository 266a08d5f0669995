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
    /// Deliveries of slow or failing subscriptions without a row yet, kept
    /// in their events (`walhook.deferrals`).
    pub deferred_without_row: i64,
    /// Up to where every owed delivery has its row (`walhook.delivery_marks`).
    pub delivery_mark: Option<String>,
    pub failing_subscriptions: Vec<FailingSubscription>,
    /// Unfinished backfills and those finished in the last hour.
    pub backfills: Vec<crate::store::backfills::BackfillStatus>,
}

/// The slot's state; a missing slot is the default, but for its name and the
/// server's settings.
#[derive(Debug, Default, Serialize)]
pub struct SlotStatus {
    pub name: String,
    pub exists: bool,
    pub active: bool,
    pub lag_bytes: Option<i64>,
    pub lag_seconds: Option<f64>,
    pub confirmed_flush_lsn: Option<String>,
    /// WAL the slot keeps on the server: from its `restart_lsn` to the
    /// current position (`walhook_slot_retained_wal_bytes`).
    pub retained_wal_bytes: Option<i64>,
    /// `reserved`, `extended`, `unreserved` (lost at the next checkpoint
    /// unless it catches up) or `lost` (invalidated).
    pub wal_status: Option<String>,
    /// WAL that can still be written before the slot is lost; None when
    /// `max_slot_wal_keep_size` is -1 (unlimited) or the slot is lost.
    pub safe_wal_size: Option<i64>,
    /// The server's `max_slot_wal_keep_size` (`-1`: unlimited).
    pub max_slot_wal_keep_size: Option<String>,
    /// The last position walhook may have confirmed on the slot it consumed
    /// (`walhook.slot_identity`), when it has a record.
    pub recorded_confirmed_lsn: Option<String>,
    /// WAL bytes whose changes `walhook slot recreate` declared lost, summed.
    pub lost_wal_bytes: i64,
    /// Times the slot was re-created with `walhook slot recreate`.
    pub recreations: i32,
    /// PostgreSQL 17+: whether the slot is a failover slot (`--slot-failover`).
    pub failover: Option<bool>,
    /// PostgreSQL 17+: whether this slot is a standby's synchronised copy
    /// (true only when walhook's database URL reaches a standby).
    pub synced: Option<bool>,
    /// PostgreSQL 17+: the primary's `synchronized_standby_slots`: the
    /// physical slots of standbys a failover slot never runs ahead of.
    pub synchronized_standby_slots: Option<String>,
    /// PostgreSQL 17+: why the slot was invalidated (`wal_removed`, `idle_timeout`, ...).
    pub invalidation_reason: Option<String>,
    /// What an operator should look at now (empty when all is well).
    pub warnings: Vec<String>,
}

/// `walhook status` warns when the slot keeps more WAL than this (1 GiB).
pub const RETAINED_WAL_WARN_BYTES: i64 = 1 << 30;

#[derive(Debug, Serialize)]
pub struct FailingSubscription {
    pub id: String,
    pub name: Option<String>,
    pub url: String,
    pub failed: i64,
    pub retrying: i64,
    pub last_error: Option<String>,
}

/// The slot's state, lag and retained WAL (`walhook status`, and the gauges).
pub async fn slot_status(client: &Client, slot: &str) -> Result<SlotStatus, tokio_postgres::Error> {
    let slot_row = client
        .query_opt(
            "SELECT s.active,
                    pg_wal_lsn_diff(w.at, s.confirmed_flush_lsn)::int8,
                    extract(epoch FROM r.flush_lag)::float8,
                    s.confirmed_flush_lsn::text,
                    pg_wal_lsn_diff(w.at, s.restart_lsn)::int8,
                    s.wal_status::text,
                    s.safe_wal_size::int8,
                    (to_jsonb(s) ->> 'failover')::boolean,
                    (to_jsonb(s) ->> 'synced')::boolean,
                    to_jsonb(s) ->> 'invalidation_reason'
               FROM pg_replication_slots s
               -- a standby (walhook status on a failover slot's copy) has no
               -- current position of its own: its replayed one
               CROSS JOIN (SELECT CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn()
                                       ELSE pg_current_wal_lsn() END AS at) w
               LEFT JOIN pg_stat_replication r ON r.pid = s.active_pid
              WHERE s.slot_name = $1",
            &[&slot],
        )
        .await?;
    let settings = client
        .query_one(
            "SELECT current_setting('max_slot_wal_keep_size', true),
                    current_setting('synchronized_standby_slots', true)",
            &[],
        )
        .await?;
    let keep: Option<String> = settings.try_get(0)?;
    let standby_slots: Option<String> = settings.try_get(1)?;
    let recorded = crate::replication::slot::identity::load(client, slot).await?;
    let mut status = SlotStatus {
        name: slot.to_owned(),
        max_slot_wal_keep_size: keep,
        synchronized_standby_slots: standby_slots,
        ..SlotStatus::default()
    };
    if let Some(row) = slot_row {
        status = SlotStatus {
            exists: true,
            active: row.try_get(0)?,
            lag_bytes: row.try_get(1)?,
            lag_seconds: row.try_get(2)?,
            confirmed_flush_lsn: row.try_get(3)?,
            retained_wal_bytes: row.try_get(4)?,
            wal_status: row.try_get(5)?,
            safe_wal_size: row.try_get(6)?,
            failover: row.try_get(7)?,
            synced: row.try_get(8)?,
            invalidation_reason: row.try_get(9)?,
            ..status
        };
    }
    if let Some(recorded) = &recorded {
        status.recorded_confirmed_lsn = Some(recorded.confirmed_lsn.to_string());
        status.lost_wal_bytes = recorded.lost_wal_bytes;
        status.recreations = recorded.recreations;
    }
    status.warnings = slot_warnings(&status, recorded.as_ref());
    Ok(status)
}

/// What `walhook status` warns about the slot: an invalidated, missing or
/// replaced slot (the daemon stops on those), WAL at risk, or more than
/// [`RETAINED_WAL_WARN_BYTES`] retained.
fn slot_warnings(
    s: &SlotStatus,
    recorded: Option<&crate::replication::slot::identity::Identity>,
) -> Vec<String> {
    use crate::replication::slot::{SlotState, identity};
    let mut warnings = Vec::new();
    let confirmed_flush = s
        .confirmed_flush_lsn
        .as_deref()
        .and_then(|l| l.parse().ok())
        .unwrap_or_default();
    let state = match (s.exists, s.wal_status.as_deref()) {
        (false, _) => SlotState::Missing,
        (true, Some("lost")) => SlotState::Lost {
            confirmed_flush,
            reason: s.invalidation_reason.clone(),
        },
        (true, _) => SlotState::Ready { confirmed_flush },
    };
    if let Err(error) = identity::judge(&s.name, &state, recorded) {
        warnings.push(error.to_string());
    }
    if s.wal_status.as_deref() == Some("unreserved") {
        warnings.push(format!(
            "the slot keeps more WAL than max_slot_wal_keep_size ({}): it is invalidated at \
             the next checkpoint unless walhook catches up first",
            s.max_slot_wal_keep_size.as_deref().unwrap_or("-")
        ));
    }
    if let Some(retained) = s.retained_wal_bytes
        && retained > RETAINED_WAL_WARN_BYTES
    {
        warnings.push(format!(
            "the slot keeps {} of WAL on the server (warning above {}): is walhook running \
             and keeping up? (see walhook_slot_retained_wal_bytes)",
            bytes(retained),
            bytes(RETAINED_WAL_WARN_BYTES)
        ));
    }
    if s.failover == Some(true)
        && s.synced != Some(true)
        && s.synchronized_standby_slots
            .as_deref()
            .unwrap_or("")
            .is_empty()
    {
        warnings.push(
            "the slot is a failover slot but synchronized_standby_slots is empty: walhook may \
             confirm changes the standby's copy has not reached, and a promotion would lose \
             them; set it to the standby's physical slot (docs/slot-safety.md)"
                .to_owned(),
        );
    }
    if s.max_slot_wal_keep_size.as_deref() == Some("-1") {
        warnings.push(
            "max_slot_wal_keep_size is -1 (unlimited): a stopped or stuck walhook makes the \
             slot keep WAL until the disk fills; set a limit (docs/slot-safety.md)"
                .to_owned(),
        );
    }
    warnings
}

/// Bytes for people: B, KiB, MiB, GiB.
pub fn bytes(n: i64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value.abs() >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
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
    let deferred_without_row = super::deferrals::backlog(client).await?;
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
        deferred_without_row,
        delivery_mark,
        failing_subscriptions,
        backfills,
    })
}

/// Emit a heartbeat message into the WAL (not transactional), giving an idle
/// slot a position to confirm.
pub async fn heartbeat(client: &Client) -> Result<(), tokio_postgres::Error> {
    client
        .execute(
            "SELECT pg_logical_emit_message(false, $1, '')",
            &[&HEARTBEAT_PREFIX],
        )
        .await
        .map(drop)
}
