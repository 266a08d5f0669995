//! Grouping the deletes of one transaction (`walhook.routes.bulk_delete_event`).
//!
//! A route with `bulk_delete_event` set holds its deletes until the transaction
//! commits. One delete is then sent as the usual `<resource>.deleted` event
//! (built when it was seen); two or more become one
//! `<resource>.<bulk_delete_event>` event whose payload lists every deleted
//! row: `{"count": N, "deleted": [{"apiresource", "revision",
//! "resourcepayload"}, ...]}`, in delete order. Its `apiresource` is the path
//! the listed ones share (`/realms/r1/users` for users of one realm), its
//! `revision` the highest listed. It takes the id and position of the first
//! delete, so replaying the transaction yields the same id.
//!
//! Memory stays bounded in a transaction that deletes a million rows: once the
//! listing passes `max_payload_bytes` (where its event could not be sent
//! anyway) the items are dropped and only counted, and the event is stored
//! with an error saying so.

use serde_json::{Map, Value};

use super::event::Event;

/// The deletes of one routed table in the current transaction.
pub struct DeleteGroup {
    /// The routed table.
    pub oid: u32,
    /// `<resource>.<bulk_delete_event>`.
    event_type: String,
    /// The first delete as an event of its own (sent when it stays alone).
    first: Event,
    items: Vec<Value>,
    /// Serialized size of `items`, roughly.
    bytes: usize,
    count: usize,
    /// `items` were dropped because they passed `max_bytes`.
    overflow: bool,
    max_bytes: usize,
    /// The path every listed apiresource lies under.
    prefix: String,
    max_revision: i64,
}

/// What a group becomes at commit.
pub enum Grouped {
    /// A single delete: its own event, complete.
    One(Event),
    /// Several: the event to finish (id, position, type, apiresource and
    /// revision set) and its payload, or why it has none.
    Many {
        event: Event,
        payload: Result<Value, String>,
    },
}

impl DeleteGroup {
    /// A group opened by its first delete: `first` is the complete event,
    /// `payload` its resourcepayload.
    pub fn new(
        oid: u32,
        event_type: String,
        first: Event,
        payload: Value,
        max_bytes: usize,
    ) -> Self {
        let prefix = parent(&first.apiresource).to_owned();
        let mut group = DeleteGroup {
            oid,
            event_type,
            items: Vec::new(),
            bytes: 0,
            count: 0,
            overflow: false,
            max_bytes,
            prefix,
            max_revision: first.revision,
            first,
        };
        let (apiresource, revision) = (group.first.apiresource.clone(), group.first.revision);
        group.push(apiresource, revision, payload);
        group
    }

    /// One more delete of the same table in the same transaction.
    pub fn push(&mut self, apiresource: String, revision: i64, payload: Value) {
        self.count += 1;
        self.max_revision = self.max_revision.max(revision);
        while !self.prefix.is_empty() && !under(&apiresource, &self.prefix) {
            self.prefix.truncate(parent(&self.prefix).len());
        }
        if self.overflow {
            return;
        }
        let mut item = Map::with_capacity(3);
        item.insert("apiresource".into(), Value::String(apiresource));
        item.insert("revision".into(), Value::from(revision));
        item.insert("resourcepayload".into(), payload);
        let item = Value::Object(item);
        self.bytes += item.to_string().len() + 1;
        if self.bytes > self.max_bytes {
            self.overflow = true;
            self.items = Vec::new();
        } else {
            self.items.push(item);
        }
    }

    /// The group at commit.
    pub fn finish(self) -> Grouped {
        if self.count == 1 {
            return Grouped::One(self.first);
        }
        let apiresource = if self.prefix.is_empty() {
            "/".to_owned()
        } else {
            self.prefix
        };
        let payload = if self.overflow {
            Err(format!(
                "{} listing {} deleted rows exceeds max_payload_bytes ({}): raise it in \
                 walhook.settings or exclude large columns",
                self.event_type, self.count, self.max_bytes
            ))
        } else {
            let mut payload = Map::with_capacity(2);
            payload.insert("count".into(), Value::from(self.count));
            payload.insert("deleted".into(), Value::Array(self.items));
            Ok(Value::Object(payload))
        };
        Grouped::Many {
            event: Event {
                event_type: self.event_type,
                apiresource,
                revision: self.max_revision,
                body: None,
                error: None,
                subscriptions: Vec::new(),
                filter: None,
                ..self.first
            },
            payload,
        }
    }
}

/// The path without its last segment (`/a/b/c` -> `/a/b`; `/a` -> ``).
fn parent(path: &str) -> &str {
    path.rsplit_once('/').map_or("", |(head, _)| head)
}

/// `path` is `prefix` followed by more segments.
fn under(path: &str, prefix: &str) -> bool {
    path.strip_prefix(prefix)
        .is_some_and(|rest| rest.starts_with('/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shared_path_of_listed_resources() {
        assert_eq!(parent("/realms/r1/users/u1"), "/realms/r1/users");
        assert_eq!(parent("/users"), "");
        assert!(under("/realms/r1/users/u2", "/realms/r1/users"));
        assert!(!under("/realms/r10/users/u2", "/realms/r1"));
    }
}
