//! Deferred deliveries: the backlog of a slow or failing subscription, kept
//! in its events instead of a pending row per event, and given rows in event
//! order as its receiver takes them.
//!
//! ```text
//!  writer:       event row (deferred = {slow subscriptions}) + deferrals row (count) ── one statement
//!  materialiser: pending rows for the next deferred events, while the subscription
//!                has fewer than max_pending_rows ──▶ cursor (after_lsn, after_seq, after_id)
//!                nothing left and the receiver well ──▶ the deferrals row is deleted
//!                (if its count and generation are those the pass read)
//! ```
//!
//! A pending row costs PostgreSQL about 35 µs of CPU; an entry in
//! `events.deferred` (and `events_deferred_idx`) a few. A hung receiver
//! would otherwise make every other subscription's ingestion pay a row per
//! event. The obligation is as durable as a row: the event and the count
//! commit in the writer's statement, and a row ends only when every event
//! deferred before it has its delivery row (the delete names the count and
//! generation it saw, so a batch committed since keeps it, and a deferral
//! begun again since is another). The position only moves forward from
//! where a pass read it; the writer moves it back when it stores an event
//! that sorts before it.

use tokio_postgres::Client;
use uuid::Uuid;

/// What one [`materialise`] pass did.
#[derive(Debug, Clone, Copy, Default)]
pub struct Pass {
    /// Rows the subscription had room for (`max_pending_rows` less its
    /// pending rows).
    pub room: i64,
    /// Deferred events taken, in order.
    pub taken: i64,
    /// Pending rows written (a row that existed already is not).
    pub written: u64,
    /// The deferral's `deferred` count and `generation` in the pass's
    /// snapshot; `None` when the subscription has no deferral (or was
    /// deleted).
    pub seen: Option<(i64, i64)>,
}

impl Pass {
    /// Every event deferred (as of the pass) has its row now.
    pub fn caught_up(&self) -> bool {
        self.taken < self.room
    }
}

/// The subscriptions whose deliveries are deferred now, longest first.
pub async fn list(client: &Client) -> Result<Vec<Uuid>, tokio_postgres::Error> {
    client
        .query(
            "SELECT subscription_id FROM walhook.deferrals ORDER BY since",
            &[],
        )
        .await?
        .iter()
        .map(|row| row.try_get(0))
        .collect()
}

/// Give `subscription`'s next deferred deliveries their pending rows, in
/// event order up to its last deferred event, as many as it has room for
/// under `max_pending_rows`, and move its position past them unless the
/// writer moved it back meanwhile (then they are read again, and their rows
/// exist). One statement, so one snapshot: the count and generation
/// returned are those the taken events were read with.
pub async fn materialise(
    client: &Client,
    subscription: Uuid,
    max_pending_rows: i64,
) -> Result<Pass, tokio_postgres::Error> {
    let row = client
        .query_one(
            "WITH seen AS (
                 SELECT after_lsn, after_seq, after_id, last_lsn, last_seq, last_id, deferred,
                        generation
                   FROM walhook.deferrals WHERE subscription_id = $1
             ), room AS (
                 SELECT greatest($2::int8 - count(*), 0) AS n
                   FROM (SELECT 1 FROM walhook.deliveries
                          WHERE subscription_id = $1 AND status = 'pending' LIMIT $2) p
             ), taken AS (
                 -- lateral, so that the positions bound the index scan
                 SELECT t.* FROM seen f CROSS JOIN LATERAL (
                     SELECT e.id, e.apiresource, e.commit_lsn, e.seq
                       FROM walhook.events e
                      WHERE e.deferred IS NOT NULL
                        AND (e.commit_lsn, e.seq, e.id) > (f.after_lsn, f.after_seq, f.after_id)
                        AND (e.commit_lsn, e.seq, e.id) <= (f.last_lsn, f.last_seq, f.last_id)
                        AND $1 = ANY (e.deferred)
                      ORDER BY e.commit_lsn, e.seq, e.id
                      LIMIT (SELECT n FROM room)) t
             ), written AS (
                 INSERT INTO walhook.deliveries (event_id, subscription_id, apiresource,
                                                 commit_lsn, seq, ordered)
                 SELECT t.id, s.id, t.apiresource, t.commit_lsn, t.seq, s.ordered
                   FROM taken t JOIN walhook.subscriptions s ON s.id = $1
                 ON CONFLICT (event_id, subscription_id) DO NOTHING
                 RETURNING 1
             ), last AS (
                 SELECT commit_lsn, seq, id FROM taken
                  ORDER BY commit_lsn DESC, seq DESC, id DESC LIMIT 1
             ), moved AS (
                 -- the position moves only from where it was read: the writer
                 -- may have moved it back since
                 UPDATE walhook.deferrals f
                    SET after_lsn = CASE WHEN (f.after_lsn, f.after_seq, f.after_id)
                                              = (r.after_lsn, r.after_seq, r.after_id)
                                         THEN l.commit_lsn ELSE f.after_lsn END,
                        after_seq = CASE WHEN (f.after_lsn, f.after_seq, f.after_id)
                                              = (r.after_lsn, r.after_seq, r.after_id)
                                         THEN l.seq ELSE f.after_seq END,
                        after_id = CASE WHEN (f.after_lsn, f.after_seq, f.after_id)
                                             = (r.after_lsn, r.after_seq, r.after_id)
                                        THEN l.id ELSE f.after_id END,
                        materialised = f.materialised + (SELECT count(*) FROM written),
                        updated_at = now()
                   FROM last l, seen r
                  WHERE f.subscription_id = $1 AND f.generation = r.generation
             )
             SELECT (SELECT n FROM room), (SELECT count(*) FROM taken),
                    (SELECT count(*) FROM written), (SELECT deferred FROM seen),
                    (SELECT generation FROM seen)",
            &[&subscription, &max_pending_rows],
        )
        .await?;
    let deferred: Option<i64> = row.try_get(3)?;
    let generation: Option<i64> = row.try_get(4)?;
    Ok(Pass {
        room: row.try_get(0)?,
        taken: row.try_get(1)?,
        written: row.try_get::<_, i64>(2)? as u64,
        seen: deferred.zip(generation),
    })
}

/// End `subscription`'s deferral, unless deliveries were deferred since
/// it was read as `seen` (its count and generation: a deferral ended and
/// begun again since is another). Returns whether it ended.
pub async fn finish(
    client: &Client,
    subscription: Uuid,
    (deferred, generation): (i64, i64),
) -> Result<bool, tokio_postgres::Error> {
    Ok(client
        .execute(
            "DELETE FROM walhook.deferrals
              WHERE subscription_id = $1 AND deferred = $2 AND generation = $3",
            &[&subscription, &deferred, &generation],
        )
        .await?
        > 0)
}

/// Deferred deliveries without a row yet, over every subscription.
pub async fn backlog(client: &Client) -> Result<i64, tokio_postgres::Error> {
    client
        .query_one(
            "SELECT coalesce(sum(greatest(deferred - materialised, 0)), 0)::int8
               FROM walhook.deferrals",
            &[],
        )
        .await?
        .try_get(0)
}
