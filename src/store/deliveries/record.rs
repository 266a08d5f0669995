//! Recording attempts: a first attempt's delivery row inserted once, with
//! its outcome; a claimed attempt's row updated under its live lease; the
//! attempt rows beside them, in batches.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;
use tokio_postgres::{GenericClient, Statement};
use uuid::Uuid;

use super::super::prepared::PreparedClient;
use super::{DeliveryStatus, Lease};
use crate::replication::lsn::Lsn;

/// A delivery attempted from memory before its row existed: what its row
/// needs besides the outcome.
#[derive(Debug, Clone)]
pub struct NewDelivery {
    pub event_id: Uuid,
    pub subscription_id: Uuid,
    pub apiresource: Arc<str>,
    pub commit_lsn: Lsn,
    pub seq: i32,
}

/// Which delivery an attempt was of.
#[derive(Debug, Clone)]
pub enum RecordedDelivery {
    /// A claimed delivery: its row is updated if this instance still holds
    /// the lease.
    Claimed(Lease),
    /// A first attempt from memory: its row is inserted with the outcome.
    First(NewDelivery),
}

/// The result of one attempt, ready to record.
#[derive(Debug, Clone)]
pub struct AttemptRecord {
    pub delivery: RecordedDelivery,
    pub attempt: i32,
    pub attempted_at: DateTime<Utc>,
    pub duration_ms: i32,
    pub status_code: Option<i32>,
    pub error: Option<String>,
    pub response_body: Option<String>,
    /// The headers sent, as a JSON object (`request_headers` of the attempt
    /// row); None when no request could be built.
    pub request_headers: Option<String>,
    /// Pending means a retry at `next_attempt_at`.
    pub new_status: DeliveryStatus,
    /// Of an `ordered` subscription: recording it may make the resource's
    /// next delivery claimable.
    pub ordered: bool,
    /// A probe of a failing subscription: if it failed, the delivery keeps
    /// its place in its retry schedule (`next_attempt_at`, and `retry_base`
    /// moves with `attempts`), so waiting behind an open breaker uses no
    /// retries.
    pub probe: bool,
    pub next_attempt_at: DateTime<Utc>,
}

/// Record finished attempts in one transaction: claimed deliveries are
/// updated (those whose lease this instance lost are left alone: another
/// instance owns them now), first attempts from memory insert their rows.
/// A batch of one kind is one statement; a mixed batch wraps the two in a
/// transaction block.
pub async fn record(
    client: &mut PreparedClient,
    instance: Uuid,
    records: &[AttemptRecord],
) -> Result<(), tokio_postgres::Error> {
    let mut statement = RECORD_FIRST_NEW;
    loop {
        match record_with(client, instance, records, statement).await {
            Err(error) => match record_first_instead(statement, error.code()) {
                Some(next) => statement = next,
                None => return Err(error),
            },
            stored => return stored,
        }
    }
}

/// The statement for first attempts to store a batch with when `failed`
/// failed with `code`: a delivery row inserted meanwhile by a replay of
/// its batch (23505) needs [`RECORD_FIRST`]; an event removed by retention,
/// or a subscription deleted, while its first attempt was in flight (23503)
/// needs [`RECORD_FIRST_CHECKED`], which stores the rest. None when no
/// statement would do better.
fn record_first_instead(failed: &str, code: Option<&SqlState>) -> Option<&'static str> {
    match code? {
        c if *c == SqlState::UNIQUE_VIOLATION && failed == RECORD_FIRST_NEW => Some(RECORD_FIRST),
        c if *c == SqlState::FOREIGN_KEY_VIOLATION && failed != RECORD_FIRST_CHECKED => {
            Some(RECORD_FIRST_CHECKED)
        }
        _ => None,
    }
}

/// [`record`] with `record_first` as the statement for first attempts.
async fn record_with(
    client: &mut PreparedClient,
    instance: Uuid,
    records: &[AttemptRecord],
    record_first_sql: &'static str,
) -> Result<(), tokio_postgres::Error> {
    let (first, claimed): (Vec<&AttemptRecord>, Vec<&AttemptRecord>) = records
        .iter()
        .partition(|r| matches!(r.delivery, RecordedDelivery::First(_)));
    let prepared = if first.is_empty() {
        None
    } else {
        client.statement_if_preparable(record_first_sql).await?
    };
    let first_statement = FirstStatement {
        prepared: prepared.as_ref(),
        sql: record_first_sql,
    };
    match (first.is_empty(), claimed.is_empty()) {
        (true, true) => Ok(()),
        (false, true) => record_first(client.client(), first_statement, instance, &first).await,
        (true, false) => record_claimed(client.client(), instance, &claimed).await,
        (false, false) => {
            let tx = client.client().transaction().await?;
            record_claimed(&tx, instance, &claimed).await?;
            record_first(&tx, first_statement, instance, &first).await?;
            tx.commit().await
        }
    }
}

