//! `walhook.subscriptions` as the `/v1` API shows them ("webhooks").
//!
//! One configuration, two doors: the API reads and writes the same rows as SQL
//! does, so every rule lives in the database (URL rules, event patterns, header
//! names, auth columns) and a webhook written here fires `webhook.created`
//! through the replication stream like any other subscription change. Writes
//! run inside the caller's transaction, where the API has set the audit actor.
//! Credentials (`auth_token`, `auth_password`) are never read back; the secret
//! only when the caller asks (the create response). A webhook's endpoint
//! health comes from `walhook.subscription_health` (no row: healthy), read in
//! the same statement.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Row, Transaction};
use utoipa::ToSchema;
use uuid::Uuid;

/// A webhook (a row of `walhook.subscriptions`), credentials left out.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Webhook {
    pub id: Uuid,
    pub url: String,
    /// Event type patterns: an exact type, `prefix.*` or `*`.
    pub events: Vec<String>,
    pub disabled: bool,
    pub name: Option<String>,
    pub description: Option<String>,
    pub headers: BTreeMap<String, String>,
    pub query_params: BTreeMap<String, String>,
    pub auth: AuthSummary,
    pub ordered: bool,
    /// `none` or `standard`.
    pub envelope: String,
    /// Delays before each retry, e.g. `["5s", "5min"]`.
    pub retry_schedule: Vec<String>,
    pub timeout_ms: i32,
    pub max_in_flight: i32,
    /// Which signatures are sent: `v1` (HMAC-SHA256), `v1a` (Ed25519),
    /// `rfc9421` (HTTP Message Signatures).
    pub signature_schemes: Vec<String>,
    /// A SQL/JSON path predicate over `{new, old, changed, type,
    /// apiresource}`; events it does not match are not delivered. Null: all.
    pub filter: Option<String>,
    /// Deliveries per second, per instance; null: no limit.
    pub rate_limit: Option<f64>,
    /// Consecutive failed attempts that make the webhook failing.
    pub failure_threshold: i32,
    /// The share of failed attempts over `failureWindow` that makes it failing.
    pub failure_rate_threshold: f64,
    /// The window of `failureRateThreshold`, e.g. `5min`.
    pub failure_window: String,
    /// The attempts `failureWindow` needs before its rate counts.
    pub failure_window_min_attempts: i32,
    /// While failing, the delay between probes (doubling, at most 32 times), e.g. `30s`.
    pub probe_interval: String,
    /// Failing this long disables the webhook, e.g. `5d`; null: never.
    pub disable_after: Option<String>,
    /// Why walhook disabled it (read-only; cleared when it is enabled again).
    pub disabled_reason: Option<String>,
    /// When walhook disabled it (read-only; cleared when it is enabled again).
    pub disabled_at: Option<DateTime<Utc>>,
    /// Endpoint health (read-only).
    pub health: Health,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// The Standard Webhooks secret: in the create response only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
}

/// The webhook's authorization type; its credentials are never returned.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AuthSummary {
    /// `none`, `bearer` or `basic`.
    #[serde(rename = "type")]
    pub kind: String,
}

/// A webhook's endpoint health, as the delivering instances keep it in
/// `walhook.subscription_health`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Health {
    /// `healthy`, `failing` or `disabled`.
    pub state: String,
    /// When the current failing period began; null while healthy.
    pub failing_since: Option<DateTime<Utc>>,
    pub consecutive_failures: i32,
    pub last_error: Option<String>,
    pub last_failure_at: Option<DateTime<Utc>>,
    pub last_success_at: Option<DateTime<Utc>>,
    /// While failing: when the next probe may be sent.
    pub next_probe_at: Option<DateTime<Utc>>,
}

/// One column to write and its value; `cast` is appended to the placeholder.
pub struct Assignment {
    pub column: &'static str,
    pub cast: &'static str,
    pub value: Box<dyn ToSql + Sync + Send>,
}

impl Assignment {
    pub fn new(column: &'static str, value: impl ToSql + Sync + Send + 'static) -> Self {
        Assignment {
            column,
            cast: "",
            value: Box::new(value),
        }
    }

    pub fn cast(mut self, cast: &'static str) -> Self {
        self.cast = cast;
        self
    }
}

