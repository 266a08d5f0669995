//! Writing events, and their deliveries, in batches.
//!
//! One batch is one statement, so one transaction: the events and one
//! pending delivery per matching subscription, except those the writing
//! instance attempts from memory first. Only after that statement returns may
//! the caller treat the batch's events as stored. The statement first tries
//! plain inserts; a batch holding a replayed change fails that as a whole
//! (a unique violation) and is written again skipping what exists
//! (`ON CONFLICT (id) DO NOTHING`), so a replayed change is stored once.
//!
//! A delivery attempted from memory gets its row once, with its outcome (see
//! [`super::deliveries::record`]); until then the event's `owed` column,
//! stored in the same statement, holds the obligation (see
//! [`super::obligations`]), so the slot may confirm the batch as soon as it
//! commits. That is only sound for an event this batch stored for the first
//! time: an event that existed already is a replay, whose deliveries may have
//! rows (or outcomes) from before, so they are inserted `pending`
//! (`ON CONFLICT DO NOTHING`, by a second statement) and claimed.
//!
//! A delivery to a deferred (slow or failing) subscription gets no row
//! either: the event's `deferred` column names it, and the same statement
//! counts it in the subscription's `walhook.deferrals` row, which it creates
//! (see [`super::deferrals`]); a replayed event's gets a pending row too.

use std::collections::HashMap;

use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;
use uuid::Uuid;

use super::deliveries::insert_pending_rows;
use super::prepared::PreparedClient;
use crate::mapping::event::Event;

#[derive(Debug, thiserror::Error)]
#[error("could not store events: {0}")]
pub struct StoreError(#[from] pub tokio_postgres::Error);

/// The batch in one statement (one round trip, atomic without a transaction
/// block): the events, the count of deferred deliveries per deferred
/// subscription (its `walhook.deferrals` row), then a pending delivery for
/// each (event, subscription) given a row now, for subscriptions that still
/// exist (one may have been deleted since the event's commit position when
/// the WAL is replayed). Returns the ids of the events stored now and the
/// number of delivery rows inserted. `$events_conflict` and
/// `$deliveries_conflict` are the inserts' `ON CONFLICT` clauses;
/// `$deferring` is [`deferring!`]'s statement for a batch that defers
/// deliveries, empty for one that does not (most: nothing is counted then).
macro_rules! write_batch {
    ($events_conflict:literal, $deliveries_conflict:literal, $deferring:expr) => {
        concat!(
            "
WITH stored AS (
    INSERT INTO walhook.events (id, type, apiresource, revision, commit_lsn, commit_time,
                                source_table, body, error, seq, owed, deferred)
    SELECT id, type, apiresource, revision, commit_lsn::pg_lsn, commit_time, source_table,
           body::json, error, seq, owed::uuid[], deferred::uuid[]
      FROM unnest($1::uuid[], $2::text[], $3::text[], $4::int8[], $5::text[],
                  $6::timestamptz[], $7::text[], $8::text[], $9::text[], $10::int4[],
                  $16::text[], $17::text[])
           AS e(id, type, apiresource, revision, commit_lsn, commit_time, source_table, body,
                error, seq, owed, deferred)
    ",
            $events_conflict,
            "
    RETURNING id, commit_lsn, seq, deferred
)",
            $deferring,
            ", pending AS (
    INSERT INTO walhook.deliveries (event_id, subscription_id, apiresource, commit_lsn, seq,
                                    ordered)
    SELECT d.event_id, d.subscription_id, d.apiresource, d.commit_lsn::pg_lsn, d.seq, s.ordered
      FROM unnest($11::uuid[], $12::uuid[], $13::text[], $14::text[], $15::int4[])
           AS d(event_id, subscription_id, apiresource, commit_lsn, seq)
      JOIN walhook.subscriptions s ON s.id = d.subscription_id
    ",
            $deliveries_conflict,
            "
    RETURNING 1
)
SELECT (SELECT coalesce(array_agg(id), '{}') FROM stored),
       (SELECT count(*) FROM pending)"
        )
    };
}

