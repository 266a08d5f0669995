//! The API's error body, and which failures are the client's (4xx) and which
//! are ours (5xx).
//!
//! Bad input never becomes a 500: the database's own rules (URL rules, event
//! patterns, CHECK constraints, bad intervals or paths) raise errors that
//! become a 400 whose detail names the API field the rule is about, read from
//! the error's column or constraint (the older rules, which raise without a
//! column, begin their message with it; a value that does not parse as its
//! type names nothing, and `webhooks` finds its field by parsing each). A
//! `tokio_postgres::Error` converts with `?`: a refusal is a 400, a lost
//! connection a 503, anything else a 500.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use tokio_postgres::error::{DbError, SqlState};
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

    /// The value the client gave for this 400's parameter, from its body
    /// (`given` hides what must not be echoed).
    pub fn with_given(mut self, given: impl Fn(&str) -> serde_json::Value) -> Self {
        for detail in &mut self.body.details {
            if detail.location == "body" && detail.value.is_null() {
                *detail.value = given(&detail.param);
            }
        }
        self
    }

    /// The parameter of a 400 the database's error did not name (`body`);
    /// [`ApiError::place`] can name it.
    pub fn unplaced(&self) -> bool {
        self.status == StatusCode::BAD_REQUEST
            && self.body.details.len() == 1
            && self.body.details[0].param == "body"
            && self.body.details[0].location == "body"
    }

    /// Name the field of an [`unplaced`](ApiError::unplaced) 400, e.g. the
    /// column whose value did not parse.
    pub fn place(mut self, column: &str) -> Self {
        if let Some(detail) = self.body.details.first_mut() {
            detail.param = field_of_column(column);
            self.body.message = format!("{}: {}", detail.param, detail.msg);
        }
        self
    }
}

/// Database errors: a rule refusing the client's value is a 400 naming the
/// field (from the error's column, else its constraint); an unreachable
/// database a 503;
/// anything else ours (500).
impl From<tokio_postgres::Error> for ApiError {
    fn from(error: tokio_postgres::Error) -> Self {
        let Some(db) = error.as_db_error() else {
            return Self::unavailable(&error);
        };
        if !is_refusal(db) {
            return Self::internal(&error);
        }
        let param = column_of(db).map_or_else(|| "body".to_owned(), |c| field_of_column(&c));
        Self::invalid(ErrorDetail::new(
            param,
            "body",
            serde_json::Value::Null,
            db.message(),
        ))
    }
}

/// Whether the database refused a value (a rule, a constraint, a value that
/// does not parse as its type) rather than failed.
fn is_refusal(db: &DbError) -> bool {
    let code = db.code();
    code == &SqlState::RAISE_EXCEPTION
        || code == &SqlState::CHECK_VIOLATION
        || code == &SqlState::NOT_NULL_VIOLATION
        || code.code().starts_with("22")
        // a jsonpath that does not parse; a syntax error of our own SQL has a position
        || (code == &SqlState::SYNTAX_ERROR && db.position().is_none())
}

/// The column a refusal is about: the error's column field (walhook's rules
/// raise `USING COLUMN`, migration 0018), else its `<table>_<column>_check`
/// constraint.
pub(super) fn column_of(db: &DbError) -> Option<String> {
    if let Some(column) = db.column() {
        return Some(column.to_owned());
    }
    let constraint = db.constraint()?;
    let table = db.table().unwrap_or("subscriptions");
    constraint
        .strip_prefix(table)
        .and_then(|c| c.strip_prefix('_'))
        .and_then(|c| c.strip_suffix("_check"))
        .map(str::to_owned)
}

/// The API field of a column: camelCase, with the credentials' columns as
/// `auth` and the backfill columns under their API names.
pub fn field_of_column(column: &str) -> String {
    match column {
        c if c.starts_with("auth_") => "auth".to_owned(),
        "where_clause" => "where".to_owned(),
        "subscription_id" => "webhookId".to_owned(),
        "source_table" => "table".to_owned(),
        c => {
            let mut out = String::with_capacity(c.len());
            let mut upper = false;
            for ch in c.chars() {
                if ch == '_' {
                    upper = true;
                } else if upper {
                    out.extend(ch.to_uppercase());
                    upper = false;
                } else {
                    out.push(ch);
                }
            }
            out
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(self.body)).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::field_of_column;

    #[test]
    fn columns_become_api_fields() {
        assert_eq!(field_of_column("url"), "url");
        assert_eq!(field_of_column("query_params"), "queryParams");
        assert_eq!(field_of_column("auth_type"), "auth");
        assert_eq!(field_of_column("auth_password"), "auth");
        assert_eq!(field_of_column("rate_limit"), "rateLimit");
        assert_eq!(
            field_of_column("failure_window_min_attempts"),
            "failureWindowMinAttempts"
        );
        assert_eq!(field_of_column("where_clause"), "where");
        assert_eq!(field_of_column("subscription_id"), "webhookId");
    }
}
