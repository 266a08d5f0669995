//! Operational events: changes of `walhook.subscription_health` as
//! `webhook.failing`, `webhook.recovered` and `webhook.disabled`.
//!
//! The delivering instances keep a subscription's endpoint health in that
//! table; it is in walhook's publication, so its changes reach the mapper in
//! the same ordered stream as the data. Only a change of `state` is an event
//! (counters and probe times move with every attempt and make none):
//!
//! | change                                    | event               |
//! |-------------------------------------------|---------------------|
//! | to `failing` (INSERT, or from another state) | `webhook.failing`   |
//! | `failing` -> `healthy`                    | `webhook.recovered` |
//! | to `disabled` (INSERT or UPDATE)          | `webhook.disabled`  |
//!
//! They go to subscriptions whose patterns match (`webhook.*`) except the one
//! they are about, whose endpoint is the one failing. The payload is a
//! fixed set of the row's columns ([`PAYLOAD_COLUMNS`]); the revision is the
//! change's WAL position, as for the other `webhook.*` events.

use serde_json::Value;
use uuid::Uuid;

use crate::replication::change::{Op, Row};

/// An operational event type, for catalogues and documentation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OperationalEvent {
    /// The `webhook-event-type`.
    pub event_type: &'static str,
    /// The state transition that makes it, in words.
    pub when: &'static str,
}

pub const FAILING: OperationalEvent = OperationalEvent {
    event_type: "webhook.failing",
    when: "a webhook's endpoint starts failing: its deliveries wait while a probe is retried",
};

pub const RECOVERED: OperationalEvent = OperationalEvent {
    event_type: "webhook.recovered",
    when: "a failing webhook's endpoint succeeded again: its waiting deliveries resume",
};

pub const DISABLED: OperationalEvent = OperationalEvent {
    event_type: "webhook.disabled",
    when: "a webhook was disabled after failing for its disable_after",
};

/// Every operational event type walhook makes, in the order a subscription
/// may go through them (for the event catalogue).
#[allow(dead_code, reason = "for GET /v1/catalogue to list")]
pub const OPERATIONAL_EVENTS: &[OperationalEvent] = &[FAILING, RECOVERED, DISABLED];

/// Columns of `walhook.subscription_health` an operational event carries
/// (`last_success_at` only in `webhook.recovered`).
pub const PAYLOAD_COLUMNS: &[&str] = &[
    "subscription_id",
    "state",
    "failing_since",
    "last_error",
    "consecutive_failures",
    "last_failure_at",
];

/// The operational event that a change of a health row stands for, or None
/// for a change that is no transition (counters, probes, a delete).
pub fn transition(op: Op, old: Option<&Row>, new: Option<&Row>) -> Option<OperationalEvent> {
    fn state(row: Option<&Row>) -> Option<&str> {
        row?.get("state")?.as_str()
    }
    let before = match op {
        Op::Insert => None,
        Op::Update => state(old),
        Op::Delete | Op::Truncate => return None,
    };
    match (before, state(new)?) {
        (before, after) if before == Some(after) => None,
        (_, "failing") => Some(FAILING),
        (Some("failing"), "healthy") => Some(RECOVERED),
        (_, "disabled") => Some(DISABLED),
        _ => None,
    }
}

/// The subscription a health row is about.
pub fn subject(row: &Row) -> Option<Uuid> {
    row.get("subscription_id")?.as_str()?.parse().ok()
}

/// The `resourcepayload` of an operational event from the row after the change.
pub fn payload(row: &Row, event: OperationalEvent) -> Row {
    let recovered = event == RECOVERED;
    PAYLOAD_COLUMNS
        .iter()
        .chain(recovered.then_some(&"last_success_at"))
        .map(|&column| (column, row.get(column).cloned().unwrap_or(Value::Null)))
        .collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn row(state: &str) -> Row {
        Row::from_json(json!({
            "subscription_id": "6a1f4d0e-8c2a-4e59-9a57-2f3c1d7eb0a4", "state": state,
            "failing_since": "2026-01-01T00:00:00.000Z", "consecutive_failures": 5,
            "last_error": "HTTP 503", "last_failure_at": "2026-01-01T00:01:00.000Z",
            "last_success_at": null, "next_probe_at": null, "probes": 2
        }))
    }

    #[test]
    fn only_state_transitions_are_events() {
        let (healthy, failing, disabled) = (row("healthy"), row("failing"), row("disabled"));
        let update = |a: &Row, b: &Row| transition(Op::Update, Some(a), Some(b));
        assert_eq!(update(&healthy, &failing), Some(FAILING));
        assert_eq!(update(&failing, &healthy), Some(RECOVERED));
        assert_eq!(update(&failing, &disabled), Some(DISABLED));
        assert_eq!(update(&healthy, &disabled), Some(DISABLED));
        assert_eq!(update(&failing, &failing), None, "a counter moved");
        assert_eq!(update(&healthy, &healthy), None);
        assert_eq!(
            update(&disabled, &healthy),
            None,
            "re-enabled: webhook.updated says so"
        );
        assert_eq!(transition(Op::Insert, None, Some(&failing)), Some(FAILING));
        assert_eq!(transition(Op::Insert, None, Some(&healthy)), None);
        assert_eq!(
            transition(Op::Insert, None, Some(&disabled)),
            Some(DISABLED)
        );
        assert_eq!(transition(Op::Delete, Some(&failing), None), None);
    }

    #[test]
    fn the_payload_is_the_fixed_columns() {
        let failing = payload(&row("failing"), FAILING);
        assert_eq!(
            serde_json::to_value(&failing).unwrap(),
            json!({
                "subscription_id": "6a1f4d0e-8c2a-4e59-9a57-2f3c1d7eb0a4", "state": "failing",
                "failing_since": "2026-01-01T00:00:00.000Z", "last_error": "HTTP 503",
                "consecutive_failures": 5, "last_failure_at": "2026-01-01T00:01:00.000Z"
            })
        );
        let recovered = payload(&row("healthy"), RECOVERED);
        assert!(recovered.contains_key("last_success_at"));
        assert_eq!(
            subject(&row("failing")),
            Some(Uuid::from_u128(0x6a1f_4d0e_8c2a_4e59_9a57_2f3c_1d7e_b0a4))
        );
    }
}