/// What [`webhook`] reads, in its order; usable in `RETURNING` (health is a
/// subquery, null when the webhook has no health row).
const COLUMNS: &str = "id, url, events, disabled, name, description, headers, query_params,
    auth_type, ordered, envelope,
    ARRAY(SELECT extract(epoch FROM d)::float8
            FROM unnest(retry_schedule) WITH ORDINALITY AS r(d, n) ORDER BY n),
    timeout_ms, max_in_flight, created_at, updated_at, secret,
    signature_schemes, filter::text, rate_limit, failure_threshold, failure_rate_threshold,
    extract(epoch FROM failure_window)::float8, failure_window_min_attempts,
    extract(epoch FROM probe_interval)::float8, extract(epoch FROM disable_after)::float8,
    disabled_reason, disabled_at,
    (SELECT jsonb_build_object('state', h.state, 'failingSince', h.failing_since,
                               'consecutiveFailures', h.consecutive_failures,
                               'lastError', h.last_error, 'lastFailureAt', h.last_failure_at,
                               'lastSuccessAt', h.last_success_at, 'nextProbeAt', h.next_probe_at)
       FROM walhook.subscription_health h WHERE h.subscription_id = subscriptions.id)";

/// No health row yet: nothing failed.
fn healthy() -> Health {
    Health {
        state: "healthy".to_owned(),
        ..Health::default()
    }
}

/// The health row as the `COLUMNS` subquery builds it.
fn health(json: serde_json::Value) -> Health {
    serde_json::from_value(json).unwrap_or_else(|error| {
        tracing::warn!(%error, "api: unreadable subscription_health row");
        Health {
            state: "unknown".to_owned(),
            ..Health::default()
        }
    })
}

fn webhook(row: &Row, with_secret: bool) -> Webhook {
    let map = |i: usize| -> BTreeMap<String, String> {
        serde_json::from_value(row.get::<_, serde_json::Value>(i)).unwrap_or_default()
    };
    let schedule: Vec<f64> = row.get(11);
    Webhook {
        id: row.get(0),
        url: row.get(1),
        events: row.get(2),
        disabled: row.get(3),
        name: row.get(4),
        description: row.get(5),
        headers: map(6),
        query_params: map(7),
        auth: AuthSummary { kind: row.get(8) },
        ordered: row.get(9),
        envelope: row.get(10),
        retry_schedule: schedule.into_iter().map(format_delay).collect(),
        timeout_ms: row.get(12),
        max_in_flight: row.get(13),
        signature_schemes: row.get(17),
        filter: row.get(18),
        rate_limit: row.get(19),
        failure_threshold: row.get(20),
        failure_rate_threshold: row.get(21),
        failure_window: format_delay(row.get(22)),
        failure_window_min_attempts: row.get(23),
        probe_interval: format_delay(row.get(24)),
        disable_after: row.get::<_, Option<f64>>(25).map(format_delay),
        disabled_reason: row.get(26),
        disabled_at: row.get(27),
        health: row
            .get::<_, Option<serde_json::Value>>(28)
            .map_or_else(healthy, health),
        created_at: row.get(14),
        updated_at: row.get(15),
        secret: with_secret.then(|| row.get(16)),
    }
}

