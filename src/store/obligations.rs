//! Deliveries owed by stored events, and the mark up to which each has its
//! row.
//!
//! ```text
//!  writer:   event row (owed = {subscriptions attempted from memory}) ── commit ──▶ slot confirms
//!  recorder: delivery row (outcome, or pending when it left memory) ──▶ materialised LSN
//!  daemon:   materialised LSN ──▶ walhook.delivery_marks (every few seconds)
//!  start of streaming: sweep = pending rows for owed deliveries from the mark on
//! ```
//!
//! The slot's confirmed position follows stored events, so the database
//! never waits on a receiver; the event row is the durable obligation. A
//! delivery the streaming instance attempts from memory has no row until its
//! outcome is stored, so the event names it in `owed`. The mark says up to
//! where every owed delivery has its row; an instance that starts streaming
//! (after a crash, a kill, or as a standby taking over) first sweeps the
//! events from the mark on into pending rows for the owed deliveries that
//! have none. Nothing is lost, and a delivery may go out twice (its first
//! attempt made, its outcome not stored): receivers deduplicate on
//! `webhook-id`. Retention keeps events from the mark on.

use tokio_postgres::Client;

use crate::replication::lsn::Lsn;

/// Write pending rows for every owed delivery without a row, of the events
/// committed at or after the slot's mark (all owed events when it has none).
/// Returns the rows written.
///
/// `own`: the (materialised, durable) positions of this process when it
/// streamed the slot before, in an earlier session: the events between them
/// owe deliveries still in this process's memory, which meets them itself, so
/// they are left out, and the mark stays where this process's progress puts
/// it. On a process's first session (`None`) nothing is in its memory, and
/// the mark moves to `confirmed`, the slot's confirmed position: everything
/// before it was stored, so is swept now.
pub async fn sweep(
    client: &Client,
    slot: &str,
    own: Option<(Lsn, Lsn)>,
    confirmed: Lsn,
) -> Result<u64, tokio_postgres::Error> {
    let from = mark(client, slot).await?.unwrap_or(Lsn(0));
    // an empty range (from > to) leaves nothing out
    let (skip_from, skip_to) = own.unwrap_or((Lsn(1), Lsn(0)));
    let swept = client
        .execute(
            "INSERT INTO walhook.deliveries (event_id, subscription_id, apiresource, commit_lsn, seq,
                                             ordered)
             SELECT e.id, o.subscription_id, e.apiresource, e.commit_lsn, e.seq, s.ordered
               FROM walhook.events e
              CROSS JOIN LATERAL unnest(e.owed) AS o(subscription_id)
               JOIN walhook.subscriptions s ON s.id = o.subscription_id
              WHERE e.commit_lsn >= $1::text::pg_lsn AND e.owed IS NOT NULL
                AND NOT (e.commit_lsn >= $2::text::pg_lsn AND e.commit_lsn <= $3::text::pg_lsn)
             ON CONFLICT (event_id, subscription_id) DO NOTHING",
            &[&from.to_string(), &skip_from.to_string(), &skip_to.to_string()],
        )
        .await?;
    if own.is_none() {
        advance(client, slot, confirmed).await?;
    }
    Ok(swept)
}

/// The slot's mark, if one was stored.
pub async fn mark(client: &Client, slot: &str) -> Result<Option<Lsn>, tokio_postgres::Error> {
    let row = client
        .query_opt(
            "SELECT materialised_lsn::text FROM walhook.delivery_marks WHERE slot_name = $1",
            &[&slot],
        )
        .await?;
    Ok(row
        .map(|r| r.try_get::<_, String>(0))
        .transpose()?
        .and_then(|text| text.parse().ok()))
}

/// Move the slot's mark to `to`, if that is further.
pub async fn advance(client: &Client, slot: &str, to: Lsn) -> Result<(), tokio_postgres::Error> {
    client
        .execute(
            "INSERT INTO walhook.delivery_marks (slot_name, materialised_lsn)
             VALUES ($1, $2::text::pg_lsn)
             ON CONFLICT (slot_name) DO UPDATE
                SET materialised_lsn = greatest(walhook.delivery_marks.materialised_lsn,
                                                excluded.materialised_lsn),
                    updated_at = now()
              WHERE excluded.materialised_lsn > walhook.delivery_marks.materialised_lsn",
            &[&slot, &to.to_string()],
        )
        .await?;
    Ok(())
}

/// Owed deliveries without a row yet, from the slot's mark on (held in the
/// streaming instance's memory, or left by one that stopped).
pub async fn owed_without_row(client: &Client, slot: &str) -> Result<i64, tokio_postgres::Error> {
    client
        .query_one(
            "SELECT count(*)
               FROM walhook.events e
              CROSS JOIN LATERAL unnest(e.owed) AS o(subscription_id)
              WHERE e.owed IS NOT NULL
                AND e.commit_lsn >= coalesce((SELECT materialised_lsn FROM walhook.delivery_marks
                                               WHERE slot_name = $1), '0/0')
                AND NOT EXISTS (SELECT 1 FROM walhook.deliveries d
                                 WHERE d.event_id = e.id AND d.subscription_id = o.subscription_id)",
            &[&slot],
        )
        .await?
        .try_get(0)
}
