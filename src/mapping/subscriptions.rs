//! Subscriptions as the mapper needs them: id, event type patterns,
//! disabled, and the row filter ([`super::filter`]) in force.

use std::sync::Arc;

use serde_json::Value;
use uuid::Uuid;

use crate::replication::change::Row;

#[derive(Debug, Clone)]
pub struct SubscriptionFilter {
    pub id: Uuid,
    pub patterns: Vec<String>,
    pub disabled: bool,
    /// `filter` as jsonpath text (None: every event of its types).
    pub filter: Option<Arc<str>>,
}

impl SubscriptionFilter {
    pub fn from_row(row: &Row) -> Option<SubscriptionFilter> {
        let id = row.get("id")?.as_str()?.parse().ok()?;
        let patterns = match row.get("events") {
            Some(Value::Array(items)) => items
                .iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect(),
            _ => vec!["*".into()],
        };
        Some(SubscriptionFilter {
            id,
            patterns,
            disabled: row
                .get("disabled")
                .and_then(Value::as_bool)
                .unwrap_or(false),
            filter: match row.get("filter") {
                Some(Value::String(path)) => Some(Arc::from(path.as_str())),
                _ => None,
            },
        })
    }

    pub fn matches(&self, event_type: &str) -> bool {
        !self.disabled && self.patterns.iter().any(|p| pattern_matches(p, event_type))
    }
}

/// `*`, `prefix.*` or an exact type.
pub fn pattern_matches(pattern: &str, event_type: &str) -> bool {
    if pattern == "*" {
        return true;
    }
    match pattern.strip_suffix(".*") {
        Some(prefix) => event_type
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.starts_with('.')),
        None => pattern == event_type,
    }
}

/// Columns of `walhook.subscriptions` never sent in `webhook.*` events.
pub const REDACTED_COLUMNS: &[&str] = &["secret", "previous_secret", "auth_token", "auth_password"];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns() {
        assert!(pattern_matches("*", "a.b"));
        assert!(pattern_matches(
            "software_statement.*",
            "software_statement.suspended"
        ));
        assert!(!pattern_matches(
            "software_statement.*",
            "software_statements.created"
        ));
        assert!(pattern_matches("a.created", "a.created"));
        assert!(!pattern_matches("a.created", "a.updated"));
    }
}
