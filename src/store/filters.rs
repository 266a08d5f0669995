//! Row filters, evaluated by PostgreSQL for a batch of events before it is
//! stored.
//!
//! Mapping leaves each event addressed to every subscription whose patterns
//! match, and marks the ones with a `filter` still to check
//! ([`crate::mapping::filter`]). [`apply`] evaluates all of a batch's checks in
//! one statement (`jsonb_path_match` over each event's document, with the
//! filter in force at the event's position in the stream) and removes from
//! each event the subscriptions whose filter did not match, so they get no
//! delivery. A batch without filters sends no statement.
//!
//! A filter never stops the pipeline. It is evaluated in lax mode with
//! `silent => true`: a missing field or a value of the wrong type makes a
//! comparison unknown, and an unknown result is no match. The few errors
//! silent mode does not suppress (a date compared with a timestamp with time
//! zone, which needs `jsonb_path_match_tz`) fail the batch's statement; the
//! checks are then evaluated one by one, and the one that errs is no match.
//! Either case is logged once per subscription and filter.

use std::collections::HashSet;
use std::sync::{Arc, LazyLock, Mutex};

use tokio_postgres::types::ToSql;
use uuid::Uuid;

use super::prepared::PreparedClient;
use crate::mapping::event::Event;

/// Every check of a batch: `$1` the documents, `$2`/`$3` per check its
/// document's index (1-based) and its filter. One row per check, in order,
/// with its result (NULL: unknown).
const EVALUATE: &str = "
SELECT jsonb_path_match(d.document::jsonb, c.filter::jsonpath, '{}', true)
  FROM unnest($2::int4[], $3::text[]) WITH ORDINALITY AS c(document, filter, n)
  JOIN unnest($1::text[]) WITH ORDINALITY AS d(document, i) ON d.i = c.document
 ORDER BY c.n";

/// One check alone, after the batch's statement failed.
const EVALUATE_ONE: &str =
    "SELECT jsonb_path_match($1::text::jsonb, $2::text::jsonpath, '{}', true)";

/// `(subscription, filter)` pairs.
type Pairs = HashSet<(Uuid, Arc<str>)>;

/// The filters already logged as failing, so each is logged once.
static LOGGED: LazyLock<Mutex<Pairs>> = LazyLock::new(Default::default);

/// One check: the event it is for, the subscription and its filter.
struct Check {
    event: usize,
    subscription: Uuid,
    filter: Arc<str>,
}

/// Evaluate the filter checks of `events` and drop the subscriptions whose
/// filter does not match; every event leaves without checks. Fails only when
/// the connection does (the caller drops the session and the batch is
/// mapped again from the WAL).
pub async fn apply(
    client: &mut PreparedClient,
    events: &mut [Event],
) -> Result<(), tokio_postgres::Error> {
    let mut documents: Vec<&str> = Vec::new();
    let mut checks: Vec<Check> = Vec::new();
    for (i, event) in events.iter().enumerate() {
        let Some(check) = &event.filter else { continue };
        documents.push(&check.document);
        for (subscription, filter) in &check.filters {
            checks.push(Check {
                event: i,
                subscription: *subscription,
                filter: filter.clone(),
            });
        }
    }
    if checks.is_empty() {
        return Ok(());
    }
    let results = match evaluate(client, &documents, events, &checks).await {
        Ok(results) => results,
        Err(error) if error.as_db_error().is_some() => one_by_one(client, events, &checks).await?,
        Err(error) => return Err(error),
    };
    let mut refused: Vec<(usize, Uuid)> = Vec::new();
    for (check, result) in checks.iter().zip(results) {
        match result {
            Ok(Some(true)) => {}
            Ok(Some(false)) => refused.push((check.event, check.subscription)),
            Ok(None) => {
                refused.push((check.event, check.subscription));
                log_once(
                    check,
                    &events[check.event],
                    "the result is unknown (a value of an unexpected type, or an error silent mode hides)",
                );
            }
            Err(error) => {
                refused.push((check.event, check.subscription));
                log_once(check, &events[check.event], &error);
            }
        }
    }
    for event in events.iter_mut() {
        event.filter = None;
    }
    for (i, subscription) in refused {
        events[i].subscriptions.retain(|s| *s != subscription);
    }
    Ok(())
}

/// The batch's checks in one statement.
async fn evaluate(
    client: &mut PreparedClient,
    documents: &[&str],
    events: &[Event],
    checks: &[Check],
) -> Result<Vec<Result<Option<bool>, String>>, tokio_postgres::Error> {
    // the document index of each check, 1-based, in the order documents were listed
    let mut index = Vec::with_capacity(checks.len());
    let mut n = 0i32;
    let mut last = None;
    for check in checks {
        if last != Some(check.event) {
            n += 1;
            last = Some(check.event);
        }
        index.push(n);
    }
    debug_assert_eq!(n as usize, documents.len());
    debug_assert!(checks.iter().all(|c| events[c.event].filter.is_some()));
    let filters: Vec<&str> = checks.iter().map(|c| &*c.filter).collect();
    let statement = client.statement(EVALUATE).await?;
    let params: [&(dyn ToSql + Sync); 3] = [&documents, &index, &filters];
    let rows = client.client().query(&statement, &params).await?;
    rows.iter()
        .map(|row| row.try_get::<_, Option<bool>>(0).map(Ok))
        .collect()
}

/// Each check in its own statement: one that errs is that check's error,
/// unless the connection failed.
async fn one_by_one(
    client: &mut PreparedClient,
    events: &[Event],
    checks: &[Check],
) -> Result<Vec<Result<Option<bool>, String>>, tokio_postgres::Error> {
    let statement = client.statement(EVALUATE_ONE).await?;
    let mut results = Vec::with_capacity(checks.len());
    for check in checks {
        let document = events[check.event]
            .filter
            .as_ref()
            .map_or("{}", |c| c.document.as_str());
        let filter: &str = &check.filter;
        match client
            .client()
            .query_one(&statement, &[&document, &filter])
            .await
        {
            Ok(row) => results.push(Ok(row.try_get::<_, Option<bool>>(0)?)),
            Err(error) if error.as_db_error().is_some() => {
                results.push(Err(crate::error::describe(&error)));
            }
            Err(error) => return Err(error),
        }
    }
    Ok(results)
}

/// Log a check that could not say yes or no, once per subscription and
/// filter.
fn log_once(check: &Check, event: &Event, error: &str) {
    let first = LOGGED
        .lock()
        .map(|mut logged| logged.insert((check.subscription, check.filter.clone())))
        .unwrap_or(true);
    if first {
        tracing::warn!(
            subscription_id = %check.subscription,
            event_id = %event.id,
            event_type = %event.event_type,
            filter = %check.filter,
            error,
            "a row filter could not be evaluated; the event is not delivered to this subscription (logged once per filter): fix the filter in walhook.subscriptions"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::prepared::growing_table_read;

    #[test]
    fn the_filter_statements_read_no_table_so_they_are_prepared() {
        assert_eq!(growing_table_read(EVALUATE), None);
        assert_eq!(growing_table_read(EVALUATE_ONE), None);
    }
}
