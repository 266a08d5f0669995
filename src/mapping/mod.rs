//! Changes -> events: routes, templates, event types, subscription matching.
//!
//! The [`Mapper`] holds the configuration as of the current stream position.
//! `walhook.routes` and `walhook.subscriptions` are in walhook's publication, so
//! their changes arrive in the same ordered stream as the data; a config change
//! is staged while its transaction streams and takes effect at its commit, for
//! the transactions that follow. The mapper is pure: no I/O after [`Mapper::load`].

pub mod event;
pub mod routes;
pub mod snapshot;
pub mod subscriptions;
pub mod template;

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::replication::change::{Change, Op, Row, TxnBegin, TxnCommit};
use event::{Event, event_id};
use routes::Route;
use subscriptions::{REDACTED_COLUMNS, SubscriptionFilter};
use template::render_text;

/// Default of `walhook.settings.max_payload_bytes`.
pub const DEFAULT_MAX_PAYLOAD_BYTES: usize = 1_048_576;

enum Staged {
    Route(Box<Route>),
    RemoveRoute(u32),
    Subscription(SubscriptionFilter),
    RemoveSubscription(Uuid),
}

/// Routes and subscription filters as of the current stream position.
pub struct Mapper {
    routes: HashMap<u32, Route>,
    subscriptions: HashMap<Uuid, SubscriptionFilter>,
    staged: Vec<Staged>,
    max_payload_bytes: usize,
}

impl Mapper {
    /// A mapper with the given configuration.
    pub fn new(routes: Vec<Route>, subscriptions: Vec<SubscriptionFilter>) -> Mapper {
        Mapper {
            routes: routes.into_iter().map(|r| (r.source_oid, r)).collect(),
            subscriptions: subscriptions.into_iter().map(|s| (s.id, s)).collect(),
            staged: Vec::new(),
            max_payload_bytes: DEFAULT_MAX_PAYLOAD_BYTES,
        }
    }

