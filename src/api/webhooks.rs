//! `/v1/webhooks`: create, list, read, update and delete subscriptions.
//!
//! A request body is checked field by field before any SQL runs
//! (`webhook_input`). What the fields must contain (URL rules, event patterns,
//! header names, ranges, a filter that parses) is the database's to decide, as
//! for SQL writes; its refusals come back as 400s naming the field too (see
//! `error`), with the value the client gave.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde_json::{Map, Value};
use uuid::Uuid;

use super::error::{ApiError, ErrorBody, ErrorDetail};
use super::pagination::{Page, Query, encode_cursor};
use super::pool::Conn;
use super::webhook_input::{REQUIRED, assignments, given};
use super::{Actor, ApiState, read_conn, write_tx};
use crate::store::webhooks::{self, Assignment, Webhook, WebhookKey};

pub fn parse_id(raw: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(raw).map_err(|_| {
        ApiError::invalid(ErrorDetail::new(
            "id",
            "path",
            Value::String(raw.to_owned()),
            "must be a UUID",
        ))
    })
}

fn webhook_cursor(w: &Webhook) -> String {
    encode_cursor(
        'w',
        &format!("{}:{}", w.created_at.timestamp_micros(), w.id),
    )
}

fn decode_webhook_cursor(key: &str) -> Option<WebhookKey> {
    let (micros, id) = key.split_once(':')?;
    let at = chrono::DateTime::from_timestamp_micros(micros.parse().ok()?)?;
    Some((at, Uuid::parse_str(id).ok()?))
}

/// Create a webhook
///
/// Only `url` and `events` are required; every other field takes its default.
/// The response is the only one that shows the webhook's `secret`.
#[utoipa::path(post, path = "/v1/webhooks", operation_id = "createWebhook", tag = "webhooks",
    request_body = super::schema::WebhookCreate,
    responses(
        (status = 201, description = "Created", body = Webhook),
        (status = 400, description = "Invalid input", body = ErrorBody),
        (status = 401, description = "Missing or wrong token", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn create(
    State(state): State<ApiState>,
    actor: Actor,
    body: Bytes,
) -> Result<impl IntoResponse, ApiError> {
    let (map, set) = assignments(&body, REQUIRED)?;
    let mut conn = read_conn(&state).await?;
    let written = async {
        let tx = write_tx(&mut conn, &actor).await?;
        let created = webhooks::insert(&tx, &set).await?;
        tx.commit().await?;
        Ok(created)
    }
    .await;
    let created = refused(written, &conn, &set, &map).await?;
    Ok((StatusCode::CREATED, Json(created)))
}

/// List webhooks
///
/// In creation order; pass `nextCursor` as `cursor` for the next page.
#[utoipa::path(get, path = "/v1/webhooks", operation_id = "listWebhooks", tag = "webhooks",
    params(
        ("limit" = Option<i64>, Query, description = "1-100, default 20"),
        ("cursor" = Option<String>, Query, description = "nextCursor of the previous page")),
    responses(
        (status = 200, description = "A page of webhooks", body = super::schema::WebhookPage),
        (status = 400, description = "Invalid limit or cursor", body = ErrorBody),
        (status = 401, description = "Missing or wrong token", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn list(
    State(state): State<ApiState>,
    RawQuery(raw): RawQuery,
) -> Result<Json<Page<Webhook>>, ApiError> {
    let query = Query::parse(raw.as_deref(), &["limit", "cursor"])?;
    let limit = query.limit()?;
    let after = query.cursor('w', decode_webhook_cursor)?;
    let conn = read_conn(&state).await?;
    let rows = webhooks::list(&conn, after, limit + 1).await?;
    Ok(Json(Page::new(rows, limit, webhook_cursor)))
}

/// Get a webhook
#[utoipa::path(get, path = "/v1/webhooks/{id}", operation_id = "getWebhook", tag = "webhooks",
    params(("id" = Uuid, Path, description = "Webhook id")),
    responses(
        (status = 200, description = "The webhook", body = Webhook),
        (status = 400, description = "Malformed id", body = ErrorBody),
        (status = 401, description = "Missing or wrong token", body = ErrorBody),
        (status = 404, description = "No such webhook", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn get(
    State(state): State<ApiState>,
    Path(raw_id): Path<String>,
) -> Result<Json<Webhook>, ApiError> {
    let id = parse_id(&raw_id)?;
    let conn = read_conn(&state).await?;
    webhooks::get(&conn, id)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::not_found("webhook", &raw_id))
}

/// Update a webhook
///
/// Sets the fields given and leaves the others as they are.
#[utoipa::path(put, path = "/v1/webhooks/{id}", operation_id = "updateWebhook", tag = "webhooks",
    params(("id" = Uuid, Path, description = "Webhook id")),
    request_body = super::schema::WebhookUpdate,
    responses(
        (status = 200, description = "The updated webhook", body = Webhook),
        (status = 400, description = "Invalid input", body = ErrorBody),
        (status = 401, description = "Missing or wrong token", body = ErrorBody),
        (status = 404, description = "No such webhook", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn update(
    State(state): State<ApiState>,
    actor: Actor,
    Path(raw_id): Path<String>,
    body: Bytes,
) -> Result<Json<Webhook>, ApiError> {
    let id = parse_id(&raw_id)?;
    let (map, set) = assignments(&body, &[])?;
    let mut conn = read_conn(&state).await?;
    let written = async {
        let tx = write_tx(&mut conn, &actor).await?;
        let updated = webhooks::update(&tx, id, &set)
            .await?
            .ok_or_else(|| ApiError::not_found("webhook", &raw_id))?;
        tx.commit().await?;
        Ok(updated)
    }
    .await;
    Ok(Json(refused(written, &conn, &set, &map).await?))
}

/// Delete a webhook
#[utoipa::path(delete, path = "/v1/webhooks/{id}", operation_id = "deleteWebhook", tag = "webhooks",
    params(("id" = Uuid, Path, description = "Webhook id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 400, description = "Malformed id", body = ErrorBody),
        (status = 401, description = "Missing or wrong token", body = ErrorBody),
        (status = 404, description = "No such webhook", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn delete(
    State(state): State<ApiState>,
    actor: Actor,
    Path(raw_id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let id = parse_id(&raw_id)?;
    let mut conn = read_conn(&state).await?;
    let tx = write_tx(&mut conn, &actor).await?;
    if !webhooks::delete(&tx, id).await? {
        return Err(ApiError::not_found("webhook", &raw_id));
    }
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A write's refusal with its field named (a value that did not parse is
/// found by parsing each, once the write's transaction has ended) and the
/// value the client gave.
async fn refused<T>(
    written: Result<T, ApiError>,
    conn: &Conn,
    set: &[Assignment],
    map: &Map<String, Value>,
) -> Result<T, ApiError> {
    let error = match written {
        Ok(done) => return Ok(done),
        Err(error) if error.unplaced() => match webhooks::unparsable(conn, set).await {
            Some(column) => error.place(column),
            None => error,
        },
        Err(error) => error,
    };
    Err(error.with_given(given(map)))
}