/// The deferred deliveries, per subscription, in the batch's statement: its
/// `walhook.deferrals` row is created with the first, its count grows, its
/// last event moves on, and its position moves back to just before the
/// batch's first deferred event if that sorts before it (a transaction's
/// grouped deletes are stored at its commit, after later changes of it,
/// which a batch before may have given rows already). Just before
/// `(lsn, seq, id)` is `(lsn, seq - 1, ffffffff-...)`: one event per
/// position and change.
macro_rules! deferring {
    () => {
        ", deferring AS (
    INSERT INTO walhook.deferrals AS f (subscription_id, after_lsn, after_seq, after_id,
                                        last_lsn, last_seq, last_id, deferred)
    SELECT d.subscription_id, lo.commit_lsn, lo.seq - 1, 'ffffffff-ffff-ffff-ffff-ffffffffffff',
           hi.commit_lsn, hi.seq, hi.id, d.n
      FROM (SELECT x.subscription_id, count(*) AS n
              FROM stored e CROSS JOIN LATERAL unnest(e.deferred) AS x(subscription_id)
             GROUP BY x.subscription_id) d
      JOIN walhook.subscriptions s ON s.id = d.subscription_id
     CROSS JOIN LATERAL (SELECT e.commit_lsn, e.seq FROM stored e
                          WHERE d.subscription_id = ANY (e.deferred)
                          ORDER BY e.commit_lsn, e.seq LIMIT 1) lo
     CROSS JOIN LATERAL (SELECT e.commit_lsn, e.seq, e.id FROM stored e
                          WHERE d.subscription_id = ANY (e.deferred)
                          ORDER BY e.commit_lsn DESC, e.seq DESC, e.id DESC LIMIT 1) hi
    ON CONFLICT (subscription_id) DO UPDATE
       SET deferred = f.deferred + excluded.deferred,
           after_lsn = CASE WHEN (excluded.after_lsn, excluded.after_seq, excluded.after_id)
                                 < (f.after_lsn, f.after_seq, f.after_id)
                            THEN excluded.after_lsn ELSE f.after_lsn END,
           after_seq = CASE WHEN (excluded.after_lsn, excluded.after_seq, excluded.after_id)
                                 < (f.after_lsn, f.after_seq, f.after_id)
                            THEN excluded.after_seq ELSE f.after_seq END,
           after_id = CASE WHEN (excluded.after_lsn, excluded.after_seq, excluded.after_id)
                                < (f.after_lsn, f.after_seq, f.after_id)
                           THEN excluded.after_id ELSE f.after_id END,
           last_lsn = CASE WHEN (excluded.last_lsn, excluded.last_seq, excluded.last_id)
                                > (f.last_lsn, f.last_seq, f.last_id)
                           THEN excluded.last_lsn ELSE f.last_lsn END,
           last_seq = CASE WHEN (excluded.last_lsn, excluded.last_seq, excluded.last_id)
                                > (f.last_lsn, f.last_seq, f.last_id)
                           THEN excluded.last_seq ELSE f.last_seq END,
           last_id = CASE WHEN (excluded.last_lsn, excluded.last_seq, excluded.last_id)
                               > (f.last_lsn, f.last_seq, f.last_id)
                          THEN excluded.last_id ELSE f.last_id END,
           updated_at = now()
)"
    };
}

/// [`write_batch!`] for a batch of events never stored before (every batch
/// but a replay's): plain inserts. An `ON CONFLICT` insert is a speculative
/// insertion, which probes the unique index before the insert and writes a
/// second WAL record per row to confirm it (in `pgbench`, 100-row inserts
/// took 10-15% longer). A replayed event fails the whole statement with
/// SQLSTATE 23505 and the batch is written again by [`WRITE_BATCH`].
const WRITE_NEW_BATCH: &str = write_batch!("", "", "");

