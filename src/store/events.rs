//! Writing events, and their deliveries, in batches.
//!
//! One batch is one transaction: the events (`ON CONFLICT (id) DO NOTHING`, so a
//! replayed change is stored once) and one pending delivery per matching
//! subscription. Only after that transaction commits may the caller treat the
//! batch's positions as durable.

use tokio_postgres::Client;

use crate::mapping::event::Event;

#[derive(Debug, thiserror::Error)]
#[error("could not store events: {0}")]
pub struct StoreError(#[from] pub tokio_postgres::Error);

const INSERT_EVENTS: &str = "
INSERT INTO walhook.events (id, type, apiresource, revision, commit_lsn, commit_time,
                            source_table, body, error)
SELECT id, type, apiresource, revision, commit_lsn::pg_lsn, commit_time, source_table,
       body::json, error
  FROM unnest($1::uuid[], $2::text[], $3::text[], $4::int8[], $5::text[],
              $6::timestamptz[], $7::text[], $8::text[], $9::text[])
       AS e(id, type, apiresource, revision, commit_lsn, commit_time, source_table, body, error)
ON CONFLICT (id) DO NOTHING";

/// Deliveries for subscriptions that still exist (one may have been deleted
/// since the event's commit position when the WAL is replayed).
const INSERT_DELIVERIES: &str = "
INSERT INTO walhook.deliveries (event_id, subscription_id, apiresource, commit_lsn, seq)
SELECT d.event_id, d.subscription_id, d.apiresource, d.commit_lsn::pg_lsn, d.seq
  FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::int4[])
       AS d(event_id, subscription_id, apiresource, commit_lsn, seq)
  JOIN walhook.subscriptions s ON s.id = d.subscription_id
ON CONFLICT (event_id, subscription_id) DO NOTHING";

/// Store `events` (with their deliveries) in one transaction.
/// Returns how many deliveries were created.
pub async fn write_batch(client: &mut Client, events: &[Event]) -> Result<u64, StoreError> {
    if events.is_empty() {
        return Ok(0);
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
    let mut d_event = Vec::new();
    let mut d_sub = Vec::new();
    let mut d_res = Vec::new();
    let mut d_lsn = Vec::new();
    let mut d_seq = Vec::new();
    for e in events {
        let lsn = e.commit_lsn.to_string();
        // an event that could not be built is stored with its error, not sent
        for sub in e.subscriptions.iter().filter(|_| e.body.is_some()) {
            d_event.push(e.id);
            d_sub.push(*sub);
            d_res.push(e.apiresource.as_str());
            d_lsn.push(lsn.clone());
            d_seq.push(e.seq as i32);
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
        ],
    )
    .await?;
    let deliveries = if d_event.is_empty() {
        0
    } else {
        tx.execute(
            INSERT_DELIVERIES,
            &[&d_event, &d_sub, &d_res, &d_lsn, &d_seq],
        )
        .await?
    };
    tx.commit().await?;
    Ok(deliveries)
}
