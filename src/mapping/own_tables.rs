//! Changes to walhook's own tables in the stream: a route or subscription
//! change is staged until its transaction commits ([`super::Mapper::commit`]);
//! a subscription change is also a `webhook.*` event, and so is a health
//! state transition of `walhook.subscription_health`.

use serde_json::Value;

use super::event::Event;
use super::filter::Subject;
use super::health;
use super::routes::Route;
use super::subscriptions::{REDACTED_COLUMNS, SubscriptionFilter};
use super::{Mapper, Origin, Staged};
use crate::replication::change::{Change, Op, Row, TxnBegin};

impl Mapper {
    pub(super) fn stage_route(&mut self, change: &Change) {
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

    pub(super) fn subscription_change(
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
        // redacted once: the payload is the new row (the old one of a
        // delete), and a filter sees both
        let redact = |row: &Option<Row>| {
            row.as_ref()
                .map(|r| r.filtered(|k| !REDACTED_COLUMNS.contains(&k)))
        };
        let (new, old) = (redact(&change.new), redact(&change.old));
        let redacted = if change.op == Op::Delete { &old } else { &new };
        let subject = Subject {
            new: new.as_ref(),
            old: old.as_ref(),
            route: None,
        };
        let origin = Origin {
            system_id,
            txn,
            change,
        };
        vec![self.build(
            &origin,
            format!("webhook.{suffix}"),
            format!("/webhooks/{id}"),
            redacted,
            change.lsn.0 as i64,
            subject,
        )]
    }

    /// A change of `walhook.subscription_health`: an operational event when
    /// the state changed ([`health::transition`]), for every matching
    /// subscription but the one it is about.
    pub(super) fn health_change(
        &self,
        system_id: &str,
        txn: &TxnBegin,
        change: &Change,
    ) -> Vec<Event> {
        let (old, new) = (change.old.as_ref(), change.new.as_ref());
        let (Some(kind), Some(row)) = (health::transition(change.op, old, new), new) else {
            return Vec::new();
        };
        let Some(about) = health::subject(row) else {
            return Vec::new();
        };
        let origin = Origin {
            system_id,
            txn,
            change,
        };
        let subject = Subject {
            new,
            old,
            route: None,
        };
        let mut event = self.build(
            &origin,
            kind.event_type.to_owned(),
            format!("/webhooks/{about}"),
            health::payload(row, kind),
            change.lsn.0 as i64,
            subject,
        );
        event.subscriptions.retain(|s| *s != about);
        if let Some(check) = &mut event.filter {
            check.filters.retain(|(s, _)| *s != about);
        }
        event.filter = event.filter.take().filter(|c| !c.filters.is_empty());
        vec![event]
    }
}
