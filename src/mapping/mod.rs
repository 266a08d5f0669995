//! Changes -> events: routes, templates, event types, subscription matching.
//!
//! The [`Mapper`] holds the configuration as of the current stream position.
//! `walhook.routes` and `walhook.subscriptions` are in walhook's publication, so
//! their changes arrive in the same ordered stream as the data; a config change
//! is staged while its transaction streams and takes effect at its commit, for
//! the transactions that follow. `walhook.subscription_health` is in it too:
//! its state transitions are the operational `webhook.*` events ([`health`]).
//! A subscription with a row filter leaves its events addressed to it with
//! the check still to do ([`filter`]); the writer does it in PostgreSQL. The mapper is pure: it does no I/O (the store
//! loads its configuration, `store::config::load_mapper`); runtime settings
//! reach it on a watch channel.
//!
//! Most changes map to one event at once; the deletes of a route with
//! `bulk_delete_event` wait for their commit ([`bulk`]), where
//! [`Mapper::commit`] returns them.

pub mod bulk;
pub mod event;
pub mod filter;
pub mod health;
mod own_tables;
pub mod routes;
pub mod snapshot;
pub mod subscriptions;
pub mod template;

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use serde_json::Value;
use tokio::sync::watch;
use uuid::Uuid;

use crate::config::Settings;
use crate::replication::change::{Change, Op, Row, TxnBegin, TxnCommit};
use bulk::{DeleteGroup, Grouped};
use event::{Event, event_id};
use filter::{FilterCheck, Subject};
use routes::Route;
use subscriptions::SubscriptionFilter;
use template::{Rendered, Source, render_text};

/// A settings channel that never changes.
fn fixed(settings: Settings) -> watch::Receiver<Settings> {
    watch::channel(settings).1
}

enum Staged {
    Route(Box<Route>),
    RemoveRoute(u32),
    Subscription(SubscriptionFilter),
    RemoveSubscription(Uuid),
}

/// Where an event comes from: the change, its transaction and the cluster.
/// Together they give the event its id, position and commit time.
#[derive(Clone, Copy)]
struct Origin<'a> {
    system_id: &'a str,
    txn: &'a TxnBegin,
    change: &'a Change,
}

/// Routes and subscription filters as of the current stream position.
pub struct Mapper {
    routes: HashMap<u32, Route>,
    subscriptions: HashMap<Uuid, SubscriptionFilter>,
    staged: Vec<Staged>,
    /// Deletes of the current transaction held for grouping, by first delete.
    deletes: Vec<DeleteGroup>,
    /// Runtime settings, read when each event is built.
    settings: watch::Receiver<Settings>,
}

impl Mapper {
    /// A mapper with the given configuration.
    pub fn new(routes: Vec<Route>, subscriptions: Vec<SubscriptionFilter>) -> Mapper {
        Mapper {
            routes: routes.into_iter().map(|r| (r.source_oid, r)).collect(),
            subscriptions: subscriptions.into_iter().map(|s| (s.id, s)).collect(),
            staged: Vec::new(),
            deletes: Vec::new(),
            settings: fixed(Settings::default()),
        }
    }

    /// Follow the runtime settings (`max_payload_bytes`) as they change.
    pub fn with_settings(mut self, settings: watch::Receiver<Settings>) -> Self {
        self.settings = settings;
        self
    }

    /// A fixed `max_payload_bytes` (tests; the daemon uses [`Mapper::with_settings`]).
    pub fn set_max_payload_bytes(&mut self, max: usize) {
        self.settings = fixed(Settings {
            max_payload_bytes: max,
            ..Settings::default()
        });
    }

    /// The stream restarts: drop what an unfinished transaction staged or held.
    pub fn abort(&mut self) {
        self.staged.clear();
        self.deletes.clear();
    }

    /// Start of a transaction: drop what a transaction that never committed
    /// staged or held (the stream was cut mid-transaction).
    pub fn begin(&mut self, _begin: &TxnBegin) {
        self.abort();
    }

    /// Map one change. Changes to walhook.routes / walhook.subscriptions are
    /// staged (and subscriptions' produce `webhook.*` events). Deletes of a
    /// route with `bulk_delete_event` are held: [`Mapper::commit`] returns them.
    pub fn map(&mut self, system_id: &str, txn: &TxnBegin, change: &Change) -> Vec<Event> {
        let rel = &change.relation;
        if rel.schema == "walhook" {
            return match rel.name.as_str() {
                "routes" => {
                    self.stage_route(change);
                    Vec::new()
                }
                "subscriptions" => self.subscription_change(system_id, txn, change),
                "subscription_health" => self.health_change(system_id, txn, change),
                _ => Vec::new(),
            };
        }
        let Some(route) = self.routes.get(&rel.oid).filter(|r| r.enabled) else {
            return Vec::new();
        };
        let (suffix, row, old) = match (change.op, &change.new, &change.old) {
            (Op::Insert, Some(new), _) => (route.suffix(Op::Insert).to_owned(), new, None),
            (Op::Update, Some(new), old) => {
                if !route.changed_visible(old.as_ref(), new) {
                    return Vec::new();
                }
                (route.update_suffix(old.as_ref(), new), new, old.as_ref())
            }
            (Op::Delete, _, Some(old)) => (route.suffix(Op::Delete).to_owned(), old, Some(old)),
            _ => return Vec::new(),
        };
        let changed = match change.op {
            Op::Update if route.uses_changed => route.changed_columns(old, row),
            _ => Vec::new(),
        };
        let subject = Subject {
            new: change.new.as_ref(),
            old: change.old.as_ref(),
            route: Some(route),
        };
        let row = route.visible(row);
        let old = old.filter(|_| route.uses_old).map(|o| route.visible(o));
        let source = Source {
            row: &row,
            old: old.as_deref(),
            changed: &changed,
        };
        let revision = revision(route, &row, change.lsn);
        let apiresource = render_text(&route.apiresource, &source, true);
        let event_type = format!("{}.{suffix}", route.resource);
        let bulk_type = match change.op {
            Op::Delete => route
                .bulk_delete_event
                .as_ref()
                .map(|b| format!("{}.{b}", route.resource)),
            _ => None,
        };
        let origin = Origin {
            system_id,
            txn,
            change,
        };
        let Some(bulk_type) = bulk_type else {
            let payload = Rendered {
                template: &route.payload,
                source: &source,
            };
            return vec![self.build(&origin, event_type, apiresource, payload, revision, subject)];
        };
        let payload = route.payload.render(&source);
        if let Some(group) = self.deletes.iter_mut().find(|g| g.oid == rel.oid) {
            group.push(apiresource, revision, payload);
        } else {
            let first = self.build(
                &origin,
                event_type,
                apiresource,
                payload.clone(),
                revision,
                subject,
            );
            self.deletes.push(DeleteGroup::new(
                rel.oid,
                bulk_type,
                first,
                payload,
                self.settings.borrow().max_payload_bytes,
            ));
        }
        Vec::new()
    }

