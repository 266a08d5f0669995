//! The replication connection: PostgreSQL's wire protocol spoken by us, because
//! tokio-postgres does not stream CopyBoth.
//!
//! An SSLRequest and a rustls handshake first when `sslmode` asks for TLS
//! ([`crate::tls`]); then startup with `replication=database`, authentication
//! (trust, cleartext, md5, SCRAM-SHA-256 via postgres-protocol), simple queries
//! (`IDENTIFY_SYSTEM`, `CREATE_REPLICATION_SLOT`), then `START_REPLICATION`, after
//! which the connection becomes a [`ReplicationStream`] of CopyData frames. Frames
//! are cut out of one read buffer without copying; an XLogData payload is a slice
//! of it.
//!
//! The session runs with `TimeZone=UTC` and `DateStyle=ISO`, so timestamps in
//! pgoutput's text values have one known form.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::{Buf, Bytes, BytesMut};
use postgres_protocol::authentication::md5_hash;
use postgres_protocol::authentication::sasl::{ChannelBinding, SCRAM_SHA_256, ScramSha256};
use postgres_protocol::message::frontend;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_postgres::config::Host;
use tokio_postgres::error::SqlState;

use crate::error::Disposition;
use crate::tls::{Database, SslMode};

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
    pub timeline: u32,
    pub xlogpos: Lsn,
    pub dbname: Option<String>,
}

/// Buffered framing over the socket, shared by both connection phases.
struct Wire {
    socket: Box<dyn Socket>,
    read: BytesMut,
    write: BytesMut,
}

/// One backend message: its tag and body (header removed).
struct Frame {
    tag: u8,
    body: Bytes,
}

impl Wire {
    async fn flush(&mut self) -> Result<(), ConnError> {
        self.socket.write_all(&self.write).await?;
        self.socket.flush().await?;
        self.write.clear();
        Ok(())
    }

