//! Errors of the replication connection, and how a server's ErrorResponse
//! becomes one: what [`super::ReplicationConnection`] and the stream return,
//! classified (transient or fatal) for the slot loop's reconnect decision.

use fallible_iterator::FallibleIterator;
use postgres_protocol::message::backend::ErrorFields;

use crate::error::Disposition;

/// Why the replication connection failed. Messages say what to change.
#[derive(Debug, thiserror::Error)]
pub enum ConnError {
    #[error("replication connection I/O error: {0}")]
    Io(#[from] std::io::Error),
    #[error("server error {code}: {message}{}{}", detail.as_ref().map(|d| format!(" ({d})")).unwrap_or_default(), hint.as_ref().map(|h| format!("; hint: {h}")).unwrap_or_default())]
    Server {
        code: String,
        message: String,
        detail: Option<String>,
        hint: Option<String>,
    },
    #[error("replication protocol error: {0}")]
    Protocol(String),
    #[error("{0}")]
    Auth(String),
    #[error("{0}")]
    Config(String),
}

impl ConnError {
    /// The SQLSTATE of a server error.
    pub fn sqlstate(&self) -> Option<&str> {
        match self {
            ConnError::Server { code, .. } => Some(code),
            _ => None,
        }
    }

    /// What to do about it ([`crate::error`] decides by SQLSTATE): lost
    /// connections are transient; authentication and configuration fatal.
    pub fn disposition(&self) -> Disposition {
        match self {
            ConnError::Io(_) | ConnError::Protocol(_) => Disposition::Transient,
            ConnError::Auth(_) | ConnError::Config(_) => Disposition::Fatal,
            ConnError::Server { code, .. } => crate::error::classify_code(code),
        }
    }

    /// Worth reconnecting (with backoff, or as a standby)?
    pub fn is_transient(&self) -> bool {
        self.disposition() != Disposition::Fatal
    }
}

/// The fields of an ErrorResponse/NoticeResponse as a [`ConnError::Server`];
/// a malformed field list keeps what was read before it.
pub(super) fn server_error(mut fields: ErrorFields<'_>) -> ConnError {
    let (mut code, mut message, mut detail, mut hint) = (String::new(), String::new(), None, None);
    while let Ok(Some(field)) = fields.next() {
        let value = String::from_utf8_lossy(field.value_bytes()).into_owned();
        match field.type_() {
            b'C' => code = value,
            b'M' => message = value,
            b'D' => detail = Some(value),
            b'H' => hint = Some(value),
            _ => {}
        }
    }
    ConnError::Server {
        code,
        message,
        detail,
        hint,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::replication::conn::wire::parse_message as parse;
    use postgres_protocol::message::backend::Message;

    fn error(body: &[u8]) -> ConnError {
        match parse(b'E', body).unwrap() {
            Message::ErrorResponse(body) => server_error(body.fields()),
            _ => unreachable!(),
        }
    }

    #[test]
    fn server_errors_keep_their_fields() {
        let e = error(b"SERROR\0C55006\0Mreplication slot \"w\" is active\0HWait\0\0");
        assert_eq!(e.sqlstate(), Some("55006"));
        assert!(e.is_transient());
        assert!(e.to_string().contains("is active"));
        assert!(e.to_string().contains("hint: Wait"));
        assert!(
            !error(b"C55000\0Mlogical decoding requires wal_level >= logical\0\0").is_transient()
        );
        assert!(!error(b"C28P01\0Mbad\0\0").is_transient());
        // malformed bodies never panic
        let _ = error(b"C");
        let _ = error(b"");
        assert_eq!(error(b"C08006\0Mlost\0Xtrailing").sqlstate(), Some("08006"));
    }
}