/// [`write_batch!`] for a batch that may hold events stored before (a
/// replay): those are skipped, and so are delivery rows that exist.
const WRITE_BATCH: &str = write_batch!(
    "ON CONFLICT (id) DO NOTHING",
    "ON CONFLICT (event_id, subscription_id) DO NOTHING",
    ""
);

/// [`WRITE_NEW_BATCH`] for a batch that defers deliveries (only the small
/// `walhook.deferrals` upsert has an `ON CONFLICT`).
const WRITE_NEW_BATCH_DEFERRING: &str = write_batch!("", "", deferring!());

/// [`WRITE_BATCH`] for a batch that defers deliveries.
const WRITE_BATCH_DEFERRING: &str = write_batch!(
    "ON CONFLICT (id) DO NOTHING",
    "ON CONFLICT (event_id, subscription_id) DO NOTHING",
    deferring!()
);

/// Delivery rows to insert, one array per column.
#[derive(Default)]
struct PendingRows<'a> {
    events: Vec<Uuid>,
    subscriptions: Vec<Uuid>,
    apiresources: Vec<&'a str>,
    lsns: Vec<&'a str>,
    seqs: Vec<i32>,
}

impl<'a> PendingRows<'a> {
    fn push(&mut self, event: &'a Event, subscription: Uuid, lsn: &'a str) {
        self.events.push(event.id);
        self.subscriptions.push(subscription);
        self.apiresources.push(&event.apiresource);
        self.lsns.push(lsn);
        self.seqs.push(event.seq as i32);
    }
}

/// What a batch stored.
#[derive(Debug, Default)]
pub struct Written {
    /// Per event of the batch: stored now for the first time (not a replay).
    pub new_events: Vec<bool>,
    /// Pending delivery rows inserted (they wait for a claim).
    pub pending: u64,
    /// The subscriptions deliveries were deferred to.
    pub deferred_to: Vec<Uuid>,
}

/// The events' columns, one array per column, as the batch statement binds
/// them.
struct EventColumns<'a> {
    ids: Vec<Uuid>,
    types: Vec<&'a str>,
    apiresources: Vec<&'a str>,
    revisions: Vec<i64>,
    lsns: Vec<String>,
    times: Vec<chrono::DateTime<chrono::Utc>>,
    tables: Vec<&'a str>,
    bodies: Vec<Option<&'a str>>,
    errors: Vec<Option<&'a str>>,
    seqs: Vec<i32>,
}

impl<'a> EventColumns<'a> {
    fn of(events: &'a [Event]) -> Self {
        let n = events.len();
        let mut columns = EventColumns {
            ids: Vec::with_capacity(n),
            types: Vec::with_capacity(n),
            apiresources: Vec::with_capacity(n),
            revisions: Vec::with_capacity(n),
            lsns: Vec::with_capacity(n),
            times: Vec::with_capacity(n),
            tables: Vec::with_capacity(n),
            bodies: Vec::with_capacity(n),
            errors: Vec::with_capacity(n),
            seqs: Vec::with_capacity(n),
        };
        for e in events {
            columns.ids.push(e.id);
            columns.types.push(e.event_type.as_str());
            columns.apiresources.push(e.apiresource.as_str());
            columns.revisions.push(e.revision);
            columns.lsns.push(e.commit_lsn.to_string());
            columns.times.push(e.commit_time);
            columns.tables.push(e.source_table.as_str());
            columns.bodies.push(e.body.as_deref());
            columns.errors.push(e.error.as_deref());
            columns.seqs.push(e.seq as i32);
        }
        columns
    }
}

/// Where a delivery of a batch is kept until it is attempted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// A pending row now, claimed by the dispatcher.
    Row,
    /// Memory: attempted by this instance, its row written with the outcome
    /// (its event owes it, in `owed`).
    Memory,
    /// No row yet: its subscription is slow or failing, and its event names
    /// it in `deferred` until it is given a row ([`super::deferrals`]).
    Deferred,
}

