//! Read-only views of delivery history for the `/v1` API: pages of
//! deliveries (newest first; one webhook's, or across webhooks), one event,
//! and redelivery through `walhook.redeliver` (the same function operators
//! call from SQL).

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio_postgres::{Client, Row, Transaction};
use utoipa::ToSchema;
use uuid::Uuid;

/// One (event, webhook) delivery and its latest attempt.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Delivery {
    pub id: i64,
    pub event_id: Uuid,
    pub event_type: String,
    /// `pending`, `succeeded` or `failed`.
    pub status: String,
    pub attempts: i32,
    pub last_status_code: Option<i32>,
    pub last_error: Option<String>,
    pub last_attempt_at: Option<DateTime<Utc>>,
    /// When the next attempt is due; null unless pending.
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

/// A stored event.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Event {
    pub id: Uuid,
    #[serde(rename = "type")]
    pub event_type: String,
    pub apiresource: String,
    pub revision: i64,
    pub commit_time: DateTime<Utc>,
    /// The body as sent to receivers; null when the event could not be built.
    pub body: Option<serde_json::Value>,
}

/// The delivery statuses a list may be filtered by.
pub const STATUSES: &[&str] = &["pending", "succeeded", "failed"];

/// The columns [`delivery`] reads, in its order (deliveries `d` joined to
/// their events `e`).
pub(crate) const DELIVERY_COLUMNS: &str = "d.id, d.event_id, e.type, d.status, d.attempts,
    d.last_status_code, d.last_error, d.last_attempt_at,
    CASE WHEN d.status = 'pending' THEN d.next_attempt_at END, d.created_at";

/// A delivery from a row whose first columns are [`DELIVERY_COLUMNS`].
pub(crate) fn delivery(row: &Row) -> Delivery {
    Delivery {
        id: row.get(0),
        event_id: row.get(1),
        event_type: row.get(2),
        status: row.get(3),
        attempts: row.get(4),
        last_status_code: row.get(5),
        last_error: row.get(6),
        last_attempt_at: row.get(7),
        next_attempt_at: row.get(8),
        created_at: row.get(9),
    }
}

/// Which deliveries a page shows; every field narrows it (None: any).
#[derive(Debug, Default)]
pub struct DeliveryFilter<'a> {
    pub subscription: Option<Uuid>,
    pub status: Option<&'a str>,
    /// An exact event type.
    pub event_type: Option<&'a str>,
    /// An event type prefix (`user.` for `user.*`).
    pub event_type_prefix: Option<&'a str>,
    pub event: Option<Uuid>,
    /// Only deliveries older than this one (the page's cursor).
    pub before: Option<i64>,
}

/// Up to `limit` deliveries matching `filter`, newest first, each with its
/// subscription.
///
/// One subscription's deliveries are read through
/// `deliveries_subscription_id_idx` (subscription_id, id), as a range of that
/// index rather than `subscription_id = $1`: with an equality PostgreSQL
/// drops the column from the order and may walk the primary key backwards
/// instead, filtering out every newer delivery of the other subscriptions
/// (the whole table for a webhook whose deliveries are old or absent).
pub async fn page(
    client: &Client,
    filter: &DeliveryFilter<'_>,
    limit: i64,
) -> Result<Vec<(Uuid, Delivery)>, tokio_postgres::Error> {
    let (scope, order) = if filter.subscription.is_some() {
        (
            "(d.subscription_id, d.id) > ($5::uuid, 0) AND (d.subscription_id, d.id) < ($5, $6)",
            "d.subscription_id DESC, d.id DESC",
        )
    } else {
        ("$5::uuid IS NULL AND d.id < $6", "d.id DESC")
    };
    let rows = client
        .query(
            &format!(
                "SELECT {DELIVERY_COLUMNS}, d.subscription_id
                   FROM walhook.deliveries d JOIN walhook.events e ON e.id = d.event_id
                  WHERE {scope}
                    AND ($1::text IS NULL OR d.status = $1)
                    AND ($2::text IS NULL OR e.type = $2)
                    AND ($3::text IS NULL OR starts_with(e.type, $3))
                    AND ($4::uuid IS NULL OR d.event_id = $4)
                  ORDER BY {order} LIMIT $7"
            ),
            &[
                &filter.status,
                &filter.event_type,
                &filter.event_type_prefix,
                &filter.event,
                &filter.subscription,
                &filter.before.unwrap_or(i64::MAX),
                &limit,
            ],
        )
        .await?;
    Ok(rows.iter().map(|r| (r.get(10), delivery(r))).collect())
}

/// Up to `limit` deliveries of one subscription older than delivery `before`,
/// newest first, optionally of one status.
pub async fn deliveries(
    client: &Client,
    subscription: Uuid,
    status: Option<&str>,
    before: Option<i64>,
    limit: i64,
) -> Result<Vec<Delivery>, tokio_postgres::Error> {
    let filter = DeliveryFilter {
        subscription: Some(subscription),
        status,
        before,
        ..DeliveryFilter::default()
    };
    let page = page(client, &filter, limit).await?;
    Ok(page.into_iter().map(|(_, d)| d).collect())
}

pub async fn event(client: &Client, id: Uuid) -> Result<Option<Event>, tokio_postgres::Error> {
    let row = client
        .query_opt(
            "SELECT id, type, apiresource, revision, commit_time, body
               FROM walhook.events WHERE id = $1",
            &[&id],
        )
        .await?;
    Ok(row.map(|r| Event {
        id: r.get(0),
        event_type: r.get(1),
        apiresource: r.get(2),
        revision: r.get(3),
        commit_time: r.get(4),
        body: r.get(5),
    }))
}

/// Put delivery `id` back to pending now (`walhook.redeliver`); None when
/// there is no such delivery.
pub async fn redeliver(
    tx: &Transaction<'_>,
    id: i64,
) -> Result<Option<Delivery>, tokio_postgres::Error> {
    let found = tx
        .query_opt(
            "SELECT walhook.redeliver(id) FROM walhook.deliveries WHERE id = $1",
            &[&id],
        )
        .await?;
    if found.is_none() {
        return Ok(None);
    }
    let row = tx
        .query_one(
            &format!(
                "SELECT {DELIVERY_COLUMNS}
                   FROM walhook.deliveries d JOIN walhook.events e ON e.id = d.event_id
                  WHERE d.id = $1"
            ),
            &[&id],
        )
        .await?;
    Ok(Some(delivery(&row)))
}