/// A statement for first attempts: prepared, or sent as text.
#[derive(Clone, Copy)]
struct FirstStatement<'a> {
    prepared: Option<&'a Statement>,
    sql: &'static str,
}

/// The outcome columns of a batch of records, one array per column.
struct Outcomes<'a> {
    attempts: Vec<i32>,
    at: Vec<DateTime<Utc>>,
    durations: Vec<i32>,
    codes: Vec<Option<i32>>,
    errors: Vec<Option<&'a str>>,
    bodies: Vec<Option<&'a str>>,
    statuses: Vec<&'static str>,
    next: Vec<DateTime<Utc>>,
    headers: Vec<Option<&'a str>>,
}

impl<'a> Outcomes<'a> {
    /// The columns as statement parameters, in this order: attempt, attempted
    /// at, duration, status code, error, response body, new status, next
    /// attempt at.
    fn params(&self) -> [&(dyn ToSql + Sync); 8] {
        [
            &self.attempts,
            &self.at,
            &self.durations,
            &self.codes,
            &self.errors,
            &self.bodies,
            &self.statuses,
            &self.next,
        ]
    }

    fn of(records: &[&'a AttemptRecord]) -> Self {
        Outcomes {
            attempts: records.iter().map(|r| r.attempt).collect(),
            at: records.iter().map(|r| r.attempted_at).collect(),
            durations: records.iter().map(|r| r.duration_ms).collect(),
            codes: records.iter().map(|r| r.status_code).collect(),
            errors: records.iter().map(|r| r.error.as_deref()).collect(),
            bodies: records.iter().map(|r| r.response_body.as_deref()).collect(),
            statuses: records.iter().map(|r| r.new_status.as_str()).collect(),
            next: records.iter().map(|r| r.next_attempt_at).collect(),
            headers: records
                .iter()
                .map(|r| r.request_headers.as_deref())
                .collect(),
        }
    }
}

/// Outcomes of claimed attempts: the delivery's new state if this instance
/// still holds the lease the attempt was made under ($11), and then its
/// attempt row. A redelivery asked for while the attempt ran
/// (`walhook.redeliver`) makes the delivery pending again at once, its
/// retry schedule restarted. A failed probe ($12) leaves the delivery
/// pending where it was in its retry schedule. The attempt row carries the
/// headers sent ($13).
const RECORD_CLAIMED: &str = "
WITH owned AS (
    UPDATE walhook.deliveries d
       SET status = CASE WHEN d.redeliver_requested OR u.kept THEN 'pending' ELSE u.status END,
           attempts = u.attempt,
           next_attempt_at = CASE WHEN d.redeliver_requested THEN now()
                                  WHEN u.kept THEN d.next_attempt_at ELSE u.next END,
           retry_base = CASE WHEN d.redeliver_requested THEN u.attempt
                             WHEN u.kept THEN d.retry_base + 1 ELSE d.retry_base END,
           redeliver_requested = false,
           last_status_code = u.code, last_error = u.error, last_attempt_at = u.at,
           lease_owner = NULL, lease_until = NULL
      FROM unnest($1::int8[], $2::int4[], $3::timestamptz[], $5::int4[], $6::text[],
                  $8::text[], $9::timestamptz[], $11::timestamptz[], $12::bool[])
           AS u(id, attempt, at, code, error, status, next, lease_until, kept)
     WHERE d.id = u.id AND d.lease_owner = $10 AND d.lease_until = u.lease_until
    RETURNING d.id)
INSERT INTO walhook.delivery_attempts
       (delivery_id, attempt, attempted_at, duration_ms, status_code, error, response_body,
        request_headers, instance_id)
SELECT a.id, a.attempt, a.at, a.duration, a.code, a.error, a.body, a.headers::jsonb, $10
  FROM unnest($1::int8[], $2::int4[], $3::timestamptz[], $4::int4[], $5::int4[],
              $6::text[], $7::text[], $13::text[])
           AS a(id, attempt, at, duration, code, error, body, headers)
 WHERE a.id IN (SELECT id FROM owned)
ON CONFLICT (delivery_id, attempt) DO NOTHING";

/// Sent as text, so planned on every execution: it joins
/// `walhook.deliveries`, which grows.
async fn record_claimed(
    client: &impl GenericClient,
    instance: Uuid,
    records: &[&AttemptRecord],
) -> Result<(), tokio_postgres::Error> {
    let leases: Vec<Lease> = records
        .iter()
        .filter_map(|r| match r.delivery {
            RecordedDelivery::Claimed(lease) => Some(lease),
            RecordedDelivery::First(_) => None,
        })
        .collect();
    let ids: Vec<i64> = leases.iter().map(|l| l.delivery_id).collect();
    let until: Vec<DateTime<Utc>> = leases.iter().map(|l| l.until).collect();
    let kept: Vec<bool> = records
        .iter()
        .map(|r| r.probe && r.new_status != DeliveryStatus::Succeeded)
        .collect();
    let o = Outcomes::of(records);
    client
        .execute(
            RECORD_CLAIMED,
            &[
                &[&ids as &(dyn ToSql + Sync)],
                &o.params()[..],
                &[&instance, &until, &kept, &o.headers],
            ]
            .concat(),
        )
        .await?;
    Ok(())
}

/// First attempts from memory: their delivery rows with the outcome, and
/// their attempt rows, for subscriptions that still exist; `$check` may add
/// a condition on `u`, `$deliveries_conflict` and `$attempts_conflict` are
/// the inserts' `ON CONFLICT` clauses.
macro_rules! record_first {
    ($check:expr, $deliveries_conflict:expr, $attempts_conflict:expr) => {
        concat!(
            "
WITH u AS (
    SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::int4[],
                         $6::int4[], $7::timestamptz[], $8::int4[], $9::int4[],
                         $10::text[], $11::text[], $12::text[], $13::timestamptz[],
                         $15::text[])
           AS u(event_id, subscription_id, apiresource, commit_lsn, seq, attempt, at,
                duration, code, error, body, status, next, headers)
), stored AS (
    INSERT INTO walhook.deliveries AS d
           (event_id, subscription_id, apiresource, commit_lsn, seq, status, attempts,
            next_attempt_at, last_status_code, last_error, last_attempt_at, ordered)
    SELECT u.event_id, u.subscription_id, u.apiresource, u.commit_lsn::pg_lsn, u.seq,
           u.status, u.attempt, u.next, u.code, u.error, u.at, s.ordered
      FROM u
      JOIN walhook.subscriptions s ON s.id = u.subscription_id
",
            $check,
            $deliveries_conflict,
            "
    RETURNING d.id, d.event_id, d.subscription_id
)
INSERT INTO walhook.delivery_attempts
       (delivery_id, attempt, attempted_at, duration_ms, status_code, error, response_body,
        request_headers, instance_id)
SELECT stored.id, u.attempt, u.at, u.duration, u.code, u.error, u.body, u.headers::jsonb, $14
  FROM stored
  JOIN u ON u.event_id = stored.event_id AND u.subscription_id = stored.subscription_id
",
            $attempts_conflict
        )
    };
}