/// Where each delivery of a batch goes: a pending row now, memory (its
/// event then owes it, in `owed`), or deferred (named in `deferred`).
struct Deliveries<'a> {
    pending: PendingRows<'a>,
    /// (event index, subscription) of the deliveries given no row now
    /// (from memory or deferred): a replayed event gets rows for them.
    without_row: Vec<(usize, Uuid)>,
    /// Per event, the subscriptions it owes from memory, as a uuid[] literal.
    owed: Vec<Option<String>>,
    /// Per event, the deferred subscriptions, as a uuid[] literal.
    deferred: Vec<Option<String>>,
    /// The subscriptions deliveries were deferred to, once each.
    deferred_to: Vec<Uuid>,
}

/// Add `subscription` to a uuid[] literal being built (opened on the first).
fn push_uuid(list: &mut Option<String>, subscription: Uuid) {
    let list = list.get_or_insert_with(|| String::from("{"));
    if list.len() > 1 {
        list.push(',');
    }
    list.push_str(
        subscription
            .hyphenated()
            .encode_lower(&mut Uuid::encode_buffer()),
    );
}

impl<'a> Deliveries<'a> {
    /// Rows now for deliveries placed in a row; those attempted from memory
    /// get theirs with the outcome and deferred ones as their subscription
    /// takes them, unless their event turns out to be a replay (see
    /// [`write_batch`]). An event that could not be built is stored with
    /// its error, not sent.
    fn sort(
        events: &'a [Event],
        lsns: &'a [String],
        placement: impl Fn(usize, Uuid) -> Placement,
    ) -> Self {
        let mut sorted = Deliveries {
            pending: PendingRows::default(),
            without_row: Vec::new(),
            owed: vec![None; events.len()],
            deferred: vec![None; events.len()],
            deferred_to: Vec::new(),
        };
        for (i, e) in events.iter().enumerate() {
            if e.body.is_none() {
                continue;
            }
            for sub in &e.subscriptions {
                match placement(i, *sub) {
                    Placement::Row => sorted.pending.push(e, *sub, &lsns[i]),
                    Placement::Memory => {
                        sorted.without_row.push((i, *sub));
                        push_uuid(&mut sorted.owed[i], *sub);
                    }
                    Placement::Deferred => {
                        sorted.without_row.push((i, *sub));
                        push_uuid(&mut sorted.deferred[i], *sub);
                        if !sorted.deferred_to.contains(sub) {
                            sorted.deferred_to.push(*sub);
                        }
                    }
                }
            }
            for list in [&mut sorted.owed[i], &mut sorted.deferred[i]]
                .into_iter()
                .flatten()
            {
                list.push('}');
            }
        }
        sorted
    }
}

/// Store `events` (with their deliveries) in one statement, and a second
/// only when an event was a replay with deliveries meant for memory or
/// deferred. `placement` says, per (event index, subscription), where the
/// delivery is kept; for an event stored for the first time only those
/// placed in a row get one now.
pub async fn write_batch(
    client: &mut PreparedClient,
    events: &[Event],
    placement: impl Fn(usize, Uuid) -> Placement,
) -> Result<Written, StoreError> {
    if events.is_empty() {
        return Ok(Written::default());
    }
    let columns = EventColumns::of(events);
    let deliveries = Deliveries::sort(events, &columns.lsns, placement);
    let pending = &deliveries.pending;
    let params: [&(dyn ToSql + Sync); 17] = [
        &columns.ids,
        &columns.types,
        &columns.apiresources,
        &columns.revisions,
        &columns.lsns,
        &columns.times,
        &columns.tables,
        &columns.bodies,
        &columns.errors,
        &columns.seqs,
        &pending.events,
        &pending.subscriptions,
        &pending.apiresources,
        &pending.lsns,
        &pending.seqs,
        &deliveries.owed,
        &deliveries.deferred,
    ];
    let (new_batch, replay) = if deliveries.deferred_to.is_empty() {
        (WRITE_NEW_BATCH, WRITE_BATCH)
    } else {
        (WRITE_NEW_BATCH_DEFERRING, WRITE_BATCH_DEFERRING)
    };
    let statement = client.statement(new_batch).await?;
    let row = match client.client().query_one(&statement, &params).await {
        Err(error) if error.code() == Some(&SqlState::UNIQUE_VIOLATION) => {
            let statement = client.statement(replay).await?;
            client.client().query_one(&statement, &params).await?
        }
        row => row?,
    };
    let index: HashMap<Uuid, usize> = columns
        .ids
        .iter()
        .enumerate()
        .map(|(i, id)| (*id, i))
        .collect();
    let mut new_events = vec![false; events.len()];
    for id in row.try_get::<_, Vec<Uuid>>(0)? {
        if let Some(&i) = index.get(&id) {
            new_events[i] = true;
        }
    }
    let inserted = row.try_get::<_, i64>(1)? as u64;
    let replayed = insert_replayed(
        client,
        events,
        &columns.lsns,
        &deliveries.without_row,
        &new_events,
    )
    .await?;
    Ok(Written {
        new_events,
        pending: inserted + replayed,
        deferred_to: deliveries.deferred_to,
    })
}

