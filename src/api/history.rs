//! Delivery history and the audit log: a webhook's deliveries, one event,
//! redelivery, and `/v1/audit`.

use axum::Json;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use serde_json::Value;

use super::error::{ApiError, ErrorBody, ErrorDetail};
use super::pagination::{Page, Query, encode_cursor};
use super::webhooks::parse_id;
use super::{Actor, ApiState, read_conn, write_tx};
use crate::store::audit::{self, AuditEntry};
use crate::store::history::{self, Delivery, Event, STATUSES};
use crate::store::webhooks;

/// An id of a delivery or audit entry (a cursor's key, a path's id): a
/// positive integer.
pub(super) fn decode_id(key: &str) -> Option<i64> {
    key.parse::<i64>().ok().filter(|id| *id > 0)
}

/// A deliveries listing's `status`, when given: pending, succeeded or failed.
pub(super) fn status_param(query: &Query) -> Result<Option<&str>, ApiError> {
    let status = query.get("status");
    if let Some(status) = status.filter(|s| !STATUSES.contains(s)) {
        return Err(ApiError::invalid(ErrorDetail::new(
            "status",
            "query",
            Value::String(status.to_owned()),
            "status must be pending, succeeded or failed",
        )));
    }
    Ok(status)
}

/// List a webhook's deliveries
///
/// Newest first, with the attempt count and the last attempt's outcome.
#[utoipa::path(get, path = "/v1/webhooks/{id}/deliveries", operation_id = "listDeliveries", tag = "deliveries",
    params(
        ("id" = Uuid, Path, description = "Webhook id"),
        ("status" = Option<String>, Query, description = "pending, succeeded or failed"),
        ("limit" = Option<i64>, Query, description = "1-100, default 20"),
        ("cursor" = Option<String>, Query, description = "nextCursor of the previous page")),
    responses(
        (status = 200, description = "A page of deliveries", body = super::schema::DeliveryPage),
        (status = 400, description = "Malformed id, status, limit or cursor", body = ErrorBody),
        (status = 401, description = "Missing or wrong token", body = ErrorBody),
        (status = 404, description = "No such webhook", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn deliveries(
    State(state): State<ApiState>,
    Path(raw_id): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Json<Page<Delivery>>, ApiError> {
    let id = parse_id(&raw_id)?;
    let query = Query::parse(raw.as_deref(), &["status", "limit", "cursor"])?;
    let limit = query.limit()?;
    let before = query.cursor('d', decode_id)?;
    let status = status_param(&query)?;
    let conn = read_conn(&state).await?;
    if webhooks::get(&conn, id).await?.is_none() {
        return Err(ApiError::not_found("webhook", &raw_id));
    }
    let rows = history::deliveries(&conn, id, status, before, limit + 1).await?;
    Ok(Json(Page::new(rows, limit, |d| {
        encode_cursor('d', &d.id.to_string())
    })))
}

/// Get an event
#[utoipa::path(get, path = "/v1/events/{id}", operation_id = "getEvent", tag = "events",
    params(("id" = Uuid, Path, description = "Event id (the webhook-id header)")),
    responses(
        (status = 200, description = "The event", body = Event),
        (status = 400, description = "Malformed id", body = ErrorBody),
        (status = 401, description = "Missing or wrong token", body = ErrorBody),
        (status = 404, description = "No such event", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn event(
    State(state): State<ApiState>,
    Path(raw_id): Path<String>,
) -> Result<Json<Event>, ApiError> {
    let id = parse_id(&raw_id)?;
    let conn = read_conn(&state).await?;
    history::event(&conn, id)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::not_found("event", &raw_id))
}

/// Redeliver a delivery
///
/// Puts the delivery back to pending now, its retry schedule restarted
/// (`walhook.redeliver`).
#[utoipa::path(post, path = "/v1/deliveries/{id}/redeliver", operation_id = "redeliver", tag = "deliveries",
    params(("id" = i64, Path, description = "Delivery id")),
    responses(
        (status = 202, description = "Queued again", body = Delivery),
        (status = 400, description = "Malformed id", body = ErrorBody),
        (status = 401, description = "Missing or wrong token", body = ErrorBody),
        (status = 404, description = "No such delivery", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn redeliver(
    State(state): State<ApiState>,
    actor: Actor,
    Path(raw_id): Path<String>,
) -> Result<(StatusCode, Json<Delivery>), ApiError> {
    let id = decode_id(&raw_id).ok_or_else(|| {
        ApiError::invalid(ErrorDetail::new(
            "id",
            "path",
            Value::String(raw_id.clone()),
            "must be a positive integer (a delivery id)",
        ))
    })?;
    let mut conn = read_conn(&state).await?;
    let tx = write_tx(&mut conn, &actor).await?;
    let delivery = history::redeliver(&tx, id)
        .await?
        .ok_or_else(|| ApiError::not_found("delivery", &raw_id))?;
    tx.commit().await?;
    Ok((StatusCode::ACCEPTED, Json(delivery)))
}

/// List the audit log
///
/// Every change to routes, subscriptions, settings, API tokens and signing
/// keys, newest first, secrets redacted.
#[utoipa::path(get, path = "/v1/audit", operation_id = "listAudit", tag = "audit",
    params(
        ("limit" = Option<i64>, Query, description = "1-100, default 20"),
        ("cursor" = Option<String>, Query, description = "nextCursor of the previous page")),
    responses(
        (status = 200, description = "A page of audit entries", body = super::schema::AuditPage),
        (status = 400, description = "Invalid limit or cursor", body = ErrorBody),
        (status = 401, description = "Missing or wrong token", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn audit_log(
    State(state): State<ApiState>,
    RawQuery(raw): RawQuery,
) -> Result<Json<Page<AuditEntry>>, ApiError> {
    let query = Query::parse(raw.as_deref(), &["limit", "cursor"])?;
    let limit = query.limit()?;
    let before = query.cursor('a', decode_id)?;
    let conn = read_conn(&state).await?;
    let rows = audit::list(&conn, before, limit + 1).await?;
    Ok(Json(Page::new(rows, limit, |a| {
        encode_cursor('a', &a.id.to_string())
    })))
}
