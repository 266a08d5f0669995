//! The body of `POST` and `PUT /v1/webhooks`: each field checked for its JSON
//! type and turned into the columns of `walhook.subscriptions` it sets.
//!
//! Unknown fields, read-only ones, missing required ones and values of the
//! wrong JSON type are refused here, all at once, each naming its field. What
//! a value must contain (URL rules, patterns, ranges, a path that parses) is
//! the database's to decide, as for SQL writes.

use std::collections::BTreeMap;

use axum::body::Bytes;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use super::error::{ApiError, ErrorDetail};
use super::schema::AuthInput;
use crate::store::webhooks::Assignment;

/// Body fields of POST and PUT, in documentation order.
pub const FIELDS: &[&str] = &[
    "url",
    "events",
    "disabled",
    "name",
    "description",
    "headers",
    "queryParams",
    "auth",
    "ordered",
    "envelope",
    "retrySchedule",
    "timeoutMs",
    "maxInFlight",
    "signatureSchemes",
    "filter",
    "rateLimit",
    "failureThreshold",
    "failureRateThreshold",
    "failureWindow",
    "failureWindowMinAttempts",
    "probeInterval",
    "disableAfter",
];

/// Fields of a webhook that walhook sets: refused in a body, by name.
const READ_ONLY: &[&str] = &[
    "id",
    "secret",
    "disabledReason",
    "disabledAt",
    "health",
    "createdAt",
    "updatedAt",
];

/// Fields POST requires.
pub const REQUIRED: &[&str] = &["url", "events"];

/// Parse a JSON object body, refusing unknown fields (and, when `required`,
/// missing ones), then turn each field into column assignments.
pub fn assignments(
    body: &Bytes,
    required: &[&str],
) -> Result<(Map<String, Value>, Vec<Assignment>), ApiError> {
    let map = match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => map,
        Ok(other) => {
            return Err(ApiError::invalid(ErrorDetail::new(
                "body",
                "body",
                other,
                "the body must be a JSON object",
            )));
        }
        Err(e) => {
            return Err(ApiError::invalid(ErrorDetail::new(
                "body",
                "body",
                Value::Null,
                format!("the body is not valid JSON: {e}"),
            )));
        }
    };
    let mut details = Vec::new();
    for key in map.keys().filter(|k| !FIELDS.contains(&k.as_str())) {
        let msg = if READ_ONLY.contains(&key.as_str()) {
            "read-only: walhook sets it".to_owned()
        } else {
            format!("unknown field; known fields: {}", FIELDS.join(", "))
        };
        details.push(ErrorDetail::new(
            key.as_str(),
            "body",
            map[key].clone(),
            msg,
        ));
    }
    for key in required.iter().filter(|k| !map.contains_key(**k)) {
        details.push(ErrorDetail::new(*key, "body", Value::Null, "required"));
    }
    let mut set = Vec::new();
    for (key, value) in map.iter().filter(|(k, _)| FIELDS.contains(&k.as_str())) {
        match assign(key, value.clone()) {
            Ok(mut columns) => set.append(&mut columns),
            Err(detail) => details.push(detail),
        }
    }
    if details.is_empty() {
        Ok((map, set))
    } else {
        Err(ApiError::invalid_all(details))
    }
}

/// A field's value as `T`, or a detail naming it.
/// (`auth` is never echoed: it holds credentials.)
fn typed<T: DeserializeOwned>(key: &str, value: Value, expected: &str) -> Result<T, ErrorDetail> {
    serde_json::from_value(value.clone()).map_err(|e| {
        let shown = if key == "auth" { Value::Null } else { value };
        ErrorDetail::new(key, "body", shown, format!("must be {expected} ({e})"))
    })
}

/// Fields that may not be null (all but name and description).
fn not_null<T: DeserializeOwned>(
    key: &str,
    value: Value,
    expected: &str,
) -> Result<T, ErrorDetail> {
    if value.is_null() {
        return Err(ErrorDetail::new(
            key,
            "body",
            value,
            format!("must be {expected}, not null"),
        ));
    }
    typed(key, value, expected)
}

