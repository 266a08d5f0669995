//! `walhook.audit_log`: who changed which configuration row, and how.
//!
//! Rows are written by the `walhook.audit` trigger (migration 0006) on routes,
//! subscriptions, settings, API tokens and signing keys, whoever writes them:
//! SQL, the `/v1` API or walhook itself. The API marks its own transactions with
//! [`set_actor`]; anything else is `<session_user>/<application_name>`. Secrets,
//! tokens, passwords and private keys are redacted by the trigger, before the
//! row is stored. Retention removes audit rows only when `audit_retention` says
//! so (`store::retention::sweep_audit`).

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio_postgres::{Client, Transaction};
use utoipa::ToSchema;

/// One audited change.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuditEntry {
    pub id: i64,
    pub at: DateTime<Utc>,
    /// `api:<token name>` for API changes, else `<session_user>/<application_name>`.
    pub actor: String,
    /// `insert`, `update` or `delete`.
    pub action: String,
    /// `subscriptions`, `routes`, `settings`, `api_tokens` or `signing_keys`.
    pub object: String,
    /// The row's key: subscription id, route table, setting key, token name or key kid.
    pub object_id: Option<String>,
    /// The row before the change (redacted); null for inserts.
    pub before: Option<serde_json::Value>,
    /// The row after the change (redacted); null for deletes.
    pub after: Option<serde_json::Value>,
}

/// Name the actor of the changes this transaction makes (`walhook.actor`,
/// transaction-local).
pub async fn set_actor(tx: &Transaction<'_>, actor: &str) -> Result<(), tokio_postgres::Error> {
    tx.execute("SELECT set_config('walhook.actor', $1, true)", &[&actor])
        .await
        .map(|_| ())
}

/// Up to `limit` entries older than entry `before`, newest first.
pub async fn list(
    client: &Client,
    before: Option<i64>,
    limit: i64,
) -> Result<Vec<AuditEntry>, tokio_postgres::Error> {
    let rows = client
        .query(
            "SELECT id, at, actor, action, object, object_id, before, after
               FROM walhook.audit_log
              WHERE $1::int8 IS NULL OR id < $1
              ORDER BY id DESC LIMIT $2",
            &[&before, &limit],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| AuditEntry {
            id: r.get(0),
            at: r.get(1),
            actor: r.get(2),
            action: r.get(3),
            object: r.get(4),
            object_id: r.get(5),
            before: r.get(6),
            after: r.get(7),
        })
        .collect())
}
