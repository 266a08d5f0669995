//! `GET /v1/deliveries`: deliveries across every webhook, newest first,
//! filtered by status, event type, webhook or event: the console's deliveries
//! page, and "which webhooks received this event" on an event's page.

use axum::Json;
use axum::extract::{RawQuery, State};
use serde_json::Value;
use uuid::Uuid;

use super::deliveries::exact_or_prefix;
use super::error::{ApiError, ErrorBody, ErrorDetail};
use super::history::{decode_id, status_param};
use super::pagination::{Page, Query, encode_cursor};
use super::schema::DeliveryDetail;
use super::{ApiState, read_conn};
use crate::store::history::{self, DeliveryFilter};

fn uuid_param(query: &Query, param: &str) -> Result<Option<Uuid>, ApiError> {
    query
        .get(param)
        .map(|raw| {
            Uuid::parse_str(raw).map_err(|_| {
                ApiError::invalid(ErrorDetail::new(
                    param,
                    "query",
                    Value::String(raw.to_owned()),
                    "must be a UUID",
                ))
            })
        })
        .transpose()
}

/// List deliveries across webhooks
///
/// Newest first. `status` is pending, succeeded or failed; `eventType` an
/// exact type or `prefix.*`; `webhookId` and `eventId` narrow to one webhook
/// or one event (the webhooks that received it).
#[utoipa::path(get, path = "/v1/deliveries", operation_id = "listAllDeliveries", tag = "deliveries",
    params(
        ("status" = Option<String>, Query, description = "pending, succeeded or failed"),
        ("eventType" = Option<String>, Query, description = "exact type or prefix.*"),
        ("webhookId" = Option<Uuid>, Query, description = "one webhook's deliveries"),
        ("eventId" = Option<Uuid>, Query, description = "one event's deliveries"),
        ("limit" = Option<i64>, Query, description = "1-100, default 20"),
        ("cursor" = Option<String>, Query, description = "nextCursor of the previous page")),
    responses(
        (status = 200, description = "A page of deliveries", body = super::schema::DeliveryDetailPage),
        (status = 400, description = "Invalid parameter", body = ErrorBody),
        (status = 401, description = "Missing or wrong token", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn list(
    State(state): State<ApiState>,
    RawQuery(raw): RawQuery,
) -> Result<Json<Page<DeliveryDetail>>, ApiError> {
    let query = Query::parse(
        raw.as_deref(),
        &[
            "status",
            "eventType",
            "webhookId",
            "eventId",
            "limit",
            "cursor",
        ],
    )?;
    let limit = query.limit()?;
    let before = query.cursor('d', decode_id)?;
    let status = status_param(&query)?;
    let (type_exact, type_prefix) = exact_or_prefix(query.get("eventType"));
    let filter = DeliveryFilter {
        subscription: uuid_param(&query, "webhookId")?,
        status,
        event_type: type_exact.as_deref(),
        event_type_prefix: type_prefix.as_deref(),
        event: uuid_param(&query, "eventId")?,
        before,
    };
    let conn = read_conn(&state).await?;
    let details = history::page(&conn, &filter, limit + 1)
        .await?
        .into_iter()
        .map(|(webhook_id, delivery)| DeliveryDetail {
            webhook_id,
            delivery,
        })
        .collect();
    Ok(Json(Page::new(details, limit, |d: &DeliveryDetail| {
        encode_cursor('d', &d.delivery.id.to_string())
    })))
}
