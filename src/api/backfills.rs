//! `/v1/backfills`: start a backfill, follow it, cancel it (rows of
//! `walhook.backfills`, as `walhook backfill` and SQL make them).
//!
//! The daemon that streams the slot does the work; these handlers only write
//! and read the row. The database decides what may be backfilled (a routed
//! table with a primary key, one boolean expression as `where`); its refusals
//! come back as 400s naming the field.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde_json::Value;
use tokio_postgres::error::SqlState;
use uuid::Uuid;

use super::error::{ApiError, ErrorBody, ErrorDetail, column_of};
use super::pool::Conn;
use super::schema::{Backfill, BackfillCreate, BackfillList};
use super::webhooks::parse_id;
use super::{ApiState, read_conn};
use crate::store::backfills::{self, BackfillStatus};

impl From<BackfillStatus> for Backfill {
    fn from(b: BackfillStatus) -> Self {
        Backfill {
            id: b.id,
            webhook_id: b.subscription_id,
            table: b.source_table,
            status: b.status,
            rows_sent: b.rows_sent,
            estimated_rows: b.estimated_rows,
            started_at: b.started_at,
            finished_at: b.finished_at,
            error: b.error,
        }
    }
}

/// The field a refusal of the database is about.
fn refusal(error: tokio_postgres::Error, body: &BackfillCreate) -> ApiError {
    let Some(db) = error.as_db_error() else {
        return ApiError::unavailable(&error);
    };
    let code = db.code();
    let refused = code == &SqlState::RAISE_EXCEPTION
        || code == &SqlState::CHECK_VIOLATION
        || code == &SqlState::UNDEFINED_TABLE
        || code == &SqlState::INVALID_SCHEMA_NAME
        || code.code().starts_with("22")
        || code.code().starts_with("42");
    if !refused {
        return ApiError::internal(&error);
    }
    // a rule names its column; a table name that does not resolve has none
    let column = column_of(db);
    let (param, value) = match column.as_deref() {
        Some("where_clause") => (
            "where",
            body.r#where.clone().map_or(Value::Null, Value::String),
        ),
        Some("subscription_id") => ("webhookId", Value::String(body.webhook_id.to_string())),
        Some("rows_per_second") => (
            "rowsPerSecond",
            body.rows_per_second.map_or(Value::Null, Value::from),
        ),
        _ => ("table", Value::String(body.table.clone())),
    };
    ApiError::invalid(ErrorDetail::new(param, "body", value, db.message()))
}

/// Start a backfill
///
/// Sends the table's current rows (or those matching `where`) to one webhook
/// as `<resource>.snapshot` events, consistent with the change stream. The
/// daemon that streams the slot runs backfills one at a time, oldest first.
#[utoipa::path(post, path = "/v1/backfills", operation_id = "createBackfill", tag = "backfills",
    request_body = BackfillCreate,
    responses(
        (status = 201, description = "Queued", body = Backfill),
        (status = 400, description = "Invalid input or refused by the database", body = ErrorBody),
        (status = 401, description = "Missing or wrong token", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn create(
    State(state): State<ApiState>,
    body: Bytes,
) -> Result<(StatusCode, Json<Backfill>), ApiError> {
    let input: BackfillCreate = serde_json::from_slice(&body).map_err(|e| {
        ApiError::invalid(ErrorDetail::new(
            "body",
            "body",
            Value::Null,
            format!(
                "the body must be {{\"webhookId\", \"table\", \"where\"?, \"rowsPerSecond\"?}}: {e}"
            ),
        ))
    })?;
    let conn = read_conn(&state).await?;
    let id = backfills::create(
        &conn,
        input.webhook_id,
        &input.table,
        input.r#where.as_deref(),
        input.rows_per_second,
    )
    .await
    .map_err(|e| refusal(e, &input))?;
    let created = backfills::progress(&conn, id)
        .await?
        .ok_or_else(|| ApiError::not_found("backfill", &id.to_string()))?;
    Ok((StatusCode::CREATED, Json(created.into())))
}

/// List backfills
///
/// The unfinished ones and those finished in the last hour, oldest first.
#[utoipa::path(get, path = "/v1/backfills", operation_id = "listBackfills", tag = "backfills",
    responses(
        (status = 200, description = "Recent backfills", body = BackfillList),
        (status = 401, description = "Missing or wrong token", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn list(State(state): State<ApiState>) -> Result<Json<BackfillList>, ApiError> {
    let conn = read_conn(&state).await?;
    let rows = backfills::recent(&conn).await?;
    Ok(Json(BackfillList {
        data: rows.into_iter().map(Backfill::from).collect(),
    }))
}

/// Get a backfill
#[utoipa::path(get, path = "/v1/backfills/{id}", operation_id = "getBackfill", tag = "backfills",
    params(("id" = Uuid, Path, description = "Backfill id")),
    responses(
        (status = 200, description = "The backfill and its progress", body = Backfill),
        (status = 400, description = "Malformed id", body = ErrorBody),
        (status = 401, description = "Missing or wrong token", body = ErrorBody),
        (status = 404, description = "No such backfill", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn get(
    State(state): State<ApiState>,
    Path(raw_id): Path<String>,
) -> Result<Json<Backfill>, ApiError> {
    let id = parse_id(&raw_id)?;
    let conn = read_conn(&state).await?;
    one(&conn, id, &raw_id).await
}

/// Cancel a backfill
///
/// A pending or running backfill stops before its next chunk; snapshots
/// already stored are still delivered. A finished one is left as it is.
#[utoipa::path(post, path = "/v1/backfills/{id}/cancel", operation_id = "cancelBackfill", tag = "backfills",
    params(("id" = Uuid, Path, description = "Backfill id")),
    responses(
        (status = 200, description = "The backfill after the request", body = Backfill),
        (status = 400, description = "Malformed id", body = ErrorBody),
        (status = 401, description = "Missing or wrong token", body = ErrorBody),
        (status = 404, description = "No such backfill", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn cancel(
    State(state): State<ApiState>,
    Path(raw_id): Path<String>,
) -> Result<Json<Backfill>, ApiError> {
    let id = parse_id(&raw_id)?;
    let conn = read_conn(&state).await?;
    conn.execute(
        "UPDATE walhook.backfills SET status = 'cancelled'
          WHERE id = $1 AND status IN ('pending', 'running')",
        &[&id],
    )
    .await?;
    one(&conn, id, &raw_id).await
}

/// Backfill `id` as it is now, or a 404 naming `raw_id`.
async fn one(conn: &Conn, id: Uuid, raw_id: &str) -> Result<Json<Backfill>, ApiError> {
    backfills::progress(conn, id)
        .await?
        .map(|b| Json(b.into()))
        .ok_or_else(|| ApiError::not_found("backfill", raw_id))
}
