//! Writing events, and their deliveries, in batches.
//!
//! One batch is one transaction: the events (`ON CONFLICT (id) DO NOTHING`, so a
//! replayed change is stored once) and one pending delivery per matching
//! subscription. Only after that transaction commits may the caller treat the
//! batch's positions as durable.
//!
//! A delivery whose first attempt the writing instance will make from memory
//! is inserted already leased to it (`lease_owner`, `lease_until`): the same
//! single row write makes the obligation durable and keeps other instances off
//! it until the lease ends. If the instance dies, the lease expires and any
//! instance claims the delivery as it would any other.

use std::collections::HashMap;

use tokio_postgres::Client;
use uuid::Uuid;

use crate::mapping::event::Event;

#[derive(Debug, thiserror::Error)]
#[error("could not store events: {0}")]
pub struct StoreError(#[from] pub tokio_postgres::Error);

const INSERT_EVENTS: &str = "
INSERT INTO walhook.events (id, type, apiresource, revision, commit_lsn, commit_time,
                            source_table, body, error, seq)
SELECT id, type, apiresource, revision, commit_lsn::pg_lsn, commit_time, source_table,
       body::json, error, seq
  FROM unnest($1::uuid[], $2::text[], $3::text[], $4::int8[], $5::text[],
              $6::timestamptz[], $7::text[], $8::text[], $9::text[], $10::int4[])
       AS e(id, type, apiresource, revision, commit_lsn, commit_time, source_table, body, error,
            seq)
ON CONFLICT (id) DO NOTHING";

/// Deliveries for subscriptions that still exist (one may have been deleted
/// since the event's commit position when the WAL is replayed); a positive
/// `lease_secs` leases the row to `$7` for a first attempt from memory. Rows
/// that already existed (a replayed change) are not returned.
const INSERT_DELIVERIES: &str = "
WITH created AS (
    INSERT INTO walhook.deliveries (event_id, subscription_id, apiresource, commit_lsn, seq,
                                    lease_owner, lease_until)
    SELECT d.event_id, d.subscription_id, d.apiresource, d.commit_lsn::pg_lsn, d.seq,
           CASE WHEN d.lease_secs > 0 THEN $7::uuid END,
           CASE WHEN d.lease_secs > 0 THEN now() + make_interval(secs => d.lease_secs) END
      FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::int4[], $6::float8[])
           AS d(event_id, subscription_id, apiresource, commit_lsn, seq, lease_secs)
      JOIN walhook.subscriptions s ON s.id = d.subscription_id
    ON CONFLICT (event_id, subscription_id) DO NOTHING
    RETURNING id, event_id, subscription_id, lease_owner IS NOT NULL AS leased
)
SELECT id, event_id, subscription_id, leased FROM created";

/// A delivery row the batch created.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CreatedDelivery {
    pub delivery_id: i64,
    /// Index of its event in the batch.
    pub event: usize,
    pub subscription_id: Uuid,
    /// Leased to the writing instance for a first attempt from memory.
    pub leased: bool,
}

/// Store `events` (with their deliveries) in one transaction. `lease_secs`
/// says, per (event index, subscription), how long to lease that delivery to
/// `owner` for a first attempt from memory (`None`: not leased, claimed later).
/// Returns the deliveries created.
pub async fn write_batch(
    client: &mut Client,
    events: &[Event],
    owner: Uuid,
    mut lease_secs: impl FnMut(usize, Uuid) -> Option<f64>,
) -> Result<Vec<CreatedDelivery>, StoreError> {
    if events.is_empty() {
        return Ok(Vec::new());
    }
    let n = events.len();
    let mut ids = Vec::with_capacity(n);
    let mut types = Vec::with_capacity(n);
    let mut apiresources = Vec::with_capacity(n);
    let mut revisions = Vec::with_capacity(n);
    let mut lsns = Vec::with_capacity(n);
    let mut times = Vec::with_capacity(n);
    let mut tables = Vec::with_capacity(n);
    let mut bodies = Vec::with_capacity(n);
    let mut errors = Vec::with_capacity(n);
    let mut seqs = Vec::with_capacity(n);
    let mut d_event = Vec::new();
    let mut d_sub = Vec::new();
    let mut d_res = Vec::new();
    let mut d_lsn = Vec::new();
    let mut d_seq = Vec::new();
    let mut d_lease = Vec::new();
    let mut index: HashMap<Uuid, usize> = HashMap::new();
    for (i, e) in events.iter().enumerate() {
        let lsn = e.commit_lsn.to_string();
        // an event that could not be built is stored with its error, not sent
        for sub in e.subscriptions.iter().filter(|_| e.body.is_some()) {
            d_event.push(e.id);
            d_sub.push(*sub);
            d_res.push(e.apiresource.as_str());
            d_lsn.push(lsn.clone());
            d_seq.push(e.seq as i32);
            d_lease.push(lease_secs(i, *sub).unwrap_or(0.0));
            index.insert(e.id, i);
        }
        ids.push(e.id);
        types.push(e.event_type.as_str());
        apiresources.push(e.apiresource.as_str());
        revisions.push(e.revision);
        lsns.push(lsn);
        times.push(e.commit_time);
        tables.push(e.source_table.as_str());
        bodies.push(e.body.as_deref());
        errors.push(e.error.as_deref());
        seqs.push(e.seq as i32);
    }
    let tx = client.transaction().await?;
    tx.execute(
        INSERT_EVENTS,
        &[
            &ids,
            &types,
            &apiresources,
            &revisions,
            &lsns,
            &times,
            &tables,
            &bodies,
            &errors,
            &seqs,
        ],
    )
    .await?;
    let rows = if d_event.is_empty() {
        Vec::new()
    } else {
        tx.query(
            INSERT_DELIVERIES,
            &[&d_event, &d_sub, &d_res, &d_lsn, &d_seq, &d_lease, &owner],
        )
        .await?
    };
    let mut created = Vec::with_capacity(rows.len());
    for row in &rows {
        let event_id: Uuid = row.try_get(1)?;
        if let Some(&event) = index.get(&event_id) {
            created.push(CreatedDelivery {
                delivery_id: row.try_get(0)?,
                event,
                subscription_id: row.try_get(2)?,
                leased: row.try_get(3)?,
            });
        }
    }
    tx.commit().await?;
    Ok(created)
}