/// Pending rows for the deliveries of replayed events, unless the stored
/// event defers them already (its subscription's deferral gives them rows,
/// in order). Read per replay, not prepared: it looks events up by id.
const INSERT_REPLAYED: &str = insert_pending_rows!(
    "  JOIN walhook.events e ON e.id = d.event_id
 WHERE e.deferred IS NULL OR NOT d.subscription_id = ANY (e.deferred)
"
);

/// Pending rows alone for the deliveries of replayed events that were to be
/// attempted from memory or deferred (they may have rows from before, so
/// they are claimed instead; those the stored event defers are left to its
/// subscription's deferral, see [`INSERT_REPLAYED`]). The batch's events
/// are committed: a failure here drops the session before its position is
/// published, and the replay inserts these rows.
async fn insert_replayed(
    client: &mut PreparedClient,
    events: &[Event],
    lsns: &[String],
    without_row: &[(usize, Uuid)],
    new_events: &[bool],
) -> Result<u64, StoreError> {
    let mut replayed = PendingRows::default();
    for &(i, sub) in without_row {
        if !new_events[i] {
            replayed.push(&events[i], sub, &lsns[i]);
        }
    }
    if replayed.events.is_empty() {
        return Ok(0);
    }
    Ok(client
        .client()
        .execute(
            INSERT_REPLAYED,
            &[
                &replayed.events,
                &replayed.subscriptions,
                &replayed.apiresources,
                &replayed.lsns,
                &replayed.seqs,
            ],
        )
        .await?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::prepared::growing_table_read;

    #[test]
    fn the_batch_statements_read_no_growing_table_so_they_are_prepared() {
        let all = [
            WRITE_NEW_BATCH,
            WRITE_BATCH,
            WRITE_NEW_BATCH_DEFERRING,
            WRITE_BATCH_DEFERRING,
        ];
        for sql in all {
            assert_eq!(growing_table_read(sql), None, "{sql}");
        }
        // events and deliveries: plain inserts, or skipping what exists
        assert!(!WRITE_NEW_BATCH.contains("ON CONFLICT"));
        assert_eq!(WRITE_BATCH.matches("ON CONFLICT").count(), 2);
        // a batch that defers also counts, in an upsert
        for (deferring, plain) in [
            (WRITE_NEW_BATCH_DEFERRING, WRITE_NEW_BATCH),
            (WRITE_BATCH_DEFERRING, WRITE_BATCH),
        ] {
            assert_eq!(
                deferring.matches("ON CONFLICT").count(),
                plain.matches("ON CONFLICT").count() + 1
            );
            assert!(deferring.contains("INSERT INTO walhook.deferrals"));
            assert!(!plain.contains("walhook.deferrals"));
        }
    }
}
