//! Delivery state: claiming due deliveries and recording attempts.
//!
//! A claim is a lease: `lease_owner` + `lease_until` set in the same statement
//! that selects due rows `FOR UPDATE SKIP LOCKED`, so two instances never claim
//! one delivery. The lease outlives the request timeout; a lease that expires
//! (its owner died) makes the delivery claimable again — that is the sweeper.
//! A lease is named by its delivery and its `lease_until` ([`Lease`]): giving
//! back or recording a stale copy of a delivery this instance claimed again
//! since leaves the live lease alone.
//!
//! First attempts need no claim and no lease: their rows do not exist yet. A
//! first attempt made from memory is recorded by inserting its delivery row
//! once, with the outcome; until then the event's `owed` column holds the
//! obligation (see `store::obligations`), and a delivery held in memory too
//! long gets its pending row instead ([`insert_pending`]). Recording a claimed
//! attempt only updates a delivery whose lease this instance still holds, and
//! attempts are unique per (delivery, attempt number).
//!
//! [`claim`] leases due deliveries; [`record`] stores attempts; this module
//! holds the delivery types both share, giving leases back, and pending rows.

mod claim;
mod record;

use std::sync::{Arc, OnceLock};

use chrono::{DateTime, Utc};
use tokio_postgres::Client;
use uuid::Uuid;

use super::prepared::PreparedClient;
pub use claim::{LEASE_MARGIN_SECS, ROUNDS_HELD, claim, claim_probes};
pub use record::{AttemptRecord, NewDelivery, RecordedDelivery, record};

/// What an attempt of one delivery needs besides the subscription's settings
/// ([`super::targets`]): the event, and the attempts made so far.
#[derive(Debug, Clone)]
pub struct DeliveryContent {
    pub subscription_id: Uuid,
    /// Attempts made before this one.
    pub attempts: i32,
    pub retry_base: i32,
    pub event_id: Uuid,
    pub event_type: Arc<str>,
    /// The stored body (default envelope); shared by the event's deliveries.
    pub body: Arc<str>,
    /// The SHA-256 of `body`, filled by the first of the deliveries sharing
    /// it to be signed.
    pub body_sha256: Arc<OnceLock<[u8; 32]>>,
    pub commit_time: DateTime<Utc>,
}

/// A delivery's lease as one claim set it: the same delivery claimed again
/// later (its lease lapsed) is another lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Lease {
    pub delivery_id: i64,
    pub until: DateTime<Utc>,
}

/// A claimed delivery: its lease and what its attempt needs.
#[derive(Debug, Clone)]
pub struct Claimed {
    pub lease: Lease,
    pub content: DeliveryContent,
}

/// A delivery's `status` column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryStatus {
    /// Waiting for an attempt at `next_attempt_at`.
    Pending,
    Succeeded,
    /// The retry schedule ended, or the request cannot be built.
    Failed,
}

impl DeliveryStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Pending => "pending",
            DeliveryStatus::Succeeded => "succeeded",
            DeliveryStatus::Failed => "failed",
        }
    }
}

/// Give back leases this instance took but did not attempt under. A lease
/// that lapsed and was taken again since (by this instance or another) is a
/// different lease and stays.
pub async fn release(
    client: &Client,
    instance: Uuid,
    leases: &[Lease],
) -> Result<u64, tokio_postgres::Error> {
    let ids: Vec<i64> = leases.iter().map(|l| l.delivery_id).collect();
    let until: Vec<DateTime<Utc>> = leases.iter().map(|l| l.until).collect();
    client
        .execute(
            "UPDATE walhook.deliveries d SET lease_owner = NULL, lease_until = NULL
               FROM unnest($1::int8[], $3::timestamptz[]) AS l(id, until)
              WHERE d.id = l.id AND d.lease_owner = $2 AND d.lease_until = l.until",
            &[&ids, &instance, &until],
        )
        .await
}

/// Pending rows for deliveries that have none (ON CONFLICT: a row that
/// exists already keeps its state), for subscriptions that still exist;
/// `$only` narrows the rows further (a join and a `WHERE`, or nothing).
macro_rules! insert_pending_rows {
    ($only:literal) => {
        concat!(
            "
INSERT INTO walhook.deliveries (event_id, subscription_id, apiresource, commit_lsn, seq, ordered)
SELECT d.event_id, d.subscription_id, d.apiresource, d.commit_lsn::pg_lsn, d.seq, s.ordered
  FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::int4[])
       AS d(event_id, subscription_id, apiresource, commit_lsn, seq)
  JOIN walhook.subscriptions s ON s.id = d.subscription_id
",
            $only,
            "ON CONFLICT (event_id, subscription_id) DO NOTHING"
        )
    };
}
pub(crate) use insert_pending_rows;

/// [`insert_pending_rows!`] for first attempts that leave memory without an
/// outcome (held past `first_attempt_hold`, or dropped). It reads no
/// growing table, so it is prepared.
pub const INSERT_PENDING: &str = insert_pending_rows!("");

/// Insert pending rows for `rows` ([`INSERT_PENDING`]); returns how many
/// were new.
pub async fn insert_pending(
    client: &mut PreparedClient,
    rows: &[NewDelivery],
) -> Result<u64, tokio_postgres::Error> {
    let events: Vec<Uuid> = rows.iter().map(|n| n.event_id).collect();
    let subscriptions: Vec<Uuid> = rows.iter().map(|n| n.subscription_id).collect();
    let resources: Vec<&str> = rows.iter().map(|n| &*n.apiresource).collect();
    let lsns: Vec<String> = rows.iter().map(|n| n.commit_lsn.to_string()).collect();
    let seqs: Vec<i32> = rows.iter().map(|n| n.seq).collect();
    let statement = client.statement(INSERT_PENDING).await?;
    client
        .client()
        .execute(
            &statement,
            &[&events, &subscriptions, &resources, &lsns, &seqs],
        )
        .await
}

/// Deliveries waiting (status pending).
pub async fn pending_count(client: &Client) -> Result<i64, tokio_postgres::Error> {
    client
        .query_one(
            "SELECT count(*) FROM walhook.deliveries WHERE status = 'pending'",
            &[],
        )
        .await?
        .try_get(0)
}
