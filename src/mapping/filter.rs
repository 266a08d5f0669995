//! Row filters, mapping's half: the document a subscription's `filter` is
//! evaluated on, and the checks an event still owes.
//!
//! A filter is a SQL/JSON path predicate (`walhook.subscriptions.filter`,
//! type `jsonpath`) over
//! `{"new": row|null, "old": row|null, "changed": [...], "type": ..., "apiresource": ...}`.
//! The mapper is pure, so it does not evaluate filters: when a subscription
//! that matches an event's type has a filter, the event leaves mapping still
//! addressed to it, carrying a [`FilterCheck`] (the document, and each such
//! subscription with the filter in force at the event's stream position).
//! The writer evaluates the batch's checks in PostgreSQL before storing it
//! (`store::filters`) and drops the subscriptions that do not match. An event
//! whose subscriptions have no filter carries no check and costs nothing.
//!
//! The document holds what the subscriber could see: a route's
//! `exclude_columns` are left out of `new`, `old` and `changed`, as the
//! redacted columns of `walhook.subscriptions` are for `webhook.*` events, so
//! a filter can neither test nor leak a secret.

use std::borrow::Cow;
use std::sync::Arc;

use serde::Serialize;
use uuid::Uuid;

use super::routes::Route;
use crate::replication::change::Row;

/// The filter checks an event owes before it is stored: each is one of the
/// event's subscriptions, which stays only if its filter matches `document`.
#[derive(Debug, Clone, PartialEq)]
pub struct FilterCheck {
    /// The document, as JSON text (`jsonb` in PostgreSQL).
    pub document: String,
    /// `(subscription, filter)`: the jsonpath text in force at the event's
    /// position in the stream.
    pub filters: Vec<(Uuid, Arc<str>)>,
}

/// What a filter sees of a change, before it is written as a document.
#[derive(Clone, Copy, Default)]
pub struct Subject<'a> {
    /// The row after the change (null for deletes).
    pub new: Option<&'a Row>,
    /// The row before the change (null for inserts and snapshots).
    pub old: Option<&'a Row>,
    /// The route whose `exclude_columns` the filter must not see; `None`
    /// when the rows are already what subscribers may see.
    pub route: Option<&'a Route>,
}

impl<'a> Subject<'a> {
    /// The document for an event of this type and path.
    pub fn document(&self, event_type: &str, apiresource: &str) -> String {
        let hide = |row: Option<&'a Row>| -> Option<Cow<'a, Row>> {
            let row = row?;
            Some(match self.route {
                Some(route) => route.visible(row),
                None => Cow::Borrowed(row),
            })
        };
        let new = hide(self.new);
        let old = hide(self.old);
        let changed = match (&new, &old) {
            (Some(new), Some(old)) => changed_columns(old, new),
            _ => Vec::new(),
        };
        #[derive(Serialize)]
        struct Document<'a> {
            new: Option<&'a Row>,
            old: Option<&'a Row>,
            changed: Vec<&'a str>,
            #[serde(rename = "type")]
            event_type: &'a str,
            apiresource: &'a str,
        }
        let document = Document {
            new: new.as_deref(),
            old: old.as_deref(),
            changed,
            event_type,
            apiresource,
        };
        // a Row holds JSON values and string keys: writing it cannot fail
        serde_json::to_string(&document).unwrap_or_else(|_| String::from("{}"))
    }
}

/// Names of the columns of `new` whose value differs in `old`, in table order.
fn changed_columns<'r>(old: &Row, new: &'r Row) -> Vec<&'r str> {
    new.iter()
        .filter(|(k, v)| old.get(k) != Some(v))
        .map(|(k, _)| k)
        .collect()
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    fn route() -> Route {
        Route::from_row(&Row::from_json(json!({
            "source_oid": "42", "source_table": "directory.orgs", "resource": "organisation",
            "apiresource": "/organisations/{id}", "payload": null,
            "exclude_columns": ["secret"], "enabled": true
        })))
        .unwrap()
    }

    #[test]
    fn the_document_holds_visible_rows_and_changed_columns() {
        let old = Row::from_json(json!({"id": 1, "status": "active", "secret": "a"}));
        let new = Row::from_json(json!({"id": 1, "status": "suspended", "secret": "b"}));
        let route = route();
        let subject = Subject {
            new: Some(&new),
            old: Some(&old),
            route: Some(&route),
        };
        let document: Value =
            serde_json::from_str(&subject.document("organisation.suspended", "/organisations/1"))
                .unwrap();
        assert_eq!(
            document,
            json!({
                "new": {"id": 1, "status": "suspended"},
                "old": {"id": 1, "status": "active"},
                "changed": ["status"],
                "type": "organisation.suspended",
                "apiresource": "/organisations/1"
            })
        );
    }

    #[test]
    fn an_insert_has_no_old_row_and_nothing_changed() {
        let new = Row::from_json(json!({"id": 1}));
        let subject = Subject {
            new: Some(&new),
            ..Subject::default()
        };
        let document: Value = serde_json::from_str(&subject.document("a.created", "/a/1")).unwrap();
        assert_eq!(document["old"], Value::Null);
        assert_eq!(document["changed"], json!([]));
        assert_eq!(document["new"], json!({"id": 1}));
    }
}
