//! `walhook replay`: queue stored events again for one subscription, with the
//! same event ids.
//!
//! Which events match the subscription's patterns is decided by the same
//! matcher as delivery creation (`mapping::subscriptions::pattern_matches`), applied to the distinct
//! event types in the revision range; PostgreSQL then queues the events of the
//! matching types in one statement. A subscription with a row filter is
//! replayed over the events its filter matched when they were stored: those
//! with a delivery row for it, or owed to it from memory (the filter's
//! document is not stored, so an event is never judged again by a filter
//! written since). A replayed delivery keeps the event's
//! position in its transaction (`seq`), so an `ordered` subscription gets the
//! transaction's changes in commit order again.
//!
//! Replay runs while walhook delivers: the dispatcher and the recorder update
//! the same delivery rows. Its transaction is READ COMMITTED, so its upsert
//! waits for a row being updated and then sets the row's newest version back
//! to pending, which is what a replay asks for. REPEATABLE READ bought nothing
//! here and failed the replay instead ("could not serialize access due to
//! concurrent update") whenever a delivery changed after its snapshot. Under
//! READ COMMITTED each statement sees the events committed before it began:
//! an event stored between the two reads is queued when its type was read
//! (it matches the subscription, so queueing it is right either way) and left
//! to the writer otherwise (a new event gets its deliveries when it is
//! stored). What can still collide is retried: a deadlock with a batch of the
//! recorder's updates, an event deleted by retention after the upsert read it
//! (its reference check fails; the next try does not see it), and a
//! serialization failure when the server's default isolation is stricter.

use std::time::Duration;

use rand::Rng;
use tokio_postgres::Client;
use tokio_postgres::error::SqlState;
use uuid::Uuid;

use crate::mapping::subscriptions::pattern_matches;

#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("no subscription {0}: check the id in walhook.subscriptions")]
    NoSubscription(Uuid),
    #[error("replaying events failed: {}", crate::error::describe(.0))]
    Database(#[from] tokio_postgres::Error),
}

/// Tries of a replay whose transaction collided with a concurrent one.
const TRIES: u32 = 10;

/// The wait after the first collision; it doubles after each, up to
/// [`MAX_WAIT`], and is jittered down by up to half.
const FIRST_WAIT: Duration = Duration::from_millis(20);
const MAX_WAIT: Duration = Duration::from_millis(500);

/// Distinct types of the replayable events in the revision range.
const TYPES: &str = "
SELECT DISTINCT type FROM walhook.events
 WHERE revision >= $1 AND ($2::int8 IS NULL OR revision <= $2) AND body IS NOT NULL";

/// Queue the events of the given types: missing deliveries are created, existing
/// ones go back to pending. `seq` comes from the event, or (events stored
/// before it was recorded there) from the event's other deliveries. `$5`:
/// the subscription has a row filter, so only events that were meant for it
/// (a delivery row, or owed from memory) are queued.
const QUEUE: &str = "
INSERT INTO walhook.deliveries (event_id, subscription_id, apiresource, commit_lsn, seq, ordered)
SELECT e.id, $1, e.apiresource, e.commit_lsn,
       coalesce(e.seq,
                (SELECT max(d.seq) FROM walhook.deliveries d WHERE d.event_id = e.id),
                0),
       (SELECT s.ordered FROM walhook.subscriptions s WHERE s.id = $1)
  FROM walhook.events e
 WHERE e.revision >= $2 AND ($3::int8 IS NULL OR e.revision <= $3) AND e.body IS NOT NULL
   AND e.type = ANY($4)
   AND (NOT $5::bool
        OR $1 = ANY(e.owed)
        OR EXISTS (SELECT 1 FROM walhook.deliveries d
                    WHERE d.event_id = e.id AND d.subscription_id = $1))
ON CONFLICT (event_id, subscription_id)
DO UPDATE SET status = 'pending', next_attempt_at = now(),
              seq = greatest(walhook.deliveries.seq, EXCLUDED.seq)";

/// Lift the session's `statement_timeout` for this transaction when it is
/// walhook's default (set for the daemon's short statements): the upsert
/// queues the whole range in one statement. A timeout the URL set stays.
const LIFT_TIMEOUT: &str = "
SELECT set_config('statement_timeout', '0', true) FROM pg_settings
 WHERE name = 'statement_timeout' AND setting::int8 = $1";

