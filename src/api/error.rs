//! The API's error body, and which failures are the client's (4xx) and which
//! are ours (5xx).
//!
//! Bad input never becomes a 500: the database's own rules (URL rules, event
//! patterns, CHECK constraints, bad intervals) raise errors that are mapped to a
//! 400 whose detail names the API field the rule is about.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use tokio_postgres::error::SqlState;
use utoipa::ToSchema;

/// `{"code", "type", "message", "details": [...]}`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ErrorBody {
    /// Machine-readable: `validation_error`, `unauthorized`, `not_found`,
    /// `unavailable` or `internal_error`.
    pub code: String,
    /// `invalid_request_error`, `authentication_error`, `not_found_error` or `api_error`.
    #[serde(rename = "type")]
    pub kind: String,
    pub message: String,
    pub details: Vec<ErrorDetail>,
}

/// Which parameter was wrong and why.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// The value given (null when absent).
    pub value: Box<serde_json::Value>,
    pub msg: String,
    /// The parameter: a body field (`url`, `auth`), a query parameter, `id` or `Authorization`.
    pub param: String,
    /// `body`, `query`, `path` or `header`.
    pub location: String,
}

impl ErrorDetail {
    pub fn new(
        param: impl Into<String>,
        location: &str,
        value: serde_json::Value,
        msg: impl Into<String>,
    ) -> Self {
        ErrorDetail {
            value: Box::new(value),
            msg: msg.into(),
            param: param.into(),
            location: location.to_owned(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub body: ErrorBody,
}

impl ApiError {
    fn new(status: StatusCode, code: &str, kind: &str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            body: ErrorBody {
                code: code.to_owned(),
                kind: kind.to_owned(),
                message: message.into(),
                details: Vec::new(),
            },
        }
    }

    /// 400 about one parameter; the message is the detail's.
    pub fn invalid(detail: ErrorDetail) -> Self {
        Self::invalid_all(vec![detail])
    }

    /// 400 listing every bad parameter found.
    pub fn invalid_all(details: Vec<ErrorDetail>) -> Self {
        let message = match details.as_slice() {
            [one] => format!("{}: {}", one.param, one.msg),
            _ => format!("{} invalid parameters", details.len()),
        };
        let mut error = Self::new(
            StatusCode::BAD_REQUEST,
            "validation_error",
            "invalid_request_error",
            message,
        );
        error.body.details = details;
        error
    }

    pub fn unauthorized(msg: &str) -> Self {
        let mut error = Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "authentication_error",
            msg,
        );
        error.body.details.push(ErrorDetail::new(
            "Authorization",
            "header",
            serde_json::Value::Null,
            msg,
        ));
        error
    }

    pub fn not_found(what: &str, id: &str) -> Self {
        let mut error = Self::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "not_found_error",
            format!("no {what} with id {id}"),
        );
        error.body.details.push(ErrorDetail::new(
            "id",
            "path",
            serde_json::Value::String(id.to_owned()),
            format!("no {what} with this id"),
        ));
        error
    }

    pub fn unavailable(error: &dyn std::fmt::Display) -> Self {
        tracing::warn!(%error, "api: database unavailable");
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "api_error",
            "the database is unavailable; retry later",
        )
    }

    pub fn internal(error: &dyn std::fmt::Display) -> Self {
        tracing::error!(%error, "api: internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            "api_error",
            "internal error; see walhook's log",
        )
    }

    /// A database error of a write: a rule violation is the client's (400,
    /// naming the field via `param_of`), anything else ours.
    pub fn from_write(
        error: tokio_postgres::Error,
        value_of: impl Fn(&str) -> serde_json::Value,
    ) -> Self {
        let Some(db) = error.as_db_error() else {
            return Self::unavailable(&error);
        };
        let code = db.code();
        let rule_violation = code == &SqlState::RAISE_EXCEPTION
            || code == &SqlState::CHECK_VIOLATION
            || code == &SqlState::NOT_NULL_VIOLATION
            || code.code().starts_with("22");
        if !rule_violation {
            return Self::internal(&error);
        }
        let param = param_of(db.message(), db.constraint());
        Self::invalid(ErrorDetail::new(
            param,
            "body",
            value_of(param),
            db.message(),
        ))
    }
}

/// The API field a database rule message or constraint is about.
fn param_of(message: &str, constraint: Option<&str>) -> &'static str {
    const FIELDS: &[(&str, &str)] = &[
        ("url", "url"),
        ("events", "events"),
        ("headers", "headers"),
        ("query_params", "queryParams"),
        ("auth_", "auth"),
        ("retry_schedule", "retrySchedule"),
        ("interval", "retrySchedule"),
        ("timeout_ms", "timeoutMs"),
        ("max_in_flight", "maxInFlight"),
        ("envelope", "envelope"),
        ("secret", "secret"),
    ];
    let subject = constraint
        .map(|c| c.trim_start_matches("subscriptions_"))
        .unwrap_or(message);
    FIELDS
        .iter()
        .find(|(prefix, _)| subject.starts_with(prefix) || subject.contains(&format!(" {prefix}")))
        .map(|(_, param)| *param)
        .unwrap_or("body")
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(self.body)).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::param_of;

    #[test]
    fn database_rules_name_their_field() {
        assert_eq!(
            param_of("url rule query: url must not contain a query string", None),
            "url"
        );
        assert_eq!(
            param_of("events pattern a..b is not an exact type", None),
            "events"
        );
        assert_eq!(param_of("auth_type bearer needs auth_token", None), "auth");
        assert_eq!(
            param_of("x", Some("subscriptions_timeout_ms_check")),
            "timeoutMs"
        );
        assert_eq!(
            param_of("x", Some("subscriptions_max_in_flight_check")),
            "maxInFlight"
        );
        assert_eq!(
            param_of("invalid input syntax for type interval: \"soon\"", None),
            "retrySchedule"
        );
        assert_eq!(
            param_of("query_params must be a JSON object of strings", None),
            "queryParams"
        );
    }
}
