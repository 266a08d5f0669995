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

use std::sync::Arc;

use bytes::{Buf, BytesMut};
use fallible_iterator::FallibleIterator;
use postgres_protocol::authentication::md5_hash;
use postgres_protocol::authentication::sasl::{ChannelBinding, SCRAM_SHA_256, ScramSha256};
use postgres_protocol::message::backend::{DataRowBody, ErrorFields, Message};
use postgres_protocol::message::frontend;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_postgres::config::Host;
use tokio_postgres::error::SqlState;

use crate::error::Disposition;
use crate::tls::{ConnectConfig, SslMode};

use super::lsn::Lsn;
use super::protocol::{self, ReplicationMessage};

/// Largest backend message accepted (PostgreSQL's own limit is 1 GiB).
const MAX_FRAME: usize = 1 << 30;

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

trait Socket: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Socket for T {}

/// What `IDENTIFY_SYSTEM` returned.
#[derive(Debug, Clone)]
pub struct SystemInfo {
    pub system_id: String,
}

/// Buffered framing over the socket, shared by both connection phases.
struct Wire {
    socket: Box<dyn Socket>,
    read: BytesMut,
    write: BytesMut,
}

/// One backend message. postgres-protocol parses everything but
/// CopyBothResponse, which tokio-postgres never needs and so the crate does not
/// know; that one is recognised here by its tag.
enum Backend {
    CopyBothResponse,
    Message(Message),
}

impl Wire {
    async fn flush(&mut self) -> Result<(), ConnError> {
        self.socket.write_all(&self.write).await?;
        self.socket.flush().await?;
        self.write.clear();
        Ok(())
    }

    /// The next backend message. A CopyData body is a slice of the read
    /// buffer, not a copy.
    async fn message(&mut self) -> Result<Backend, ConnError> {
        loop {
            if self.read.len() >= 5 {
                let len =
                    u32::from_be_bytes([self.read[1], self.read[2], self.read[3], self.read[4]])
                        as usize;
                if !(4..=MAX_FRAME).contains(&len) {
                    return Err(ConnError::Protocol(format!("invalid message length {len}")));
                }
                if self.read[0] == b'W' && self.read.len() > len {
                    self.read.advance(len + 1);
                    return Ok(Backend::CopyBothResponse);
                }
            }
            let parsed = Message::parse(&mut self.read)
                .map_err(|e| ConnError::Protocol(format!("malformed backend message: {e}")))?;
            if let Some(message) = parsed {
                return Ok(Backend::Message(message));
            }
            if self.read.capacity() - self.read.len() < 8192 {
                self.read.reserve(64 * 1024);
            }
            if self.socket.read_buf(&mut self.read).await? == 0 {
                return Err(ConnError::Io(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "the server closed the connection",
                )));
            }
        }
    }

    /// The next message of a phase that never sees CopyBothResponse.
    async fn next(&mut self, phase: &str) -> Result<Message, ConnError> {
        match self.message().await? {
            Backend::Message(message) => Ok(message),
            Backend::CopyBothResponse => Err(ConnError::Protocol(format!(
                "unexpected CopyBothResponse {phase}"
            ))),
        }
    }
}

/// A connection in the command phase (before `START_REPLICATION`).
pub struct ReplicationConnection {
    wire: Wire,
}

