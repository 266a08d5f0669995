//! `GET /v1/status`: what `walhook status --json` reports (the slot's position
//! and lag, WAL retained, events and deliveries of the last hour, pending and
//! failing, backfills), for the console's health page.
//!
//! The API is not told which slot the daemon streams; the slot walhook
//! records in `walhook.slot_identity` is the one reported, unless `?slot=`
//! names another.

use axum::Json;
use axum::extract::{RawQuery, State};
use serde_json::Value;

use super::error::{ApiError, ErrorBody};
use super::pagination::Query;
use super::{ApiState, read_conn};

/// The slot reported when walhook has recorded none (the `--slot` default).
const DEFAULT_SLOT: &str = "walhook";

/// Get the status
///
/// The same document as `walhook status --json`: `slot` (`name`, `exists`,
/// `active`, `lag_bytes`, `lag_seconds`, `confirmed_flush_lsn`,
/// `retained_wal_bytes`, `wal_status`, `warnings`, ...), `events_last_hour`
/// and `deliveries_last_hour` (pairs of name and count),
/// `pending_deliveries` (rows), `owed_without_row` (first attempts in
/// memory), `deferred_without_row` (a slow or failing subscription's
/// deferred backlog), `failing_subscriptions` and `backfills`.
#[utoipa::path(get, path = "/v1/status", operation_id = "getStatus", tag = "status",
    params(("slot" = Option<String>, Query,
            description = "the slot to report; default the one walhook records in walhook.slot_identity, else walhook")),
    responses(
        (status = 200, description = "The status report", body = Value),
        (status = 400, description = "Unknown query parameter", body = ErrorBody),
        (status = 401, description = "Missing or wrong token", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn status(
    State(state): State<ApiState>,
    RawQuery(raw): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let query = Query::parse(raw.as_deref(), &["slot"])?;
    let conn = read_conn(&state).await?;
    let slot = match query.get("slot") {
        Some(slot) => slot.to_owned(),
        None => conn
            .query_opt(
                "SELECT slot_name FROM walhook.slot_identity ORDER BY confirmed_at DESC LIMIT 1",
                &[],
            )
            .await?
            .map_or_else(|| DEFAULT_SLOT.to_owned(), |row| row.get(0)),
    };
    let report = crate::status::collect(&conn, &slot).await?;
    serde_json::to_value(report)
        .map(Json)
        .map_err(|e| ApiError::internal(&e))
}
