//! The replication connection: PostgreSQL's wire protocol spoken by us, because
//! tokio-postgres does not stream CopyBoth.
//!
//! An SSLRequest and a rustls handshake first when `sslmode` asks for TLS
//! ([`crate::tls`]; with the client certificate of `sslcert`/`sslkey` when the
//! URL names one); then startup with `replication=database`, authentication
//! (trust, cleartext, md5, SCRAM-SHA-256 via postgres-protocol), simple queries
//! (`IDENTIFY_SYSTEM`, `CREATE_REPLICATION_SLOT`), then `START_REPLICATION`, after
//! which the connection becomes a [`ReplicationStream`] of CopyData frames.
//! Backend messages are parsed by `postgres_protocol::message::backend::Message`
//! (CopyBothResponse, which it does not know, by its tag); what is ours is the
//! startup, the CopyBoth loop and its LSN bookkeeping. Messages are cut out of
//! one read buffer without copying; an XLogData payload is a slice of it.
//!
//! The session runs with `TimeZone=UTC` and `DateStyle=ISO`, so timestamps in
//! pgoutput's text values have one known form.
//!
//! The parts: [`socket`] (the host and TLS), [`auth`] (authentication),
//! [`wire`] (framing), [`copy_both`] (the stream), [`error`].

mod auth;
mod copy_both;
mod error;
mod socket;
mod wire;

use bytes::BytesMut;
use fallible_iterator::FallibleIterator;
use postgres_protocol::message::backend::{DataRowBody, Message};
use postgres_protocol::message::frontend;

use crate::tls::ConnectConfig;

use super::lsn::Lsn;
pub use copy_both::ReplicationStream;
pub use error::ConnError;
use error::server_error;
use wire::{Backend, Wire};

/// What `IDENTIFY_SYSTEM` returned.
#[derive(Debug, Clone)]
pub struct SystemInfo {
    pub system_id: String,
}

/// A connection in the command phase (before `START_REPLICATION`).
pub struct ReplicationConnection {
    wire: Wire,
}

impl ReplicationConnection {
    /// Connect and authenticate as a logical replication client.
    pub async fn connect(database: &ConnectConfig) -> Result<Self, ConnError> {
        let config = &database.config;
        let (socket, host) = socket::open_socket(config).await?;
        let socket = match host {
            Some(host) => socket::negotiate_tls(socket, database, &host).await?,
            None => socket, // Unix socket: no TLS, as libpq
        };
        let user = config
            .get_user()
            .map(str::to_owned)
            .or_else(|| std::env::var("USER").ok())
            .ok_or_else(|| ConnError::Config("no user in --database-url".into()))?;
        let dbname = config.get_dbname().unwrap_or(&user).to_owned();
        let app = config
            .get_application_name()
            .unwrap_or("walhook")
            .to_owned();
        let mut wire = Wire {
            socket,
            read: BytesMut::with_capacity(256 * 1024),
            write: BytesMut::with_capacity(1024),
        };
        frontend::startup_message(
            [
                ("user", user.as_str()),
                ("database", dbname.as_str()),
                ("replication", "database"),
                ("application_name", app.as_str()),
                ("client_encoding", "UTF8"),
                ("TimeZone", "UTC"),
                ("DateStyle", "ISO"),
                ("extra_float_digits", "3"),
            ],
            &mut wire.write,
        )?;
        wire.flush().await?;
        let mut conn = ReplicationConnection { wire };
        auth::authenticate(&mut conn.wire, &user, config.get_password()).await?;
        // a FATAL here is about the role (no REPLICATION, no CONNECT)
        conn.read_until_ready()
            .await
            .map_err(|e| auth::auth_error(&user, e))?;
        Ok(conn)
    }

    /// Read until ReadyForQuery, collecting data rows; the first server error
    /// is returned after the server is ready again.
    async fn read_until_ready(&mut self) -> Result<Vec<Vec<Option<String>>>, ConnError> {
        let mut rows = Vec::new();
        let mut error = None;
        loop {
            // after a FATAL error the server closes the connection: the error
            // is the story, not the end of file that follows it
            let message = match self.wire.next("before ReadyForQuery").await {
                Ok(message) => message,
                Err(failure) => return Err(error.unwrap_or(failure)),
            };
            match message {
                Message::ReadyForQuery(_) => return error.map_or(Ok(rows), Err),
                Message::ErrorResponse(body) => {
                    error.get_or_insert(server_error(body.fields()));
                }
                Message::NoticeResponse(body) => {
                    if let ConnError::Server { message, .. } = server_error(body.fields()) {
                        tracing::info!(notice = %message, "server notice");
                    }
                }
                Message::RowDescription(_) => rows.clear(),
                Message::DataRow(body) => rows.push(data_row(&body)?),
                _ => {}
            }
        }
    }

