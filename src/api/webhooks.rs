//! `/v1/webhooks`: create, list, read, update and delete subscriptions.
//!
//! A request body is checked field by field before any SQL runs: an unknown
//! field, a missing required one or a value of the wrong JSON type is a 400
//! naming it. What the fields must contain (URL rules, event patterns, header
//! names, ranges) is the database's to decide, as for SQL writes; its refusals
//! come back as 400s naming the field too (see `error::ApiError::from_write`).

use std::collections::BTreeMap;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};
use uuid::Uuid;

use super::error::{ApiError, ErrorBody, ErrorDetail};
use super::pagination::{Page, Query, encode_cursor};
use super::{Actor, ApiState, read_conn, write_tx};
use crate::store::webhooks::{self, Assignment, Webhook, WebhookKey};

/// Body fields of POST and PUT, in documentation order.
pub const FIELDS: &[&str] = &[
    "url",
    "events",
    "disabled",
    "name",
    "description",
    "headers",
    "queryParams",
    "auth",
    "ordered",
    "envelope",
    "retrySchedule",
    "timeoutMs",
    "maxInFlight",
];

/// Fields POST requires.
const REQUIRED: &[&str] = &["url", "events"];

/// `auth` as written: `{"type": "none"}`, `{"type": "bearer", "token"}` or
/// `{"type": "basic", "username", "password"}`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum AuthInput {
    None {},
    Bearer { token: String },
    Basic { username: String, password: String },
}

/// Parse a JSON object body, refusing unknown fields (and, when `required`,
/// missing ones), then turn each field into column assignments.
fn assignments(
    body: &Bytes,
    required: &[&str],
) -> Result<(Map<String, Value>, Vec<Assignment>), ApiError> {
    let map = match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => map,
        Ok(other) => {
            return Err(ApiError::invalid(ErrorDetail::new(
                "body",
                "body",
                other,
                "the body must be a JSON object",
            )));
        }
        Err(e) => {
            return Err(ApiError::invalid(ErrorDetail::new(
                "body",
                "body",
                Value::Null,
                format!("the body is not valid JSON: {e}"),
            )));
        }
    };
    let mut details = Vec::new();
    for key in map.keys().filter(|k| !FIELDS.contains(&k.as_str())) {
        details.push(ErrorDetail::new(
            key.as_str(),
            "body",
            map[key].clone(),
            format!("unknown field; known fields: {}", FIELDS.join(", ")),
        ));
    }
    for key in required.iter().filter(|k| !map.contains_key(**k)) {
        details.push(ErrorDetail::new(*key, "body", Value::Null, "required"));
    }
    let mut set = Vec::new();
    for (key, value) in map.iter().filter(|(k, _)| FIELDS.contains(&k.as_str())) {
        match assign(key, value.clone()) {
            Ok(mut columns) => set.append(&mut columns),
            Err(detail) => details.push(detail),
        }
    }
    if details.is_empty() {
        Ok((map, set))
    } else {
        Err(ApiError::invalid_all(details))
    }
}

/// A field's value as `T`, or a detail naming it.
/// (`auth` is never echoed: it holds credentials.)
fn typed<T: DeserializeOwned>(key: &str, value: Value, expected: &str) -> Result<T, ErrorDetail> {
    serde_json::from_value(value.clone()).map_err(|e| {
        let shown = if key == "auth" { Value::Null } else { value };
        ErrorDetail::new(key, "body", shown, format!("must be {expected} ({e})"))
    })
}

/// Fields that may not be null (all but name and description).
fn not_null<T: DeserializeOwned>(
    key: &str,
    value: Value,
    expected: &str,
) -> Result<T, ErrorDetail> {
    if value.is_null() {
        return Err(ErrorDetail::new(
            key,
            "body",
            value,
            format!("must be {expected}, not null"),
        ));
    }
    typed(key, value, expected)
}