/// A delay in seconds as the shortest exact interval string: `5s`, `5min`,
/// `2h`, `1d`, `250ms`.
pub fn format_delay(secs: f64) -> String {
    let ms = (secs * 1000.0).round() as i64;
    for (unit, size) in [("d", 86_400_000), ("h", 3_600_000), ("min", 60_000)] {
        if ms != 0 && ms % size == 0 {
            return format!("{}{unit}", ms / size);
        }
    }
    if ms % 1000 == 0 {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}

/// Insert a webhook; returns it with its secret.
pub async fn insert(
    tx: &Transaction<'_>,
    set: &[Assignment],
) -> Result<Webhook, tokio_postgres::Error> {
    let columns: Vec<&str> = set.iter().map(|a| a.column).collect();
    let sql = format!(
        "INSERT INTO walhook.subscriptions ({}) VALUES ({}) RETURNING {COLUMNS}",
        columns.join(", "),
        placeholders(set, 1).join(", ")
    );
    let row = tx.query_one(&sql, &params(set)).await?;
    Ok(webhook(&row, true))
}

/// Set columns of webhook `id`; None when there is no such webhook.
pub async fn update(
    tx: &Transaction<'_>,
    id: Uuid,
    set: &[Assignment],
) -> Result<Option<Webhook>, tokio_postgres::Error> {
    if set.is_empty() {
        let row = tx
            .query_opt(
                &format!("SELECT {COLUMNS} FROM walhook.subscriptions WHERE id = $1"),
                &[&id],
            )
            .await?;
        return Ok(row.map(|r| webhook(&r, false)));
    }
    let assignments: Vec<String> = set
        .iter()
        .zip(placeholders(set, 2))
        .map(|(a, p)| format!("{} = {p}", a.column))
        .collect();
    let sql = format!(
        "UPDATE walhook.subscriptions SET {} WHERE id = $1 RETURNING {COLUMNS}",
        assignments.join(", ")
    );
    let mut values: Vec<&(dyn ToSql + Sync)> = vec![&id];
    values.extend(params(set));
    let row = tx.query_opt(&sql, &values).await?;
    Ok(row.map(|r| webhook(&r, false)))
}

/// Delete webhook `id`; false when there is no such webhook.
pub async fn delete(tx: &Transaction<'_>, id: Uuid) -> Result<bool, tokio_postgres::Error> {
    let n = tx
        .execute("DELETE FROM walhook.subscriptions WHERE id = $1", &[&id])
        .await?;
    Ok(n > 0)
}

pub async fn get(client: &Client, id: Uuid) -> Result<Option<Webhook>, tokio_postgres::Error> {
    let row = client
        .query_opt(
            &format!("SELECT {COLUMNS} FROM walhook.subscriptions WHERE id = $1"),
            &[&id],
        )
        .await?;
    Ok(row.map(|r| webhook(&r, false)))
}

/// Position of a webhook in the list order (creation time, then id).
pub type WebhookKey = (DateTime<Utc>, Uuid);

/// Up to `limit` webhooks after `after`, in (created_at, id) order.
pub async fn list(
    client: &Client,
    after: Option<WebhookKey>,
    limit: i64,
) -> Result<Vec<Webhook>, tokio_postgres::Error> {
    let (at, id) = after.unzip();
    let rows = client
        .query(
            &format!(
                "SELECT {COLUMNS} FROM walhook.subscriptions
                  WHERE $1::timestamptz IS NULL OR (created_at, id) > ($1, $2)
                  ORDER BY created_at, id LIMIT $3"
            ),
            &[&at, &id, &limit],
        )
        .await?;
    Ok(rows.iter().map(|r| webhook(r, false)).collect())
}

/// The first column of `set` whose value does not parse as its type (an
/// interval, a jsonpath): PostgreSQL's error for such a value names no
/// column, so each cast is tried alone. Run after the failed write's
/// transaction has ended.
pub async fn unparsable(client: &Client, set: &[Assignment]) -> Option<&'static str> {
    for a in set.iter().filter(|a| !a.cast.is_empty()) {
        let sql = format!("SELECT ($1{}) IS NULL", a.cast);
        let parsed = client.query_one(&sql, &[a.value.as_ref()]).await;
        if parsed.is_err_and(|error| error.as_db_error().is_some()) {
            return Some(a.column);
        }
    }
    None
}

fn placeholders(set: &[Assignment], first: usize) -> Vec<String> {
    set.iter()
        .enumerate()
        .map(|(i, a)| format!("${}{}", first + i, a.cast))
        .collect()
}

fn params(set: &[Assignment]) -> Vec<&(dyn ToSql + Sync)> {
    set.iter()
        .map(|a| a.value.as_ref() as &(dyn ToSql + Sync))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::format_delay;

    #[test]
    fn delays_are_shortest_exact_units() {
        assert_eq!(format_delay(5.0), "5s");
        assert_eq!(format_delay(300.0), "5min");
        assert_eq!(format_delay(1800.0), "30min");
        assert_eq!(format_delay(7200.0), "2h");
        assert_eq!(format_delay(36_000.0), "10h");
        assert_eq!(format_delay(86_400.0), "1d");
        assert_eq!(format_delay(0.25), "250ms");
        assert_eq!(format_delay(0.0), "0s");
        assert_eq!(format_delay(90.0), "90s");
    }
}