    /// End of a transaction: the deletes held for grouping become events (with
    /// the subscriptions as of the transaction), then staged configuration
    /// takes effect.
    pub fn commit(&mut self, _commit: &TxnCommit) -> Vec<Event> {
        let events = std::mem::take(&mut self.deletes)
            .into_iter()
            .map(|group| match group.finish() {
                Grouped::One(event) => event,
                // a bulk event has no one row: its filter sees type and path
                Grouped::Many { event, payload } => {
                    self.complete(event, payload, Subject::default())
                }
            })
            .collect();
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
        events
    }

    /// OIDs of the tables currently routed (enabled or not).
    pub fn routed_tables(&self) -> HashSet<u32> {
        self.routes.keys().copied().collect()
    }

    pub fn subscription_ids(&self) -> Vec<Uuid> {
        self.subscriptions.keys().copied().collect()
    }

    fn build(
        &self,
        origin: &Origin<'_>,
        event_type: String,
        apiresource: String,
        payload: impl Serialize,
        revision: i64,
        subject: Subject<'_>,
    ) -> Event {
        let Origin {
            system_id,
            txn,
            change,
        } = *origin;
        let event = Event {
            id: event_id(system_id, txn.commit_lsn, change.ordinal),
            event_type,
            apiresource,
            revision,
            commit_lsn: txn.commit_lsn,
            seq: change.ordinal,
            commit_time: txn.commit_time,
            source_table: change.relation.qualified_name(),
            body: None,
            error: None,
            subscriptions: Vec::new(),
            filter: None,
            snapshot: false,
        };
        self.complete(event, Ok(payload), subject)
    }

    /// Fill in the subscriptions matching the event's type, the filter
    /// checks of those that have a filter (on `subject`), and its body (or
    /// the error that stands in for the body).
    fn complete(
        &self,
        mut event: Event,
        payload: Result<impl Serialize, String>,
        subject: Subject<'_>,
    ) -> Event {
        let mut filters = Vec::new();
        event.subscriptions = self
            .subscriptions
            .values()
            .filter(|s| s.matches(&event.event_type))
            .inspect(|s| {
                if let Some(filter) = &s.filter {
                    filters.push((s.id, filter.clone()));
                }
            })
            .map(|s| s.id)
            .collect();
        if !filters.is_empty() {
            event.filter = Some(Box::new(FilterCheck {
                document: subject.document(&event.event_type, &event.apiresource),
                filters,
            }));
        }
        (event.body, event.error) = match payload {
            Ok(payload) => self.body(
                &event.apiresource,
                event.commit_time,
                &payload,
                event.revision,
            ),
            Err(error) => (None, Some(error)),
        };
        event
    }
}

impl Mapper {
    /// The event's body ([`render_body`]), or the error that replaces it.
    fn body(
        &self,
        apiresource: &str,
        commit_time: DateTime<Utc>,
        payload: &impl Serialize,
        revision: i64,
    ) -> (Option<String>, Option<String>) {
        match render_body(apiresource, commit_time, payload, revision) {
            Ok(body) => self.limit_body(body),
            Err(error) => (
                None,
                Some(format!("payload could not be written as JSON: {error}")),
            ),
        }
    }

    /// The body, or the error that replaces it when it exceeds `max_payload_bytes`.
    fn limit_body(&self, body: String) -> (Option<String>, Option<String>) {
        let max_payload_bytes = self.settings.borrow().max_payload_bytes;
        if body.len() <= max_payload_bytes {
            return (Some(body), None);
        }
        let error = format!(
            "payload of {} bytes exceeds max_payload_bytes ({}): raise it in walhook.settings or exclude large columns",
            body.len(),
            max_payload_bytes
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
    payload: &impl Serialize,
    revision: i64,
) -> Result<String, serde_json::Error> {
    #[derive(Serialize)]
    struct Body<'a, P> {
        apiresource: &'a str,
        updatetimestamp: String,
        resourcepayload: P,
        revision: i64,
    }
    serde_json::to_string(&Body {
        apiresource,
        updatetimestamp: commit_time.to_rfc3339_opts(SecondsFormat::Millis, true),
        resourcepayload: payload,
        revision,
    })
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