    /// Load the configuration as it stands in the database now.
    pub async fn load(client: &tokio_postgres::Client) -> Result<Self, tokio_postgres::Error> {
        let rows = |sql: &'static str| async move {
            let rows = client.query(sql, &[]).await?;
            Ok::<_, tokio_postgres::Error>(
                rows.iter()
                    .filter_map(|r| r.try_get::<_, String>(0).ok())
                    .filter_map(|t| serde_json::from_str::<Row>(&t).ok())
                    .collect::<Vec<Row>>(),
            )
        };
        let mut routes = Vec::new();
        for row in rows("SELECT row_to_json(r)::text FROM walhook.routes r").await? {
            match Route::from_row(&row) {
                Ok(route) => routes.push(route),
                Err(error) => tracing::error!(%error, "ignoring unusable route"),
            }
        }
        let subscriptions = rows(
            "SELECT json_build_object('id', id, 'events', events, 'disabled', disabled)::text
               FROM walhook.subscriptions",
        )
        .await?
        .iter()
        .filter_map(SubscriptionFilter::from_row)
        .collect();
        let mut mapper = Mapper::new(routes, subscriptions);
        let max: Option<String> = client
            .query_opt(
                "SELECT value FROM walhook.settings WHERE key = 'max_payload_bytes'",
                &[],
            )
            .await?
            .map(|r| r.get(0));
        if let Some(max) = max.and_then(|m| m.parse().ok()) {
            mapper.set_max_payload_bytes(max);
        }
        Ok(mapper)
    }

    pub fn set_max_payload_bytes(&mut self, max: usize) {
        self.max_payload_bytes = max;
    }

    /// The stream restarts: drop changes staged by an unfinished transaction.
    pub fn abort(&mut self) {
        self.staged.clear();
    }

    /// Start of a transaction: drop changes staged by a transaction that never
    /// committed (the stream was cut mid-transaction).
    pub fn begin(&mut self, _begin: &TxnBegin) {
        self.staged.clear();
    }

    /// Map one change. Changes to walhook.routes / walhook.subscriptions are
    /// staged (and subscriptions' produce `webhook.*` events).
    pub fn map(&mut self, system_id: &str, txn: &TxnBegin, change: &Change) -> Vec<Event> {
        let rel = &change.relation;
        if rel.schema == "walhook" {
            return match rel.name.as_str() {
                "routes" => {
                    self.stage_route(change);
                    Vec::new()
                }
                "subscriptions" => self.subscription_change(system_id, txn, change),
                _ => Vec::new(),
            };
        }
        let Some(route) = self.routes.get(&rel.oid).filter(|r| r.enabled) else {
            return Vec::new();
        };
        let (suffix, row) = match (change.op, &change.new, &change.old) {
            (Op::Insert, Some(new), _) => ("created".to_owned(), new),
            (Op::Update, Some(new), old) => {
                if !route.changed_visible(old.as_ref(), new) {
                    return Vec::new();
                }
                (route.update_suffix(old.as_ref(), new), new)
            }
            (Op::Delete, _, Some(old)) => ("deleted".to_owned(), old),
            _ => return Vec::new(),
        };
        let row = route.visible(row);
        let revision = revision(route, &row, change.lsn);
        let event = self.build(
            system_id,
            txn,
            change,
            format!("{}.{suffix}", route.resource),
            render_text(&route.apiresource, &row, true),
            route.payload.render(&row),
            revision,
        );
        vec![event]
    }

    /// End of a transaction: staged configuration takes effect.
    pub fn commit(&mut self, _commit: &TxnCommit) {
        for staged in self.staged.drain(..) {
            match staged {
                Staged::Route(route) => {
                    let route = *route;
                    tracing::info!(table = %route.source_table, resource = %route.resource, enabled = route.enabled, "route in effect");
                    self.routes.insert(route.source_oid, route);
                }
                Staged::RemoveRoute(oid) => {
                    if let Some(route) = self.routes.remove(&oid) {
                        tracing::info!(table = %route.source_table, "route removed");
                    }
                }
                Staged::Subscription(sub) => {
                    self.subscriptions.insert(sub.id, sub);
                }
                Staged::RemoveSubscription(id) => {
                    self.subscriptions.remove(&id);
                }
            }
        }
    }

    /// OIDs of the tables currently routed (enabled or not).
    pub fn routed_tables(&self) -> HashSet<u32> {
        self.routes.keys().copied().collect()
    }

    pub fn subscription_ids(&self) -> Vec<Uuid> {
        self.subscriptions.keys().copied().collect()
    }

    fn stage_route(&mut self, change: &Change) {
        if let Some(old) = &change.old
            && let Ok(route) = Route::from_row(old)
        {
            self.staged.push(Staged::RemoveRoute(route.source_oid));
        }
        if let Some(new) = &change.new {
            match Route::from_row(new) {
                Ok(route) => self.staged.push(Staged::Route(Box::new(route))),
                Err(error) => tracing::error!(%error, "ignoring unusable route"),
            }
        }
    }

    fn subscription_change(
        &mut self,
        system_id: &str,
        txn: &TxnBegin,
        change: &Change,
    ) -> Vec<Event> {
        let (suffix, row) = match (change.op, &change.new, &change.old) {
            (Op::Insert, Some(new), _) => ("created", new),
            (Op::Update, Some(new), _) => ("updated", new),
            (Op::Delete, _, Some(old)) => ("deleted", old),
            _ => return Vec::new(),
        };
        if let Some(old) = change.old.as_ref().and_then(SubscriptionFilter::from_row) {
            self.staged.push(Staged::RemoveSubscription(old.id));
        }
        if let Some(new) = change.new.as_ref().and_then(SubscriptionFilter::from_row) {
            self.staged.push(Staged::Subscription(new));
        }
        let id = row
            .get("id")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let redacted: Row = row
            .iter()
            .filter(|(k, _)| !REDACTED_COLUMNS.contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        vec![self.build(
            system_id,
            txn,
            change,
            format!("webhook.{suffix}"),
            format!("/webhooks/{id}"),
            Value::Object(redacted),
            change.lsn.0 as i64,
        )]
    }

    #[allow(clippy::too_many_arguments)]
    fn build(
        &self,
        system_id: &str,
        txn: &TxnBegin,
        change: &Change,
        event_type: String,
        apiresource: String,
        payload: Value,
        revision: i64,
    ) -> Event {
        let subscriptions = self
            .subscriptions
            .values()
            .filter(|s| s.matches(&event_type))
            .map(|s| s.id)
            .collect();
        let (body, error) = self.limit_body(render_body(
            &apiresource,
            txn.commit_time,
            payload,
            revision,
        ));
        Event {
            id: event_id(system_id, txn.commit_lsn, change.ordinal),
            event_type,
            apiresource,
            revision,
            commit_lsn: txn.commit_lsn,
            seq: change.ordinal,
            commit_time: txn.commit_time,
            source_table: change.relation.qualified_name(),
            body,
            error,
            subscriptions,
        }
    }
}

impl Mapper {
    /// The body, or the error that replaces it when it exceeds `max_payload_bytes`.
    fn limit_body(&self, body: String) -> (Option<String>, Option<String>) {
        if body.len() <= self.max_payload_bytes {
            return (Some(body), None);
        }
        let error = format!(
            "payload of {} bytes exceeds max_payload_bytes ({}): raise it in walhook.settings or exclude large columns",
            body.len(),
            self.max_payload_bytes
        );
        (None, Some(error))
    }
}

/// The event's revision: the route's revision column when the row has an
/// integer there, else `fallback` (a WAL position).
fn revision(route: &Route, row: &Row, fallback: crate::replication::lsn::Lsn) -> i64 {
    route
        .revision_column
        .as_ref()
        .and_then(|c| row.get(c))
        .and_then(as_i64)
        .unwrap_or(fallback.0 as i64)
}

/// The default-envelope body: exactly these four keys, in this order.
pub fn render_body(
    apiresource: &str,
    commit_time: DateTime<Utc>,
    payload: Value,
    revision: i64,
) -> String {
    let mut body = Map::with_capacity(4);
    body.insert("apiresource".into(), Value::String(apiresource.to_owned()));
    body.insert(
        "updatetimestamp".into(),
        Value::String(commit_time.to_rfc3339_opts(SecondsFormat::Millis, true)),
    );
    body.insert("resourcepayload".into(), payload);
    body.insert("revision".into(), Value::from(revision));
    Value::Object(body).to_string()
}

fn as_i64(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

#[cfg(test)]
mod tests;