impl ReplicationConnection {
    /// Connect and authenticate as a logical replication client.
    pub async fn connect(database: &ConnectConfig) -> Result<Self, ConnError> {
        let config = &database.config;
        let (socket, host) = open_socket(config).await?;
        let socket = match host {
            Some(host) => negotiate_tls(socket, database, &host).await?,
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
        conn.authenticate(&user, config.get_password()).await?;
        // a FATAL here is about the role (no REPLICATION, no CONNECT)
        conn.read_until_ready()
            .await
            .map_err(|e| auth_error(&user, e))?;
        Ok(conn)
    }

    async fn authenticate(&mut self, user: &str, password: Option<&[u8]>) -> Result<(), ConnError> {
        let need_password = || {
            ConnError::Auth(format!(
                "the server asks a password for user {user}: put it in --database-url"
            ))
        };
        loop {
            match self.wire.next("during authentication").await? {
                Message::AuthenticationOk => return Ok(()),
                Message::AuthenticationCleartextPassword => {
                    let password = password.ok_or_else(need_password)?;
                    frontend::password_message(password, &mut self.wire.write)?;
                    self.wire.flush().await?;
                }
                Message::AuthenticationMd5Password(body) => {
                    let password = password.ok_or_else(need_password)?;
                    let hash = md5_hash(user.as_bytes(), password, body.salt());
                    frontend::password_message(hash.as_bytes(), &mut self.wire.write)?;
                    self.wire.flush().await?;
                }
                Message::AuthenticationSasl(body) => {
                    let password = password.ok_or_else(need_password)?;
                    let offers_scram =
                        body.mechanisms()
                            .any(|m| Ok(m == SCRAM_SHA_256))
                            .map_err(|e| {
                                ConnError::Protocol(format!("malformed SASL mechanisms: {e}"))
                            })?;
                    if !offers_scram {
                        return Err(ConnError::Auth(
                            "the server offers no SASL mechanism walhook supports (SCRAM-SHA-256)"
                                .into(),
                        ));
                    }
                    self.scram(password, user).await?;
                }
                Message::ErrorResponse(body) => {
                    return Err(auth_error(user, server_error(body.fields())));
                }
                Message::AuthenticationKerberosV5
                | Message::AuthenticationScmCredential
                | Message::AuthenticationGss
                | Message::AuthenticationGssContinue(_)
                | Message::AuthenticationSspi => {
                    return Err(ConnError::Auth(format!(
                        "unsupported authentication method for user {user}: \
                         use trust, md5, password or scram-sha-256 in pg_hba.conf"
                    )));
                }
                _ => {
                    return Err(ConnError::Protocol(
                        "unexpected message during authentication".into(),
                    ));
                }
            }
        }
    }

    async fn scram(&mut self, password: &[u8], user: &str) -> Result<(), ConnError> {
        let mut scram = ScramSha256::new(password, ChannelBinding::unsupported());
        frontend::sasl_initial_response(SCRAM_SHA_256, scram.message(), &mut self.wire.write)?;
        self.wire.flush().await?;
        let mut step = 0;
        loop {
            match self.wire.next("during SCRAM").await? {
                Message::AuthenticationSaslContinue(body) if step == 0 => {
                    scram
                        .update(body.data())
                        .map_err(|e| ConnError::Auth(format!("SCRAM exchange failed: {e}")))?;
                    frontend::sasl_response(scram.message(), &mut self.wire.write)?;
                    self.wire.flush().await?;
                    step = 1;
                }
                Message::AuthenticationSaslFinal(body) => {
                    scram.finish(body.data()).map_err(|e| {
                        ConnError::Auth(format!("SCRAM server signature invalid: {e}"))
                    })?;
                    return Ok(());
                }
                Message::ErrorResponse(body) => {
                    return Err(auth_error(user, server_error(body.fields())));
                }
                _ => {
                    return Err(ConnError::Protocol(
                        "unexpected message during SCRAM".into(),
                    ));
                }
            }
        }
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

/// The connection in CopyBoth mode: replication messages in, status out.
pub struct ReplicationStream {
    wire: Wire,
    status: BytesMut,
}

impl ReplicationStream {
    /// The next replication message; `None` when the server ended the copy.
    pub async fn next_message(&mut self) -> Result<Option<ReplicationMessage>, ConnError> {
        loop {
            match self.wire.next("in the replication stream").await? {
                Message::CopyData(body) => {
                    return protocol::parse_copy_data(body.into_bytes())
                        .map(Some)
                        .map_err(|e| ConnError::Protocol(e.to_string()));
                }
                Message::CopyDone => return Ok(None),
                Message::ErrorResponse(body) => return Err(server_error(body.fields())),
                Message::NoticeResponse(_) | Message::ParameterStatus(_) => {}
                _ => {
                    return Err(ConnError::Protocol(
                        "unexpected message in the replication stream".into(),
                    ));
                }
            }
        }
    }

    /// Send a Standby Status Update.
    pub async fn send_status(
        &mut self,
        written: Lsn,
        flushed: Lsn,
        applied: Lsn,
        reply_requested: bool,
    ) -> Result<(), ConnError> {
        let payload = protocol::encode_standby_status(
            written,
            flushed,
            applied,
            protocol::pg_epoch_micros_now(),
            reply_requested,
        );
        self.status.clear();
        frontend::CopyData::new(&payload[..])?.write(&mut self.status);
        self.wire.socket.write_all(&self.status).await?;
        self.wire.socket.flush().await?;
        Ok(())
    }
}

/// Ask for TLS (SSLRequest) as `sslmode` says and wrap the socket when the
/// server accepts.
async fn negotiate_tls(
    mut socket: Box<dyn Socket>,
    database: &ConnectConfig,
    host: &str,
) -> Result<Box<dyn Socket>, ConnError> {
    let tls_error = |e: crate::tls::TlsError| ConnError::Config(e.to_string());
    let Some(client_config) = database.client_config().map_err(tls_error)? else {
        return Ok(socket);
    };
    let mut request = BytesMut::new();
    frontend::ssl_request(&mut request);
    socket.write_all(&request).await?;
    socket.flush().await?;
    let mut answer = [0u8; 1];
    socket.read_exact(&mut answer).await?;
    match answer[0] {
        b'S' => {
            let name = rustls::pki_types::ServerName::try_from(host.to_owned()).map_err(|_| {
                ConnError::Config(format!("{host:?} is not a valid TLS server name"))
            })?;
            let connector = tokio_rustls::TlsConnector::from(Arc::new(client_config));
            // rustls reports certificate and protocol failures as InvalidData:
            // those need the operator; anything else is a network error
            let tls = connector.connect(name, socket).await.map_err(|e| {
                if e.kind() == std::io::ErrorKind::InvalidData {
                    ConnError::Config(format!(
                        "TLS handshake with {host} failed: {e}; check sslmode, sslrootcert, sslcert and sslkey"
                    ))
                } else {
                    ConnError::Io(e)
                }
            })?;
            Ok(Box::new(tls))
        }
        b'N' if database.ssl_mode == SslMode::Prefer => Ok(socket),
        b'N' => Err(ConnError::Config(format!(
            "{host} does not accept TLS but sslmode asks for it: enable ssl on the server, \
             or use sslmode=prefer or disable on a trusted network"
        ))),
        other => Err(ConnError::Protocol(format!(
            "unexpected answer {other:#x} to SSLRequest"
        ))),
    }
}

/// Connect to the first reachable host; returns the TCP host name (`None` for
/// a Unix socket).
async fn open_socket(
    config: &tokio_postgres::Config,
) -> Result<(Box<dyn Socket>, Option<String>), ConnError> {
    let hosts = config.get_hosts();
    let ports = config.get_ports();
    let mut last = None;
    for (i, host) in hosts.iter().enumerate() {
        let port = ports
            .get(i)
            .or_else(|| ports.first())
            .copied()
            .unwrap_or(5432);
        let attempt = async {
            let socket: (Box<dyn Socket>, Option<String>) = match host {
                Host::Tcp(name) => {
                    let stream = tokio::net::TcpStream::connect((name.as_str(), port)).await?;
                    stream.set_nodelay(true)?;
                    (Box::new(stream), Some(name.clone()))
                }
                Host::Unix(dir) => (
                    Box::new(
                        tokio::net::UnixStream::connect(dir.join(format!(".s.PGSQL.{port}")))
                            .await?,
                    ),
                    None,
                ),
            };
            Ok::<_, std::io::Error>(socket)
        };
        let result = match config.get_connect_timeout() {
            Some(t) => tokio::time::timeout(*t, attempt)
                .await
                .unwrap_or_else(|_| Err(std::io::ErrorKind::TimedOut.into())),
            None => attempt.await,
        };
        match result {
            Ok(socket) => return Ok(socket),
            Err(e) => last = Some(e),
        }
    }
    if hosts.is_empty() {
        let dir = std::path::Path::new("/var/run/postgresql");
        let port = ports.first().copied().unwrap_or(5432);
        return Ok((
            Box::new(tokio::net::UnixStream::connect(dir.join(format!(".s.PGSQL.{port}"))).await?),
            None,
        ));
    }
    Err(ConnError::Io(last.unwrap_or_else(|| {
        std::io::Error::new(std::io::ErrorKind::NotFound, "no host to connect to")
    })))
}

/// The fields of an ErrorResponse/NoticeResponse as a [`ConnError::Server`];
/// a malformed field list keeps what was read before it.
fn server_error(mut fields: ErrorFields<'_>) -> ConnError {
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

/// Authentication-phase errors, reworded for the operator.
fn auth_error(user: &str, error: ConnError) -> ConnError {
    let code = error.sqlstate().map(SqlState::from_code);
    match code {
        Some(SqlState::INVALID_PASSWORD) => ConnError::Auth(format!(
            "password authentication failed for user {user}: check the password in --database-url"
        )),
        // PostgreSQL 15: "must be superuser or replication role to start
        // walsender"; 16 and later: "permission denied to start WAL sender"
        Some(SqlState::INSUFFICIENT_PRIVILEGE)
            if error.to_string().to_lowercase().contains("sender") =>
        {
            ConnError::Auth(format!(
                "role {user} lacks the REPLICATION attribute, which the replication connection \
                 needs ({error}): as an administrator: ALTER ROLE {} REPLICATION (on Amazon \
                 RDS and Aurora: GRANT rds_replication TO {0}); see docs/least-privilege.md",
                quote_ident(user)
            ))
        }
        Some(SqlState::INVALID_AUTHORIZATION_SPECIFICATION) => ConnError::Auth(format!(
            "the server refused a replication connection for user {user} ({error}): \
             pg_hba.conf must let the user connect to the database (a logical replication \
             connection matches the database's lines, not `replication`) by password, \
             scram-sha-256, trust or cert (with sslcert and sslkey), and the role needs \
             REPLICATION"
        )),
        _ => error,
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

    /// A backend message from its tag and body, parsed by postgres-protocol.
    fn parse(tag: u8, body: &[u8]) -> Result<Message, std::io::Error> {
        let mut buf = BytesMut::new();
        buf.extend_from_slice(&[tag]);
        buf.extend_from_slice(&(body.len() as u32 + 4).to_be_bytes());
        buf.extend_from_slice(body);
        Ok(Message::parse(&mut buf)?.expect("a whole message"))
    }

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
