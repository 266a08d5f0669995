//! `walhook replay`: queue stored events again for one subscription, with the
//! same event ids.
//!
//! Which events match the subscription's patterns is decided by the same
//! matcher as delivery creation (`mapping::subscriptions::pattern_matches`), applied to the distinct
//! event types in the revision range; PostgreSQL then queues the events of the
//! matching types in one statement. A replayed delivery keeps the event's
//! position in its transaction (`seq`), so an `ordered` subscription gets the
//! transaction's changes in commit order again.

use tokio_postgres::Client;
use uuid::Uuid;

use crate::mapping::subscriptions::pattern_matches;

#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("no subscription {0}: check the id in walhook.subscriptions")]
    NoSubscription(Uuid),
    #[error("replaying events failed: {0}")]
    Database(#[from] tokio_postgres::Error),
}

/// Distinct types of the replayable events in the revision range.
const TYPES: &str = "
SELECT DISTINCT type FROM walhook.events
 WHERE revision >= $1 AND ($2::int8 IS NULL OR revision <= $2) AND body IS NOT NULL";

/// Queue the events of the given types: missing deliveries are created, existing
/// ones go back to pending. `seq` comes from the event, or (events stored
/// before it was recorded there) from the event's other deliveries.
const QUEUE: &str = "
INSERT INTO walhook.deliveries (event_id, subscription_id, apiresource, commit_lsn, seq)
SELECT e.id, $1, e.apiresource, e.commit_lsn,
       coalesce(e.seq,
                (SELECT max(d.seq) FROM walhook.deliveries d WHERE d.event_id = e.id),
                0)
  FROM walhook.events e
 WHERE e.revision >= $2 AND ($3::int8 IS NULL OR e.revision <= $3) AND e.body IS NOT NULL
   AND e.type = ANY($4)
ON CONFLICT (event_id, subscription_id)
DO UPDATE SET status = 'pending', next_attempt_at = now(),
              seq = greatest(walhook.deliveries.seq, EXCLUDED.seq)";

/// Queue the events with revisions in `from..=to` that match the subscription's
/// patterns. Returns how many deliveries were queued.
pub async fn replay(
    client: &mut Client,
    subscription: Uuid,
    from_revision: i64,
    to_revision: Option<i64>,
) -> Result<u64, ReplayError> {
    let tx = client
        .build_transaction()
        .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
        .start()
        .await?;
    let patterns: Vec<String> = tx
        .query_opt(
            "SELECT events FROM walhook.subscriptions WHERE id = $1",
            &[&subscription],
        )
        .await?
        .ok_or(ReplayError::NoSubscription(subscription))?
        .try_get(0)?;
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
            &[&subscription, &from_revision, &to_revision, &matching],
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
}
