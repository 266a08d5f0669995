//! The /v1 API's wire types: request bodies, resources and pages, as the
//! OpenAPI document describes them (`utoipa`'s `ToSchema`). Handlers import
//! them from here, and so does [`super::openapi`], which assembles the
//! document from them and the handlers' annotations: no handler imports
//! another's types or the document.
//!
//! The request-body and page types of the webhooks exist for the document
//! only: handlers read those bodies field by field (see `webhook_input`).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::store::audit::AuditEntry;
use crate::store::history::{Delivery, Event};
use crate::store::webhooks::Webhook;

/// `POST /v1/backfills`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BackfillCreate {
    /// The webhook that receives the `<resource>.snapshot` events.
    pub webhook_id: Uuid,
    /// A routed table with a primary key, e.g. `directory.organisations`.
    pub table: String,
    /// One boolean SQL expression over the table's columns; all rows when absent.
    #[serde(default)]
    pub r#where: Option<String>,
    /// A cap on the rows read per second.
    #[serde(default)]
    pub rows_per_second: Option<i32>,
}

/// A backfill and its progress.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Backfill {
    pub id: String,
    pub webhook_id: String,
    pub table: String,
    /// `pending`, `running`, `done`, `cancelled` or `failed`.
    pub status: String,
    pub rows_sent: i64,
    /// The table's estimated row count (planner statistics), when known and
    /// the backfill has no `where`.
    pub estimated_rows: Option<i64>,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    pub error: Option<String>,
}

/// `{"data": [...]}`: the unfinished backfills and those finished in the last hour.
#[derive(Debug, Serialize, ToSchema)]
pub struct BackfillList {
    pub data: Vec<Backfill>,
}

/// One event type.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CatalogueEntry {
    /// The `webhook-event-type`, e.g. `software_statement.suspended`.
    #[serde(rename = "type")]
    pub event_type: String,
    /// The routed table (`walhook.subscriptions` for `webhook.*`).
    pub table: String,
    /// `insert`, `update`, `delete`, `status`, `bulk_delete`, `snapshot`, or
    /// `health` (a webhook's endpoint health changed state).
    pub operation: String,
    /// When the event is made, in words.
    pub when: String,
    /// False when the route is disabled (it makes nothing now).
    pub enabled: bool,
    /// A body as receivers get it (default envelope), from a made-up row;
    /// null where the shape is not the route's template (bulk deletes,
    /// `webhook.created|updated|deleted`).
    pub sample: Option<Value>,
}

/// `{"data": [...]}`, by table then type.
#[derive(Debug, Serialize, ToSchema)]
pub struct Catalogue {
    pub data: Vec<CatalogueEntry>,
}

/// One HTTP attempt of a delivery.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Attempt {
    /// 1, 2, ... (the `webhook-attempt` header sent).
    pub attempt: i32,
    pub attempted_at: DateTime<Utc>,
    pub duration_ms: i32,
    /// The receiver's status; null when no response came.
    pub status_code: Option<i32>,
    /// Why the attempt failed (timeout, connection error, non-2xx); null on success.
    pub error: Option<String>,
    /// The first 256 bytes of the response body, as text.
    pub response_body: Option<String>,
    /// The headers this attempt sent that walhook sets, name -> value:
    /// `webhook-id`, `webhook-timestamp`, `webhook-signature`,
    /// `content-type`, `webhook-event-type`, `webhook-attempt`, and for RFC
    /// 9421 `content-digest`, `signature-input`, `signature`. Never
    /// `authorization` nor the webhook's own headers. Null when no request
    /// could be built, and for a succeeded attempt unless the setting
    /// `attempt_request_headers` is `all` (the default, `failed`, keeps them
    /// for attempts that did not succeed).
    #[schema(value_type = Option<BTreeMap<String, String>>)]
    pub request_headers: Option<Value>,
}

/// A delivery with the webhook it belongs to.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryDetail {
    pub webhook_id: Uuid,
    #[serde(flatten)]
    pub delivery: Delivery,
}

/// `auth` as written: `{"type": "none"}`, `{"type": "bearer", "token"}` or
/// `{"type": "basic", "username", "password"}`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum AuthInput {
    None {},
    Bearer { token: String },
    Basic { username: String, password: String },
}