fn assign(key: &str, value: Value) -> Result<Vec<Assignment>, ErrorDetail> {
    let one = |a: Assignment| Ok(vec![a]);
    match key {
        "url" => one(Assignment::new(
            "url",
            not_null::<String>(key, value, "a string")?,
        )),
        "events" => one(Assignment::new(
            "events",
            not_null::<Vec<String>>(key, value, "an array of event type patterns")?,
        )),
        "disabled" => one(Assignment::new(
            "disabled",
            not_null::<bool>(key, value, "a boolean")?,
        )),
        "ordered" => one(Assignment::new(
            "ordered",
            not_null::<bool>(key, value, "a boolean")?,
        )),
        "name" | "description" => {
            let text: Option<String> = typed(key, value, "a string or null")?;
            one(Assignment::new(
                if key == "name" { "name" } else { "description" },
                text,
            ))
        }
        "headers" | "queryParams" => {
            let map: BTreeMap<String, String> = not_null(key, value, "an object of strings")?;
            let column = if key == "headers" {
                "headers"
            } else {
                "query_params"
            };
            one(Assignment::new(
                column,
                serde_json::to_value(map).unwrap_or_default(),
            ))
        }
        "envelope" => one(Assignment::new(
            "envelope",
            not_null::<String>(key, value, "\"none\" or \"standard\"")?,
        )),
        "retrySchedule" => one(Assignment::new(
            "retry_schedule",
            not_null::<Vec<String>>(key, value, "an array of intervals such as \"5s\"")?,
        )
        .cast("::text[]::interval[]")),
        "timeoutMs" => one(Assignment::new(
            "timeout_ms",
            not_null::<i32>(key, value, "an integer")?,
        )),
        "maxInFlight" => one(Assignment::new(
            "max_in_flight",
            not_null::<i32>(key, value, "an integer")?,
        )),
        "auth" => {
            let auth: AuthInput = not_null(
                key,
                value,
                "{\"type\": \"none\"}, {\"type\": \"bearer\", \"token\"} or {\"type\": \"basic\", \"username\", \"password\"}",
            )?;
            let (kind, token, username, password) = match auth {
                AuthInput::None {} => ("none", None, None, None),
                AuthInput::Bearer { token } => ("bearer", Some(token), None, None),
                AuthInput::Basic { username, password } => {
                    ("basic", None, Some(username), Some(password))
                }
            };
            Ok(vec![
                Assignment::new("auth_type", kind),
                Assignment::new("auth_token", token),
                Assignment::new("auth_username", username),
                Assignment::new("auth_password", password),
            ])
        }
        _ => Ok(Vec::new()), // unknown fields are refused by the caller
    }
}

/// The value a client gave for `param`, for error details; credentials hidden.
fn given(map: &Map<String, Value>) -> impl Fn(&str) -> Value + '_ {
    |param| match param {
        "auth" => Value::Null,
        _ => map.get(param).cloned().unwrap_or(Value::Null),
    }
}

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
    request_body = super::openapi::WebhookCreate,
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
    let tx = write_tx(&mut conn, &actor).await?;
    let created = webhooks::insert(&tx, &set)
        .await
        .map_err(|e| ApiError::from_write(e, given(&map)))?;
    tx.commit()
        .await
        .map_err(|e| ApiError::from_write(e, given(&map)))?;
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
        (status = 200, description = "A page of webhooks", body = super::openapi::WebhookPage),
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
    let rows = webhooks::list(&conn, after, limit + 1)
        .await
        .map_err(|e| ApiError::internal(&e))?;
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
        .await
        .map_err(|e| ApiError::internal(&e))?
        .map(Json)
        .ok_or_else(|| ApiError::not_found("webhook", &raw_id))
}

/// Update a webhook
///
/// Sets the fields given and leaves the others as they are.
#[utoipa::path(put, path = "/v1/webhooks/{id}", operation_id = "updateWebhook", tag = "webhooks",
    params(("id" = Uuid, Path, description = "Webhook id")),
    request_body = super::openapi::WebhookUpdate,
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
    let tx = write_tx(&mut conn, &actor).await?;
    let updated = webhooks::update(&tx, id, &set)
        .await
        .map_err(|e| ApiError::from_write(e, given(&map)))?
        .ok_or_else(|| ApiError::not_found("webhook", &raw_id))?;
    tx.commit()
        .await
        .map_err(|e| ApiError::from_write(e, given(&map)))?;
    Ok(Json(updated))
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
    let deleted = webhooks::delete(&tx, id)
        .await
        .map_err(|e| ApiError::internal(&e))?;
    if !deleted {
        return Err(ApiError::not_found("webhook", &raw_id));
    }
    tx.commit().await.map_err(|e| ApiError::internal(&e))?;
    Ok(StatusCode::NO_CONTENT)
}