fn assign(key: &str, value: Value) -> Result<Vec<Assignment>, ErrorDetail> {
    let one = |a: Assignment| Ok(vec![a]);
    match key {
        "url" => one(Assignment::new(
            "url",
            not_null::<String>(key, value, "a string")?,
        )),
        "events" => one(Assignment::new(
            "events",
            not_null::<Vec<String>>(key, value, "an array of event type patterns")?,
        )),
        "disabled" => one(Assignment::new(
            "disabled",
            not_null::<bool>(key, value, "a boolean")?,
        )),
        "ordered" => one(Assignment::new(
            "ordered",
            not_null::<bool>(key, value, "a boolean")?,
        )),
        "name" | "description" => {
            let text: Option<String> = typed(key, value, "a string or null")?;
            one(Assignment::new(
                if key == "name" { "name" } else { "description" },
                text,
            ))
        }
        "headers" | "queryParams" => {
            let map: BTreeMap<String, String> = not_null(key, value, "an object of strings")?;
            let column = if key == "headers" {
                "headers"
            } else {
                "query_params"
            };
            one(Assignment::new(
                column,
                serde_json::to_value(map).unwrap_or_default(),
            ))
        }
        "envelope" => one(Assignment::new(
            "envelope",
            not_null::<String>(key, value, "\"none\" or \"standard\"")?,
        )),
        "retrySchedule" => one(Assignment::new(
            "retry_schedule",
            not_null::<Vec<String>>(key, value, "an array of intervals such as \"5s\"")?,
        )
        .cast("::text[]::interval[]")),
        "timeoutMs" => one(Assignment::new(
            "timeout_ms",
            not_null::<i32>(key, value, "an integer")?,
        )),
        "maxInFlight" => one(Assignment::new(
            "max_in_flight",
            not_null::<i32>(key, value, "an integer")?,
        )),
        "signatureSchemes" => one(Assignment::new(
            "signature_schemes",
            not_null::<Vec<String>>(key, value, "an array of \"v1\", \"v1a\", \"rfc9421\"")?,
        )),
        "filter" => one(Assignment::new(
            "filter",
            typed::<Option<String>>(key, value, "a SQL/JSON path predicate or null")?,
        )
        .cast("::text::jsonpath")),
        "rateLimit" => one(Assignment::new(
            "rate_limit",
            typed::<Option<f64>>(key, value, "deliveries per second (a number) or null")?,
        )),
        "failureThreshold" => one(Assignment::new(
            "failure_threshold",
            not_null::<i32>(key, value, "an integer")?,
        )),
        "failureRateThreshold" => one(Assignment::new(
            "failure_rate_threshold",
            not_null::<f64>(key, value, "a number above 0, at most 1")?,
        )),
        "failureWindowMinAttempts" => one(Assignment::new(
            "failure_window_min_attempts",
            not_null::<i32>(key, value, "an integer")?,
        )),
        "failureWindow" | "probeInterval" => one(Assignment::new(
            if key == "failureWindow" {
                "failure_window"
            } else {
                "probe_interval"
            },
            not_null::<String>(key, value, "an interval such as \"5min\"")?,
        )
        .cast("::text::interval")),
        "disableAfter" => one(Assignment::new(
            "disable_after",
            typed::<Option<String>>(key, value, "an interval such as \"5d\", or null")?,
        )
        .cast("::text::interval")),
        "auth" => {
            let auth: AuthInput = not_null(
                key,
                value,
                "{\"type\": \"none\"}, {\"type\": \"bearer\", \"token\"} or {\"type\": \"basic\", \"username\", \"password\"}",
            )?;
            let (kind, token, username, password) = match auth {
                AuthInput::None {} => ("none", None, None, None),
                AuthInput::Bearer { token } => ("bearer", Some(token), None, None),
                AuthInput::Basic { username, password } => {
                    ("basic", None, Some(username), Some(password))
                }
            };
            Ok(vec![
                Assignment::new("auth_type", kind),
                Assignment::new("auth_token", token),
                Assignment::new("auth_username", username),
                Assignment::new("auth_password", password),
            ])
        }
        _ => Ok(Vec::new()), // unknown fields are refused by the caller
    }
}

/// The value a client gave for `param`, for error details; credentials hidden.
pub fn given(map: &Map<String, Value>) -> impl Fn(&str) -> Value + '_ {
    |param| match param {
        "auth" => Value::Null,
        _ => map.get(param).cloned().unwrap_or(Value::Null),
    }
}