    async fn frame(&mut self) -> Result<Frame, ConnError> {
        loop {
            if self.read.len() >= 5 {
                let len =
                    u32::from_be_bytes([self.read[1], self.read[2], self.read[3], self.read[4]])
                        as usize;
                if !(4..=MAX_FRAME).contains(&len) {
                    return Err(ConnError::Protocol(format!("invalid message length {len}")));
                }
                if self.read.len() > len {
                    let tag = self.read[0];
                    let mut frame = self.read.split_to(len + 1);
                    frame.advance(5);
                    return Ok(Frame {
                        tag,
                        body: frame.freeze(),
                    });
                }
                self.read.reserve(len + 1 - self.read.len());
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
}

/// A connection in the command phase (before `START_REPLICATION`).
pub struct ReplicationConnection {
    wire: Wire,
    parameters: HashMap<String, String>,
}

impl ReplicationConnection {
    /// Connect and authenticate as a logical replication client.
    pub async fn connect(database: &Database) -> Result<Self, ConnError> {
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
        let mut conn = ReplicationConnection {
            wire,
            parameters: HashMap::new(),
        };
        conn.authenticate(&user, config.get_password()).await?;
        conn.read_until_ready().await?;
        Ok(conn)
    }

    /// A server parameter reported at startup (e.g. `server_version`).
    pub fn parameter(&self, name: &str) -> Option<&str> {
        self.parameters.get(name).map(String::as_str)
    }

    async fn authenticate(&mut self, user: &str, password: Option<&[u8]>) -> Result<(), ConnError> {
        let need_password = || {
            ConnError::Auth(format!(
                "the server asks a password for user {user}: put it in --database-url"
            ))
        };
        loop {
            let frame = self.wire.frame().await?;
            match frame.tag {
                b'R' => {}
                b'E' => return Err(auth_error(user, server_error(&frame.body))),
                other => {
                    return Err(ConnError::Protocol(format!(
                        "unexpected message {:?} during authentication",
                        other as char
                    )));
                }
            }
            let mut body = frame.body;
            if body.len() < 4 {
                return Err(ConnError::Protocol("short authentication message".into()));
            }
            match body.get_i32() {
                0 => return Ok(()),
                3 => {
                    let password = password.ok_or_else(need_password)?;
                    frontend::password_message(password, &mut self.wire.write)?;
                    self.wire.flush().await?;
                }
                5 => {
                    let password = password.ok_or_else(need_password)?;
                    if body.len() < 4 {
                        return Err(ConnError::Protocol("short md5 salt".into()));
                    }
                    let salt = [body[0], body[1], body[2], body[3]];
                    let hash = md5_hash(user.as_bytes(), password, salt);
                    frontend::password_message(hash.as_bytes(), &mut self.wire.write)?;
                    self.wire.flush().await?;
                }
                10 => {
                    let password = password.ok_or_else(need_password)?;
                    let offers_scram = body
                        .split(|b| *b == 0)
                        .any(|m| m == SCRAM_SHA_256.as_bytes());
                    if !offers_scram {
                        return Err(ConnError::Auth(
                            "the server offers no SASL mechanism walhook supports (SCRAM-SHA-256)"
                                .into(),
                        ));
                    }
                    self.scram(password, user).await?;
                }
                code => {
                    return Err(ConnError::Auth(format!(
                        "unsupported authentication method (code {code}) for user {user}: \
                         use trust, md5, password or scram-sha-256 in pg_hba.conf"
                    )));
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
            let frame = self.wire.frame().await?;
            if frame.tag == b'E' {
                return Err(auth_error(user, server_error(&frame.body)));
            }
            let mut body = frame.body;
            if frame.tag != b'R' || body.len() < 4 {
                return Err(ConnError::Protocol(
                    "unexpected message during SCRAM".into(),
                ));
            }
            match body.get_i32() {
                11 if step == 0 => {
                    scram
                        .update(&body)
                        .map_err(|e| ConnError::Auth(format!("SCRAM exchange failed: {e}")))?;
                    frontend::sasl_response(scram.message(), &mut self.wire.write)?;
                    self.wire.flush().await?;
                    step = 1;
                }
                12 => {
                    scram.finish(&body).map_err(|e| {
                        ConnError::Auth(format!("SCRAM server signature invalid: {e}"))
                    })?;
                    return Ok(());
                }
                code => {
                    return Err(ConnError::Protocol(format!(
                        "unexpected SASL message code {code}"
                    )));
                }
            }
        }
    }

    /// Read until ReadyForQuery, collecting parameters; the first server error
    /// is returned after the server is ready again.
    async fn read_until_ready(&mut self) -> Result<Vec<Vec<Option<String>>>, ConnError> {
        let mut rows = Vec::new();
        let mut error = None;
        loop {
            let frame = self.wire.frame().await?;
            match frame.tag {
                b'Z' => return error.map_or(Ok(rows), Err),
                b'E' => {
                    error.get_or_insert(server_error(&frame.body));
                }
                b'N' => {
                    if let ConnError::Server { message, .. } = server_error(&frame.body) {
                        tracing::info!(notice = %message, "server notice");
                    }
                }
                b'S' => {
                    let mut parts = frame.body.split(|b| *b == 0);
                    if let (Some(k), Some(v)) = (parts.next(), parts.next()) {
                        self.parameters.insert(
                            String::from_utf8_lossy(k).into_owned(),
                            String::from_utf8_lossy(v).into_owned(),
                        );
                    }
                }
                b'T' => rows.clear(),
                b'D' => rows.push(data_row(frame.body)?),
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
        let text = |i: usize| row.get(i).cloned().flatten();
        let xlogpos = text(2)
            .and_then(|s| s.parse::<Lsn>().ok())
            .ok_or_else(|| ConnError::Protocol("IDENTIFY_SYSTEM without xlogpos".into()))?;
        Ok(SystemInfo {
            system_id: text(0).unwrap_or_default(),
            timeline: text(1).and_then(|s| s.parse().ok()).unwrap_or(0),
            xlogpos,
            dbname: text(3),
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
            let frame = self.wire.frame().await?;
            match frame.tag {
                b'W' => {
                    return Ok(ReplicationStream {
                        wire: self.wire,
                        status: BytesMut::with_capacity(64),
                    });
                }
                b'E' => {
                    let error = server_error(&frame.body);
                    // Drain to ReadyForQuery so the error is the whole story.
                    let _ = self.read_until_ready().await;
                    return Err(error);
                }
                b'N' | b'S' => {}
                other => {
                    return Err(ConnError::Protocol(format!(
                        "unexpected message {:?} after START_REPLICATION",
                        other as char
                    )));
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
            let frame = self.wire.frame().await?;
            match frame.tag {
                b'd' => {
                    return protocol::parse_copy_data(frame.body)
                        .map(Some)
                        .map_err(|e| ConnError::Protocol(e.to_string()));
                }
                b'c' => return Ok(None),
                b'E' => return Err(server_error(&frame.body)),
                b'N' | b'S' => {}
                other => {
                    return Err(ConnError::Protocol(format!(
                        "unexpected message {:?} in the replication stream",
                        other as char
                    )));
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
    database: &Database,
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
                        "TLS handshake with {host} failed: {e}; check sslmode and sslrootcert"
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

/// An ErrorResponse/NoticeResponse body as a [`ConnError::Server`].
fn server_error(body: &[u8]) -> ConnError {
    let mut fields: HashMap<u8, String> = HashMap::new();
    let mut rest = body;
    while let Some((&code, tail)) = rest.split_first() {
        if code == 0 {
            break;
        }
        let end = tail.iter().position(|b| *b == 0).unwrap_or(tail.len());
        fields.insert(code, String::from_utf8_lossy(&tail[..end]).into_owned());
        rest = tail.get(end + 1..).unwrap_or(&[]);
    }
    ConnError::Server {
        code: fields.remove(&b'C').unwrap_or_default(),
        message: fields.remove(&b'M').unwrap_or_default(),
        detail: fields.remove(&b'D'),
        hint: fields.remove(&b'H'),
    }
}

/// Authentication-phase errors, reworded for the operator.
fn auth_error(user: &str, error: ConnError) -> ConnError {
    let code = error.sqlstate().map(SqlState::from_code);
    match code {
        Some(SqlState::INVALID_PASSWORD) => ConnError::Auth(format!(
            "password authentication failed for user {user}: check the password in --database-url"
        )),
        Some(SqlState::INVALID_AUTHORIZATION_SPECIFICATION) => ConnError::Auth(format!(
            "the server refused a replication connection for user {user} ({error}): grant \
             REPLICATION to the user (or use a superuser) and allow `replication` connections \
             in pg_hba.conf"
        )),
        _ => error,
    }
}

fn data_row(mut body: Bytes) -> Result<Vec<Option<String>>, ConnError> {
    let short = || ConnError::Protocol("truncated DataRow".into());
    if body.len() < 2 {
        return Err(short());
    }
    let n = body.get_i16().max(0) as usize;
    let mut row = Vec::with_capacity(n.min(64));
    for _ in 0..n {
        if body.len() < 4 {
            return Err(short());
        }
        let len = body.get_i32();
        if len < 0 {
            row.push(None);
            continue;
        }
        let len = len as usize;
        if body.len() < len {
            return Err(short());
        }
        row.push(Some(
            String::from_utf8_lossy(&body.split_to(len)).into_owned(),
        ));
    }
    Ok(row)
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

    #[test]
    fn server_errors_keep_their_fields() {
        let body = b"SERROR\0C55006\0Mreplication slot \"w\" is active\0HWait\0\0";
        let e = server_error(body);
        assert_eq!(e.sqlstate(), Some("55006"));
        assert!(e.is_transient());
        assert!(e.to_string().contains("is active"));
        assert!(
            !server_error(b"C55000\0Mlogical decoding requires wal_level >= logical\0\0")
                .is_transient()
        );
        assert!(!server_error(b"C28P01\0Mbad\0\0").is_transient());
        // malformed bodies never panic
        let _ = server_error(b"C");
        let _ = server_error(b"");
    }

    #[test]
    fn data_rows_parse_and_reject_truncation() {
        let mut b = BytesMut::new();
        b.extend_from_slice(&2i16.to_be_bytes());
        b.extend_from_slice(&1i32.to_be_bytes());
        b.extend_from_slice(b"x");
        b.extend_from_slice(&(-1i32).to_be_bytes());
        let full = b.freeze();
        assert_eq!(
            data_row(full.clone()).unwrap(),
            vec![Some("x".into()), None]
        );
        for n in 0..full.len() {
            assert!(data_row(full.slice(..n)).is_err(), "prefix {n}");
        }
    }

    #[test]
    fn quoting() {
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
        assert_eq!(quote_literal(&quote_ident("it's")), "'\"it''s\"'");
    }
}