/// A delivery row that exists already (inserted `pending` by a replay of its
/// batch) takes the outcome if nobody attempted it since.
macro_rules! take_the_outcome {
    () => {
        "
    ON CONFLICT (event_id, subscription_id) DO UPDATE
       SET status = excluded.status, attempts = excluded.attempts,
           next_attempt_at = excluded.next_attempt_at,
           last_status_code = excluded.last_status_code,
           last_error = excluded.last_error, last_attempt_at = excluded.last_attempt_at
     WHERE d.status = 'pending' AND d.attempts = 0 AND d.lease_owner IS NULL"
    };
}

/// [`record_first!`] for the usual batch, where every delivery row is new
/// (a replay of its batch has not inserted it meanwhile), so are its attempt
/// rows (their delivery ids are new), and every event still exists. Plain
/// inserts: an `ON CONFLICT` insert is a speculative insertion, which probes
/// the unique index first and writes a second WAL record per row. A row that exists fails the statement with SQLSTATE
/// 23505, a removed event with 23503, and [`record`] stores the batch again
/// with [`RECORD_FIRST`] or [`RECORD_FIRST_CHECKED`].
const RECORD_FIRST_NEW: &str = record_first!("", "", "");

/// [`record_first!`] trusting that every event still exists (the reference
/// check of migration 0009 says so when not, with SQLSTATE 23503). No join
/// with `walhook.events`: with a generic plan kept from when the table was
/// nearly empty, or planned for a batch of hundreds, that join became a scan
/// of the whole table per batch.
const RECORD_FIRST: &str = record_first!(
    "",
    take_the_outcome!(),
    "ON CONFLICT (delivery_id, attempt) DO NOTHING"
);

