//! Error kinds shared by the stages, and the one place that decides which
//! failures are worth a retry.
//!
//! Every database or replication failure is classified here by its SQLSTATE
//! (`tokio_postgres::error::SqlState`): [`Disposition::Transient`] (reconnect
//! with backoff), [`Disposition::SlotBusy`] (another walhook streams the slot:
//! wait as a standby) or [`Disposition::Fatal`] (the operator must change
//! something: stop and say what). A failure without a SQLSTATE (I/O, a closed
//! connection) is transient.

use tokio_postgres::error::SqlState;

/// What to do about a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    /// Retry with backoff: a lost connection, a server starting or stopping,
    /// a conflict that clears by itself.
    Transient,
    /// The replication slot is active in another process: wait as a standby.
    SlotBusy,
    /// Retrying cannot help: authentication, permissions, a missing or
    /// unusable object, a server setting.
    Fatal,
}

/// Classify a SQLSTATE. Authentication (class 28), syntax and access rules
/// (class 42, e.g. insufficient privilege or an undefined object) and an object
/// in the wrong state (55000, e.g. `wal_level` or an invalidated slot) are
/// fatal; an object in use (55006, the slot held elsewhere) means standby;
/// anything else (connection exceptions, shutdowns, resource limits,
/// serialization failures) is transient.
pub fn classify_sqlstate(code: &SqlState) -> Disposition {
    let class = |c: &SqlState| c.code().get(..2).map(str::to_owned);
    if *code == SqlState::OBJECT_IN_USE {
        Disposition::SlotBusy
    } else if *code == SqlState::OBJECT_NOT_IN_PREREQUISITE_STATE
        || class(code) == class(&SqlState::INVALID_AUTHORIZATION_SPECIFICATION)
        || class(code) == class(&SqlState::SYNTAX_ERROR_OR_ACCESS_RULE_VIOLATION)
    {
        Disposition::Fatal
    } else {
        Disposition::Transient
    }
}

/// Classify a SQLSTATE given as text (the replication client's ErrorResponse).
pub fn classify_code(code: &str) -> Disposition {
    classify_sqlstate(&SqlState::from_code(code))
}

/// Classify a SQL connection's error.
pub fn classify(error: &tokio_postgres::Error) -> Disposition {
    match error.code() {
        Some(code) => classify_sqlstate(code),
        None => Disposition::Transient,
    }
}

/// Whether a SQL error says the server is shutting down or not accepting
/// connections yet (57P01 admin_shutdown on a session, 57P02 crash_shutdown,
/// 57P03 cannot_connect_now on connect). The walsender will not exit before
/// walhook confirms everything it sent, and a server shutting down refuses
/// the sessions that would store it: on seeing this, the replication
/// connection is closed at once and resumes from the confirmed position
/// when the server is back.
pub fn server_stopping(error: &tokio_postgres::Error) -> bool {
    error.code().is_some_and(|code| {
        [
            SqlState::ADMIN_SHUTDOWN,
            SqlState::CRASH_SHUTDOWN,
            SqlState::CANNOT_CONNECT_NOW,
        ]
        .contains(code)
    })
}

/// Whether PostgreSQL refused a statement for what it holds (a data
/// exception, an integrity or syntax rule, a program limit): sending the same
/// statement again fails the same way, unlike a lost connection, a shutdown,
/// a serialization failure or a lack of resources.
pub fn refused_content(error: &tokio_postgres::Error) -> bool {
    error.as_db_error().is_some_and(|db| {
        let class = db.code().code().get(..2).unwrap_or_default();
        matches!(class, "22" | "23" | "42" | "54")
    })
}

/// A SQL error in full: the server's message, detail, hint and SQLSTATE
/// (`tokio_postgres::Error` alone prints only "db error").
pub fn describe(error: &tokio_postgres::Error) -> String {
    let Some(db) = error.as_db_error() else {
        return error.to_string();
    };
    let mut text = format!("{} (SQLSTATE {})", db.message(), db.code().code());
    if let Some(detail) = db.detail() {
        text.push_str(&format!("; detail: {detail}"));
    }
    if let Some(hint) = db.hint() {
        text.push_str(&format!("; hint: {hint}"));
    }
    text
}

/// A SQL statement failed on a working connection; `what` says which step.
#[derive(Debug, thiserror::Error)]
#[error("{what} failed: {}", describe(source))]
pub struct StatementError {
    pub what: &'static str,
    #[source]
    pub source: tokio_postgres::Error,
}

/// `map_err` helper: name the step a SQL error happened in.
pub fn during(what: &'static str) -> impl FnOnce(tokio_postgres::Error) -> StatementError {
    move |source| StatementError { what, source }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlstates_classify() {
        assert_eq!(classify_code("55006"), Disposition::SlotBusy);
        for fatal in ["28P01", "28000", "42501", "42704", "55000"] {
            assert_eq!(classify_code(fatal), Disposition::Fatal, "{fatal}");
        }
        for transient in ["08006", "57P01", "57P03", "53300", "40001", "XX000"] {
            assert_eq!(
                classify_code(transient),
                Disposition::Transient,
                "{transient}"
            );
        }
    }
}
