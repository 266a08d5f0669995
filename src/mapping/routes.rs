//! A route: one row of `walhook.routes`, compiled for mapping.
//!
//! Rows come from two places with one shape: `row_to_json` at startup and the
//! replication stream afterwards (typed by the decoder: `regclass` and `oid`
//! arrive as text, `text[]` as arrays, `jsonb` as objects).

use std::borrow::Cow;
use std::collections::{BTreeMap, HashSet};

use serde_json::Value;

use super::template::{Field, JsonTemplate, Piece, TemplateError, compile_text};
use crate::replication::change::{Op, Row};

/// A route row that cannot be used; the database refuses these when written,
/// so this only happens when the row bypassed the triggers.
#[derive(Debug, thiserror::Error)]
pub enum RouteError {
    #[error("route row lacks {0}")]
    Missing(&'static str),
    #[error(transparent)]
    Template(#[from] TemplateError),
}

#[derive(Debug, Clone)]
pub struct Route {
    /// The routed table's OID (pgoutput identifies relations by OID).
    pub source_oid: u32,
    /// `source_table` as text.
    pub source_table: String,
    pub resource: String,
    pub apiresource: Vec<Piece>,
    pub payload: JsonTemplate,
    pub revision_column: Option<String>,
    pub status_column: Option<String>,
    /// `old->new` and `new` keys to event suffixes.
    pub status_events: BTreeMap<String, String>,
    /// `insert`, `update`, `delete` to the event suffix used instead of
    /// `created`, `updated`, `deleted`.
    pub event_names: BTreeMap<String, String>,
    /// When set, a transaction that deletes more than one row of the table
    /// yields one `<resource>.<bulk_delete_event>` event listing them.
    pub bulk_delete_event: Option<String>,
    pub exclude_columns: HashSet<String>,
    pub enabled: bool,
    /// The payload uses `{changed}` (so updates compute the changed columns).
    pub uses_changed: bool,
    /// The payload uses `{old.col}` (so the previous row is kept).
    pub uses_old: bool,
}

/// A jsonb object of strings, as `row_to_json` or the stream gives it.
fn string_map(row: &Row, key: &str) -> BTreeMap<String, String> {
    match row.get(key) {
        Some(Value::Object(map)) => map
            .iter()
            .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_owned())))
            .collect(),
        Some(Value::String(s)) => {
            serde_json::from_str::<BTreeMap<String, String>>(s).unwrap_or_default()
        }
        _ => BTreeMap::new(),
    }
}

fn text(row: &Row, key: &str) -> Option<String> {
    match row.get(key)? {
        Value::String(s) => Some(s.clone()),
        Value::Null => None,
        other => Some(other.to_string()),
    }
}

impl Route {
    pub fn from_row(row: &Row) -> Result<Route, RouteError> {
        let source_oid = text(row, "source_oid")
            .and_then(|s| s.parse().ok())
            .ok_or(RouteError::Missing("source_oid"))?;
        let payload = match row.get("payload") {
            None | Some(Value::Null) => JsonTemplate::Row,
            Some(Value::String(s)) => match serde_json::from_str::<Value>(s) {
                Ok(v) => JsonTemplate::compile(&v)?,
                Err(_) => JsonTemplate::compile(&Value::String(s.clone()))?,
            },
            Some(v) => JsonTemplate::compile(v)?,
        };
        let exclude_columns = match row.get("exclude_columns") {
            Some(Value::Array(items)) => items
                .iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect(),
            _ => HashSet::new(),
        };
        let mut fields = Vec::new();
        payload.fields(&mut fields);
        let uses_changed = fields.contains(&Field::Changed);
        let uses_old = fields.iter().any(|f| matches!(f, Field::Old(_)));
        Ok(Route {
            source_oid,
            source_table: text(row, "source_table").ok_or(RouteError::Missing("source_table"))?,
            resource: text(row, "resource").ok_or(RouteError::Missing("resource"))?,
            apiresource: compile_text(
                &text(row, "apiresource").ok_or(RouteError::Missing("apiresource"))?,
            )?,
            payload,
            revision_column: text(row, "revision_column"),
            status_column: text(row, "status_column"),
            status_events: string_map(row, "status_events"),
            event_names: string_map(row, "event_names"),
            bulk_delete_event: text(row, "bulk_delete_event"),
            exclude_columns,
            enabled: row.get("enabled").and_then(Value::as_bool).unwrap_or(true),
            uses_changed,
            uses_old,
        })
    }

    /// The event suffix of an operation: its `event_names` entry (keyed
    /// `insert`, `update`, `delete`), else `created`, `updated`, `deleted`.
    pub fn suffix(&self, op: Op) -> &str {
        let default = match op {
            Op::Insert => "created",
            Op::Update => "updated",
            Op::Delete => "deleted",
            Op::Truncate => "truncated",
        };
        self.event_names
            .get(op.as_str())
            .map_or(default, String::as_str)
    }

    /// The event suffix of an update: a status event when the status column
    /// changed and a key matches (`old->new` first, then `new`), else
    /// `event_names.update`, else `updated`.
    pub fn update_suffix(&self, old: Option<&Row>, new: &Row) -> String {
        if let (Some(col), Some(old)) = (&self.status_column, old) {
            let before = old.get(col);
            let after = new.get(col);
            if before != after {
                let as_text = |v: Option<&Value>| match v {
                    Some(Value::String(s)) => s.clone(),
                    Some(Value::Null) | None => String::new(),
                    Some(v) => v.to_string(),
                };
                let (b, a) = (as_text(before), as_text(after));
                if let Some(s) = self
                    .status_events
                    .get(&format!("{b}->{a}"))
                    .or_else(|| self.status_events.get(&a))
                {
                    return s.clone();
                }
            }
        }
        self.suffix(Op::Update).to_owned()
    }

    /// Names of the visible columns whose value an update changed, in table
    /// order; empty without the previous row.
    pub fn changed_columns(&self, old: Option<&Row>, new: &Row) -> Vec<String> {
        let Some(old) = old else { return Vec::new() };
        new.iter()
            .filter(|(k, v)| !self.exclude_columns.contains(*k) && old.get(k) != Some(v))
            .map(|(k, _)| k.to_owned())
            .collect()
    }

    /// True when an update changed something other than excluded columns. The
    /// revision column is bookkeeping that moves with every update (often by
    /// trigger), so it alone does not make a change visible.
    pub fn changed_visible(&self, old: Option<&Row>, new: &Row) -> bool {
        let Some(old) = old else { return true };
        new.iter().any(|(k, v)| {
            !self.exclude_columns.contains(k)
                && self.revision_column.as_deref() != Some(k)
                && old.get(k) != Some(v)
        })
    }

    /// The row without excluded columns.
    pub fn visible<'r>(&self, row: &'r Row) -> Cow<'r, Row> {
        if self.exclude_columns.is_empty() {
            return Cow::Borrowed(row);
        }
        Cow::Owned(row.filtered(|k| !self.exclude_columns.contains(k)))
    }
}
