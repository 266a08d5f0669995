//! The socket under the replication connection: the first reachable host
//! (TCP or Unix socket, as libpq reads the URL), then TLS when `sslmode` asks
//! for it (SSLRequest, a rustls handshake, the client certificate of
//! `sslcert`/`sslkey` when the URL names one; [`crate::tls`]).

use std::sync::Arc;

use bytes::BytesMut;
use postgres_protocol::message::frontend;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_postgres::config::Host;

use crate::tls::{ConnectConfig, SslMode};

use super::error::ConnError;

/// What the connection reads and writes: TCP, a Unix socket or TLS over TCP.
pub(super) trait Socket: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Socket for T {}

/// Ask for TLS (SSLRequest) as `sslmode` says and wrap the socket when the
/// server accepts.
pub(super) async fn negotiate_tls(
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
pub(super) async fn open_socket(
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