/// Queue the events with revisions in `from..=to` that match the subscription's
/// patterns. Returns how many deliveries were queued. A transaction that
/// collides with a concurrent one (see the module doc) is tried again, up to
/// [`TRIES`] times in all.
pub async fn replay(
    client: &mut Client,
    subscription: Uuid,
    from_revision: i64,
    to_revision: Option<i64>,
) -> Result<u64, ReplayError> {
    let mut tries = 1;
    loop {
        match queue(client, subscription, from_revision, to_revision).await {
            Err(ReplayError::Database(error)) if tries < TRIES && collided(&error) => {
                let wait = backoff(tries, &mut rand::thread_rng());
                tracing::warn!(
                    error = %crate::error::describe(&error),
                    tries,
                    retry_in = ?wait,
                    "replay collided with a concurrent transaction; trying again"
                );
                tokio::time::sleep(wait).await;
                tries += 1;
            }
            result => return result,
        }
    }
}

/// Whether a failed replay transaction may succeed when tried again: it
/// collided with a concurrent transaction.
fn collided(error: &tokio_postgres::Error) -> bool {
    [
        SqlState::T_R_SERIALIZATION_FAILURE,
        SqlState::T_R_DEADLOCK_DETECTED,
        SqlState::FOREIGN_KEY_VIOLATION,
    ]
    .iter()
    .any(|code| error.code() == Some(code))
}

/// The wait after the `tries`-th failed try: doubling from [`FIRST_WAIT`] up to
/// [`MAX_WAIT`], less a random part of up to half.
fn backoff(tries: u32, rng: &mut impl Rng) -> Duration {
    let wait = FIRST_WAIT
        .saturating_mul(1 << tries.saturating_sub(1).min(16))
        .min(MAX_WAIT);
    wait.mul_f64(rng.gen_range(0.5..=1.0))
}

/// One try: the whole replay in one READ COMMITTED transaction.
async fn queue(
    client: &mut Client,
    subscription: Uuid,
    from_revision: i64,
    to_revision: Option<i64>,
) -> Result<u64, ReplayError> {
    let tx = client
        .build_transaction()
        .isolation_level(tokio_postgres::IsolationLevel::ReadCommitted)
        .start()
        .await?;
    let default_timeout = i64::try_from(super::STATEMENT_TIMEOUT.as_millis()).unwrap_or(i64::MAX);
    tx.execute(LIFT_TIMEOUT, &[&default_timeout]).await?;
    let row = tx
        .query_opt(
            "SELECT events, filter IS NOT NULL FROM walhook.subscriptions WHERE id = $1",
            &[&subscription],
        )
        .await?
        .ok_or(ReplayError::NoSubscription(subscription))?;
    let patterns: Vec<String> = row.try_get(0)?;
    let filtered: bool = row.try_get(1)?;
    let types: Vec<String> = tx
        .query(TYPES, &[&from_revision, &to_revision])
        .await?
        .iter()
        .map(|row| row.try_get(0))
        .collect::<Result<_, _>>()?;
    let matching = matching_types(&patterns, types);
    let queued = if matching.is_empty() {
        0
    } else {
        tx.execute(
            QUEUE,
            &[
                &subscription,
                &from_revision,
                &to_revision,
                &matching,
                &filtered,
            ],
        )
        .await?
    };
    tx.commit().await?;
    Ok(queued)
}

/// The event types some pattern matches.
fn matching_types(patterns: &[String], types: Vec<String>) -> Vec<String> {
    types
        .into_iter()
        .filter(|t| patterns.iter().any(|p| pattern_matches(p, t)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn underscore_is_not_a_wildcard() {
        let types = [
            "software_statement.created",
            "softwareXstatement.created",
            "a.b",
        ]
        .map(String::from)
        .to_vec();
        assert_eq!(
            matching_types(&["software_statement.*".into()], types.clone()),
            ["software_statement.created"]
        );
        assert_eq!(matching_types(&["*".into()], types).len(), 3);
    }

    #[test]
    fn waits_double_to_a_cap_and_are_jittered_down_by_up_to_half() {
        let mut rng = rand::thread_rng();
        for _ in 0..100 {
            let first = backoff(1, &mut rng);
            assert!(first >= FIRST_WAIT / 2 && first <= FIRST_WAIT, "{first:?}");
            let third = backoff(3, &mut rng);
            assert!(
                third >= FIRST_WAIT * 2 && third <= FIRST_WAIT * 4,
                "{third:?}"
            );
            for tries in [6, TRIES, u32::MAX] {
                let late = backoff(tries, &mut rng);
                assert!(late >= MAX_WAIT / 2 && late <= MAX_WAIT, "{late:?}");
            }
        }
    }
}