    /// Run one simple-protocol query; the text rows of its (last) result set.
    pub async fn simple_query(&mut self, sql: &str) -> Result<Vec<Vec<Option<String>>>, ConnError> {
        frontend::query(sql, &mut self.wire.write)?;
        self.wire.flush().await?;
        self.read_until_ready().await
    }

    /// `IDENTIFY_SYSTEM`.
    pub async fn identify_system(&mut self) -> Result<SystemInfo, ConnError> {
        let rows = self.simple_query("IDENTIFY_SYSTEM").await?;
        let row = rows
            .first()
            .filter(|r| r.len() >= 3)
            .ok_or_else(|| ConnError::Protocol("IDENTIFY_SYSTEM returned no row".into()))?;
        Ok(SystemInfo {
            system_id: row.first().cloned().flatten().unwrap_or_default(),
        })
    }

    /// Create the logical slot with pgoutput; returns its consistent point.
    pub async fn create_slot(&mut self, slot: &str) -> Result<Lsn, ConnError> {
        let rows = self
            .simple_query(&format!(
                "CREATE_REPLICATION_SLOT {} LOGICAL pgoutput NOEXPORT_SNAPSHOT",
                quote_ident(slot)
            ))
            .await?;
        rows.first()
            .and_then(|r| r.get(1).cloned().flatten())
            .and_then(|s| s.parse::<Lsn>().ok())
            .ok_or_else(|| {
                ConnError::Protocol("CREATE_REPLICATION_SLOT returned no position".into())
            })
    }

    /// Switch to streaming: `START_REPLICATION` with pgoutput protocol 1.
    pub async fn start_replication(
        mut self,
        slot: &str,
        start: Lsn,
        publication: &str,
    ) -> Result<ReplicationStream, ConnError> {
        let sql = format!(
            "START_REPLICATION SLOT {} LOGICAL {} (proto_version '1', publication_names {}, messages 'true')",
            quote_ident(slot),
            start,
            quote_literal(&quote_ident(publication)),
        );
        frontend::query(&sql, &mut self.wire.write)?;
        self.wire.flush().await?;
        loop {
            match self.wire.message().await? {
                Backend::CopyBothResponse => {
                    return Ok(ReplicationStream {
                        wire: self.wire,
                        status: BytesMut::with_capacity(64),
                    });
                }
                Backend::Message(Message::ErrorResponse(body)) => {
                    let error = server_error(body.fields());
                    // Drain to ReadyForQuery so the error is the whole story.
                    let _ = self.read_until_ready().await;
                    return Err(error);
                }
                Backend::Message(Message::NoticeResponse(_) | Message::ParameterStatus(_)) => {}
                Backend::Message(_) => {
                    return Err(ConnError::Protocol(
                        "unexpected message after START_REPLICATION".into(),
                    ));
                }
            }
        }
    }
}

/// A DataRow's values as text (NULL as None).
fn data_row(body: &DataRowBody) -> Result<Vec<Option<String>>, ConnError> {
    let buffer = body.buffer();
    body.ranges()
        .map(|range| Ok(range.map(|r| String::from_utf8_lossy(&buffer[r]).into_owned())))
        .collect()
        .map_err(|e| ConnError::Protocol(format!("truncated DataRow: {e}")))
}

/// `"name"` with embedded quotes doubled.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// `'text'` with embedded quotes doubled.
pub fn quote_literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use wire::parse_message as parse;

    #[test]
    fn data_rows_parse_and_reject_truncation() {
        let mut b = BytesMut::new();
        b.extend_from_slice(&2i16.to_be_bytes());
        b.extend_from_slice(&1i32.to_be_bytes());
        b.extend_from_slice(b"x");
        b.extend_from_slice(&(-1i32).to_be_bytes());
        let row = |body: &[u8]| match parse(b'D', body) {
            Ok(Message::DataRow(row)) => data_row(&row),
            Ok(_) => unreachable!(),
            Err(e) => Err(ConnError::Protocol(e.to_string())),
        };
        assert_eq!(row(&b).unwrap(), vec![Some("x".into()), None]);
        for n in 0..b.len() {
            assert!(row(&b[..n]).is_err(), "prefix {n}");
        }
    }

    #[test]
    fn quoting() {
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
        assert_eq!(quote_literal(&quote_ident("it's")), "'\"it''s\"'");
    }
}