// The webhooks' request bodies and the pages below are never built: they
// describe for the document what handlers read and write as JSON values.
/// `POST /v1/webhooks`: `url` and `events` are required, the rest default.
#[allow(dead_code)]
#[derive(ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WebhookCreate {
    /// Absolute https URL without user-info, query or fragment, at most 2048 bytes.
    url: String,
    /// Event type patterns: an exact type, `prefix.*` or `*`.
    events: Vec<String>,
    #[serde(default)]
    #[schema(default = false)]
    disabled: bool,
    name: Option<String>,
    description: Option<String>,
    /// Extra request headers.
    #[serde(default)]
    headers: BTreeMap<String, String>,
    /// Extra query parameters.
    #[serde(default)]
    query_params: BTreeMap<String, String>,
    /// Default `{"type": "none"}`.
    #[serde(default)]
    auth: AuthInput,
    /// One delivery at a time per `apiresource`, in commit order.
    #[serde(default)]
    #[schema(default = false)]
    ordered: bool,
    /// `none` (default) or `standard`.
    #[serde(default)]
    #[schema(default = "none")]
    envelope: String,
    /// Delays before each retry; default `["5s","5min","30min","2h","5h","10h","10h"]`.
    #[serde(default)]
    retry_schedule: Vec<String>,
    #[serde(default)]
    #[schema(default = 3000, minimum = 1, maximum = 300000)]
    timeout_ms: i32,
    #[serde(default)]
    #[schema(default = 32, minimum = 1, maximum = 10000)]
    max_in_flight: i32,
    /// Default `["v1", "v1a", "rfc9421"]`.
    #[serde(default)]
    signature_schemes: Vec<String>,
    /// A SQL/JSON path predicate over `{new, old, changed, type, apiresource}`,
    /// e.g. `$.new.status == "active"`; null (default): every event.
    filter: Option<String>,
    /// Deliveries per second, per instance; null (default): no limit.
    #[schema(exclusive_minimum = 0, maximum = 100000)]
    rate_limit: Option<f64>,
    /// Consecutive failed attempts that make the webhook failing.
    #[serde(default)]
    #[schema(default = 5, minimum = 1, maximum = 10000)]
    failure_threshold: i32,
    /// The share of failed attempts over `failureWindow` that makes it failing.
    #[serde(default)]
    #[schema(default = 0.5, exclusive_minimum = 0, maximum = 1)]
    failure_rate_threshold: f64,
    /// An interval from `1s` to `1d`.
    #[serde(default)]
    #[schema(default = "5min")]
    failure_window: String,
    #[serde(default)]
    #[schema(default = 10, minimum = 1, maximum = 1000000)]
    failure_window_min_attempts: i32,
    /// While failing, the delay between probes: `100ms` to `1h`.
    #[serde(default)]
    #[schema(default = "30s")]
    probe_interval: String,
    /// Failing this long (`1s` to `365d`) disables the webhook; null: never.
    #[schema(default = "5d")]
    disable_after: Option<String>,
}

/// `PUT /v1/webhooks/{id}`: the fields to set; the others stay as they are.
#[allow(dead_code)]
#[derive(ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WebhookUpdate {
    #[serde(default)]
    url: String,
    #[serde(default)]
    events: Vec<String>,
    #[serde(default)]
    disabled: bool,
    name: Option<String>,
    description: Option<String>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    #[serde(default)]
    query_params: BTreeMap<String, String>,
    #[serde(default)]
    auth: AuthInput,
    #[serde(default)]
    ordered: bool,
    #[serde(default)]
    envelope: String,
    #[serde(default)]
    retry_schedule: Vec<String>,
    #[serde(default)]
    #[schema(minimum = 1, maximum = 300000)]
    timeout_ms: i32,
    #[serde(default)]
    #[schema(minimum = 1, maximum = 10000)]
    max_in_flight: i32,
    #[serde(default)]
    signature_schemes: Vec<String>,
    filter: Option<String>,
    #[schema(exclusive_minimum = 0, maximum = 100000)]
    rate_limit: Option<f64>,
    #[serde(default)]
    #[schema(minimum = 1, maximum = 10000)]
    failure_threshold: i32,
    #[serde(default)]
    #[schema(exclusive_minimum = 0, maximum = 1)]
    failure_rate_threshold: f64,
    #[serde(default)]
    failure_window: String,
    #[serde(default)]
    #[schema(minimum = 1, maximum = 1000000)]
    failure_window_min_attempts: i32,
    #[serde(default)]
    probe_interval: String,
    disable_after: Option<String>,
}

/// A page of webhooks; `nextCursor` is null on the last page.
#[allow(dead_code)]
#[derive(ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct WebhookPage {
    data: Vec<Webhook>,
    next_cursor: Option<String>,
}

/// A page of deliveries, newest first.
#[allow(dead_code)]
#[derive(ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryPage {
    data: Vec<Delivery>,
    next_cursor: Option<String>,
}

/// A page of audit entries, newest first.
#[allow(dead_code)]
#[derive(ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuditPage {
    data: Vec<AuditEntry>,
    next_cursor: Option<String>,
}

/// A page of a delivery's attempts, oldest first.
#[allow(dead_code)]
#[derive(ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AttemptPage {
    data: Vec<Attempt>,
    next_cursor: Option<String>,
}

/// A page of deliveries across webhooks, newest first.
#[allow(dead_code)]
#[derive(ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryDetailPage {
    data: Vec<DeliveryDetail>,
    next_cursor: Option<String>,
}

/// A page of events, newest first.
#[allow(dead_code)]
#[derive(ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EventPage {
    data: Vec<Event>,
    next_cursor: Option<String>,
}
