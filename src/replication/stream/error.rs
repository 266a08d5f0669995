//! Why a streaming session ends: the connection, a message walhook cannot
//! decode or did not expect (named by its WAL position and table), the
//! server closing the stream, the store failing, or shutdown.

use super::super::conn::ConnError;
use super::super::lsn::Lsn;
use super::super::pgoutput::DecodeError;

/// Why the loop stopped.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    #[error(transparent)]
    Conn(#[from] ConnError),
    #[error(
        "undecodable message at {lsn}{}: {source}; not confirming past it",
        on_table(table)
    )]
    Decode {
        lsn: Lsn,
        /// `schema.table` the message is about, when known.
        table: Option<String>,
        #[source]
        source: DecodeError,
    },
    #[error(
        "unexpected message at {lsn}{}: {what}; not confirming past it",
        on_table(table)
    )]
    Unexpected {
        lsn: Lsn,
        table: Option<String>,
        what: String,
    },
    #[error("the server closed the replication stream")]
    Closed,
    #[error("storing events failed; restarting the stream from the last confirmed position")]
    StoreFailed,
    #[error("shutting down")]
    Shutdown,
}

fn on_table(table: &Option<String>) -> String {
    table
        .as_ref()
        .map(|t| format!(" (table {t})"))
        .unwrap_or_default()
}

impl StreamError {
    /// The WAL position and table of a message this stream cannot take; the
    /// same bytes come back after a reconnect.
    pub fn bad_message(&self) -> Option<(Lsn, Option<&str>)> {
        match self {
            StreamError::Decode { lsn, table, .. } | StreamError::Unexpected { lsn, table, .. } => {
                Some((*lsn, table.as_deref()))
            }
            _ => None,
        }
    }

    /// Name the table, when the error does not already.
    pub(super) fn on(mut self, name: Option<String>) -> Self {
        if let StreamError::Decode { table, .. } | StreamError::Unexpected { table, .. } = &mut self
            && table.is_none()
        {
            *table = name;
        }
        self
    }

    pub fn kind(&self) -> &'static str {
        match self {
            StreamError::Conn(_) => "connection",
            StreamError::Decode { .. } => "decode",
            StreamError::Unexpected { .. } => "protocol",
            StreamError::Closed => "closed",
            StreamError::StoreFailed => "store",
            StreamError::Shutdown => "shutdown",
        }
    }
}

/// A message the stream did not expect at `lsn`.
pub(super) fn unexpected(lsn: Lsn, what: &str) -> StreamError {
    StreamError::Unexpected {
        lsn,
        table: None,
        what: what.to_owned(),
    }
}
