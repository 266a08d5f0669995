//! One delivery and its attempts, and the event search: what the console's
//! delivery and event pages show (`GET /v1/deliveries/{id}`,
//! `GET /v1/deliveries/{id}/attempts`, `GET /v1/events`).
//!
//! Read-only views over `walhook.deliveries`, `walhook.delivery_attempts` and
//! `walhook.events`, keyset-paged like the other lists.

use axum::Json;
use axum::extract::{Path, RawQuery, State};
use chrono::{DateTime, Utc};
use serde_json::Value;
use tokio_postgres::Row;
use uuid::Uuid;

use super::error::{ApiError, ErrorBody, ErrorDetail};
use super::pagination::{Page, Query, encode_cursor};
use super::schema::{Attempt, DeliveryDetail};
use super::{ApiState, read_conn};
use crate::store::history::{self, Event};

fn delivery_id(raw: &str) -> Result<i64, ApiError> {
    raw.parse::<i64>().ok().filter(|id| *id > 0).ok_or_else(|| {
        ApiError::invalid(ErrorDetail::new(
            "id",
            "path",
            Value::String(raw.to_owned()),
            "must be a positive integer (a delivery id)",
        ))
    })
}

/// Get a delivery
///
/// Its status, attempt count and last outcome, and the webhook it belongs to.
#[utoipa::path(get, path = "/v1/deliveries/{id}", operation_id = "getDelivery", tag = "deliveries",
    params(("id" = i64, Path, description = "Delivery id")),
    responses(
        (status = 200, description = "The delivery", body = DeliveryDetail),
        (status = 400, description = "Malformed id", body = ErrorBody),
        (status = 401, description = "Missing or wrong token", body = ErrorBody),
        (status = 404, description = "No such delivery", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn get(
    State(state): State<ApiState>,
    Path(raw_id): Path<String>,
) -> Result<Json<DeliveryDetail>, ApiError> {
    let id = delivery_id(&raw_id)?;
    let conn = read_conn(&state).await?;
    let not_found = || ApiError::not_found("delivery", &raw_id);
    let webhook_id: Uuid = conn
        .query_opt(
            "SELECT subscription_id FROM walhook.deliveries WHERE id = $1",
            &[&id],
        )
        .await?
        .ok_or_else(not_found)?
        .get(0);
    // the newest of the webhook's deliveries up to this one: this one
    let delivery = history::deliveries(&conn, webhook_id, None, Some(id.saturating_add(1)), 1)
        .await?
        .into_iter()
        .find(|d| d.id == id)
        .ok_or_else(not_found)?;
    Ok(Json(DeliveryDetail {
        webhook_id,
        delivery,
    }))
}

/// List a delivery's attempts
///
/// Oldest first: time, duration, status code or error, and the start of the
/// response body.
#[utoipa::path(get, path = "/v1/deliveries/{id}/attempts", operation_id = "listAttempts", tag = "deliveries",
    params(
        ("id" = i64, Path, description = "Delivery id"),
        ("limit" = Option<i64>, Query, description = "1-100, default 20"),
        ("cursor" = Option<String>, Query, description = "nextCursor of the previous page")),
    responses(
        (status = 200, description = "A page of attempts", body = super::schema::AttemptPage),
        (status = 400, description = "Malformed id, limit or cursor", body = ErrorBody),
        (status = 401, description = "Missing or wrong token", body = ErrorBody),
        (status = 404, description = "No such delivery", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn attempts(
    State(state): State<ApiState>,
    Path(raw_id): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Json<Page<Attempt>>, ApiError> {
    let id = delivery_id(&raw_id)?;
    let query = Query::parse(raw.as_deref(), &["limit", "cursor"])?;
    let limit = query.limit()?;
    let after = query.cursor('t', |key| key.parse::<i32>().ok())?;
    let conn = read_conn(&state).await?;
    let exists = conn
        .query_opt("SELECT 1 FROM walhook.deliveries WHERE id = $1", &[&id])
        .await?;
    if exists.is_none() {
        return Err(ApiError::not_found("delivery", &raw_id));
    }
    let rows = conn
        .query(
            "SELECT attempt, attempted_at, duration_ms, status_code, error, response_body,
                    request_headers
               FROM walhook.delivery_attempts
              WHERE delivery_id = $1 AND ($2::int4 IS NULL OR attempt > $2)
              ORDER BY attempt LIMIT $3",
            &[&id, &after, &(limit + 1)],
        )
        .await?;
    let attempts = rows
        .iter()
        .map(|r| Attempt {
            attempt: r.get(0),
            attempted_at: r.get(1),
            duration_ms: r.get(2),
            status_code: r.get(3),
            error: r.get(4),
            response_body: r.get(5),
            request_headers: r.get(6),
        })
        .collect();
    Ok(Json(Page::new(attempts, limit, |a| {
        encode_cursor('t', &a.attempt.to_string())
    })))
}

/// A filter that is an exact value, or a prefix when it ends in `*`.
pub(super) fn exact_or_prefix(filter: Option<&str>) -> (Option<String>, Option<String>) {
    match filter {
        Some(f) => match f.strip_suffix('*') {
            Some(prefix) => (None, Some(prefix.to_owned())),
            None => (Some(f.to_owned()), None),
        },
        None => (None, None),
    }
}

fn event(row: &Row) -> Event {
    Event {
        id: row.get(0),
        event_type: row.get(1),
        apiresource: row.get(2),
        revision: row.get(3),
        commit_time: row.get(4),
        body: row.get(5),
    }
}

fn decode_event_cursor(key: &str) -> Option<(DateTime<Utc>, Uuid)> {
    let (micros, id) = key.split_once(':')?;
    let at = DateTime::from_timestamp_micros(micros.parse().ok()?)?;
    Some((at, Uuid::parse_str(id).ok()?))
}

fn revision(query: &Query, param: &str) -> Result<Option<i64>, ApiError> {
    query
        .get(param)
        .map(|raw| {
            raw.parse::<i64>().map_err(|_| {
                ApiError::invalid(ErrorDetail::new(
                    param,
                    "query",
                    Value::String(raw.to_owned()),
                    "must be an integer revision",
                ))
            })
        })
        .transpose()
}

/// Search events
///
/// Newest first (by commit time). `type` is an exact type or `prefix.*`;
/// `apiresource` an exact path or a prefix ending in `*`; `fromRevision` and
/// `toRevision` bound the revision, both inclusive.
#[utoipa::path(get, path = "/v1/events", operation_id = "searchEvents", tag = "events",
    params(
        ("type" = Option<String>, Query, description = "exact type or prefix.*"),
        ("apiresource" = Option<String>, Query, description = "exact path, or a prefix ending in *"),
        ("fromRevision" = Option<i64>, Query, description = "lowest revision, inclusive"),
        ("toRevision" = Option<i64>, Query, description = "highest revision, inclusive"),
        ("limit" = Option<i64>, Query, description = "1-100, default 20"),
        ("cursor" = Option<String>, Query, description = "nextCursor of the previous page")),
    responses(
        (status = 200, description = "A page of events", body = super::schema::EventPage),
        (status = 400, description = "Invalid parameter", body = ErrorBody),
        (status = 401, description = "Missing or wrong token", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn search(
    State(state): State<ApiState>,
    RawQuery(raw): RawQuery,
) -> Result<Json<Page<Event>>, ApiError> {
    let query = Query::parse(
        raw.as_deref(),
        &[
            "type",
            "apiresource",
            "fromRevision",
            "toRevision",
            "limit",
            "cursor",
        ],
    )?;
    let limit = query.limit()?;
    let before = query.cursor('e', decode_event_cursor)?;
    let from = revision(&query, "fromRevision")?;
    let to = revision(&query, "toRevision")?;
    let (type_exact, type_prefix) = exact_or_prefix(query.get("type"));
    let (path_exact, path_prefix) = exact_or_prefix(query.get("apiresource"));
    let (before_time, before_id) = before.unzip();
    let conn = read_conn(&state).await?;
    let rows = conn
        .query(
            "SELECT id, type, apiresource, revision, commit_time, body
               FROM walhook.events
              WHERE ($1::text IS NULL OR type = $1)
                AND ($2::text IS NULL OR starts_with(type, $2))
                AND ($3::text IS NULL OR apiresource = $3)
                AND ($4::text IS NULL OR starts_with(apiresource, $4))
                AND ($5::int8 IS NULL OR revision >= $5)
                AND ($6::int8 IS NULL OR revision <= $6)
                AND ($7::timestamptz IS NULL OR (commit_time, id) < ($7, $8::uuid))
              ORDER BY commit_time DESC, id DESC LIMIT $9",
            &[
                &type_exact,
                &type_prefix,
                &path_exact,
                &path_prefix,
                &from,
                &to,
                &before_time,
                &before_id,
                &(limit + 1),
            ],
        )
        .await?;
    let events = rows.iter().map(event).collect();
    Ok(Json(Page::new(events, limit, |e| {
        encode_cursor(
            'e',
            &format!("{}:{}", e.commit_time.timestamp_micros(), e.id),
        )
    })))
}