/// [`record_first!`] leaving out the events removed meanwhile (retention),
/// for a batch that [`RECORD_FIRST`] could not store. It reads
/// `walhook.events`, so it is sent as text and planned each time.
const RECORD_FIRST_CHECKED: &str = record_first!(
    "     WHERE EXISTS (SELECT 1 FROM walhook.events e WHERE e.id = u.event_id)",
    take_the_outcome!(),
    "ON CONFLICT (delivery_id, attempt) DO NOTHING"
);

/// Insert the rows of first attempts made from memory, each with its outcome,
/// and their attempt rows. A row that exists already was inserted `pending`
/// by a replay of its batch (the process lost its session before this
/// outcome was stored): it takes the outcome if nobody attempted it since.
/// Subscriptions deleted and events expired meanwhile take their deliveries
/// with them.
async fn record_first(
    client: &impl GenericClient,
    statement: FirstStatement<'_>,
    instance: Uuid,
    records: &[&AttemptRecord],
) -> Result<(), tokio_postgres::Error> {
    let new: Vec<&NewDelivery> = records
        .iter()
        .filter_map(|r| match &r.delivery {
            RecordedDelivery::First(new) => Some(new),
            RecordedDelivery::Claimed(_) => None,
        })
        .collect();
    let events: Vec<Uuid> = new.iter().map(|n| n.event_id).collect();
    let subscriptions: Vec<Uuid> = new.iter().map(|n| n.subscription_id).collect();
    let resources: Vec<&str> = new.iter().map(|n| &*n.apiresource).collect();
    let lsns: Vec<String> = new.iter().map(|n| n.commit_lsn.to_string()).collect();
    let seqs: Vec<i32> = new.iter().map(|n| n.seq).collect();
    let o = Outcomes::of(records);
    let params = [
        &[
            &events as &(dyn ToSql + Sync),
            &subscriptions,
            &resources,
            &lsns,
            &seqs,
        ],
        &o.params()[..],
        &[&instance, &o.headers],
    ]
    .concat();
    match statement.prepared {
        Some(prepared) => client.execute(prepared, &params).await?,
        None => client.execute(statement.sql, &params).await?,
    };
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::deliveries::INSERT_PENDING;
    use crate::store::prepared::growing_table_read;

    #[test]
    fn a_failed_first_attempt_batch_is_stored_again_by_the_statement_that_can() {
        let unique = Some(&SqlState::UNIQUE_VIOLATION);
        let reference = Some(&SqlState::FOREIGN_KEY_VIOLATION);
        assert_eq!(
            record_first_instead(RECORD_FIRST_NEW, unique),
            Some(RECORD_FIRST)
        );
        assert_eq!(
            record_first_instead(RECORD_FIRST_NEW, reference),
            Some(RECORD_FIRST_CHECKED)
        );
        assert_eq!(
            record_first_instead(RECORD_FIRST, reference),
            Some(RECORD_FIRST_CHECKED)
        );
        // the statements that skip existing rows cannot meet them again, and
        // the checked one is the last resort: the error is the caller's
        assert_eq!(record_first_instead(RECORD_FIRST, unique), None);
        assert_eq!(record_first_instead(RECORD_FIRST_CHECKED, reference), None);
        assert_eq!(record_first_instead(RECORD_FIRST_NEW, None), None);
        assert_eq!(
            record_first_instead(RECORD_FIRST_NEW, Some(&SqlState::QUERY_CANCELED)),
            None
        );
        assert!(!RECORD_FIRST_NEW.contains("ON CONFLICT"));
        assert_eq!(RECORD_FIRST.matches("ON CONFLICT").count(), 2);
    }

    #[test]
    fn only_statements_reading_no_growing_table_are_prepared() {
        assert_eq!(growing_table_read(RECORD_FIRST_NEW), None);
        assert_eq!(growing_table_read(INSERT_PENDING), None);
        assert_eq!(growing_table_read(RECORD_FIRST), None);
        // sent as text (`record_with`), as the claimed attempts' statement
        assert_eq!(
            growing_table_read(RECORD_FIRST_CHECKED),
            Some("walhook.events")
        );
        assert_eq!(
            growing_table_read(RECORD_CLAIMED),
            Some("walhook.deliveries")
        );
    }
}
