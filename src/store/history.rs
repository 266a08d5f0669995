//! Read-only views of delivery history for the `/v1` API: a webhook's
//! deliveries (newest first), one event, and redelivery through
//! `walhook.redeliver` (the same function operators call from SQL).

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

/// Up to `limit` deliveries of one subscription older than delivery `before`,
/// newest first, optionally of one status.
pub async fn deliveries(
    client: &Client,
    subscription: Uuid,
    status: Option<&str>,
    before: Option<i64>,
    limit: i64,
) -> Result<Vec<Delivery>, tokio_postgres::Error> {
    let rows = client
        .query(
            &format!(
                "SELECT {DELIVERY_COLUMNS}
                   FROM walhook.deliveries d JOIN walhook.events e ON e.id = d.event_id
                  WHERE d.subscription_id = $1
                    AND ($2::text IS NULL OR d.status = $2)
                    AND ($3::int8 IS NULL OR d.id < $3)
                  ORDER BY d.id DESC LIMIT $4"
            ),
            &[&subscription, &status, &before, &limit],
        )
        .await?;
    Ok(rows.iter().map(delivery).collect())
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
