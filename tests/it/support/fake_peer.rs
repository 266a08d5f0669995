//! A scripted fake replication peer, built on pgwire's message codecs.
//!
//! It accepts a replication connection (trust auth), answers IDENTIFY_SYSTEM,
//! CREATE_REPLICATION_SLOT and any other query, and after START_REPLICATION sends
//! its script of CopyData payloads (XLogData frames with arbitrary, possibly
//! malformed, pgoutput bytes). It records every flush position the client
//! confirms, so a test can prove walhook never confirmed past a bad message.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::{BufMut, Bytes, BytesMut};
use pgwire::messages::copy::{CopyBothResponse, CopyData};
use pgwire::messages::data::{DataRow, FieldDescription, RowDescription};
use pgwire::messages::response::{CommandComplete, ReadyForQuery, TransactionStatus};
use pgwire::messages::startup::{Authentication, BackendKeyData, ParameterStatus, SecretKey};
use pgwire::messages::{
    DecodeContext, PgWireBackendMessage, PgWireFrontendMessage, ProtocolVersion,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

pub struct FakePeer {
    pub port: u16,
    /// Flush LSNs of every standby status update received.
    pub confirmed: Arc<Mutex<Vec<u64>>>,
    /// START_REPLICATION commands received (one per connection that streamed).
    pub starts: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl FakePeer {
    pub async fn start(script: Vec<Bytes>) -> FakePeer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let confirmed = Arc::new(Mutex::new(Vec::new()));
        let starts = Arc::new(AtomicUsize::new(0));
        let script = Arc::new(script);
        let (c, s) = (confirmed.clone(), starts.clone());
        let task = tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                let (c, s, script) = (c.clone(), s.clone(), script.clone());
                tokio::spawn(async move {
                    let _ = serve(socket, &script, &c, &s).await;
                });
            }
        });
        FakePeer {
            port,
            confirmed,
            starts,
            task,
        }
    }

    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/fake", self.port)
    }

    pub fn max_confirmed(&self) -> u64 {
        self.confirmed
            .lock()
            .unwrap()
            .iter()
            .copied()
            .max()
            .unwrap_or(0)
    }
}

impl Drop for FakePeer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn send(out: &mut BytesMut, msg: PgWireBackendMessage) {
    msg.encode(out).expect("encode backend message");
}

fn row(out: &mut BytesMut, columns: &[&str], values: &[Option<&str>]) {
    let fields = columns
        .iter()
        .map(|c| FieldDescription::new(c.to_string(), 0, 0, 25, -1, -1, 0))
        .collect();
    send(
        out,
        PgWireBackendMessage::RowDescription(RowDescription::new(fields)),
    );
    let mut data = BytesMut::new();
    for v in values {
        match v {
            Some(v) => {
                data.put_i32(v.len() as i32);
                data.put_slice(v.as_bytes());
            }
            None => data.put_i32(-1),
        }
    }
    send(
        out,
        PgWireBackendMessage::DataRow(DataRow::new(data, values.len() as i16)),
    );
}

fn done(out: &mut BytesMut, tag: &str) {
    send(
        out,
        PgWireBackendMessage::CommandComplete(CommandComplete::new(tag.into())),
    );
    send(
        out,
        PgWireBackendMessage::ReadyForQuery(ReadyForQuery::new(TransactionStatus::Idle)),
    );
}

async fn serve(
    mut socket: TcpStream,
    script: &[Bytes],
    confirmed: &Mutex<Vec<u64>>,
    starts: &AtomicUsize,
) -> std::io::Result<()> {
    // The startup packet: length-prefixed, no type byte. Like a server without
    // TLS, answer an SSLRequest (code 80877103) with 'N' and read the real one.
    const SSL_REQUEST: [u8; 4] = 80877103i32.to_be_bytes();
    let mut startup;
    loop {
        let len = socket.read_i32().await? as usize;
        startup = vec![0u8; len.saturating_sub(4)];
        socket.read_exact(&mut startup).await?;
        if startup != SSL_REQUEST {
            break;
        }
        socket.write_all(b"N").await?;
    }
    let mut out = BytesMut::new();
    send(
        &mut out,
        PgWireBackendMessage::Authentication(Authentication::Ok),
    );
    for (k, v) in [
        ("server_version", "15.0"),
        ("integer_datetimes", "on"),
        ("client_encoding", "UTF8"),
    ] {
        send(
            &mut out,
            PgWireBackendMessage::ParameterStatus(ParameterStatus::new(k.into(), v.into())),
        );
    }
    send(
        &mut out,
        PgWireBackendMessage::BackendKeyData(BackendKeyData::new(1, SecretKey::I32(2))),
    );
    send(
        &mut out,
        PgWireBackendMessage::ReadyForQuery(ReadyForQuery::new(TransactionStatus::Idle)),
    );
    socket.write_all(&out).await?;

    let mut ctx = DecodeContext::new(ProtocolVersion::PROTOCOL3_0);
    ctx.awaiting_frontend_ssl = false;
    ctx.awaiting_frontend_startup = false;
    let mut buf = BytesMut::new();
    loop {
        let message = loop {
            if let Some(m) =
                PgWireFrontendMessage::decode(&mut buf, &ctx).map_err(std::io::Error::other)?
            {
                break m;
            }
            if socket.read_buf(&mut buf).await? == 0 {
                return Ok(());
            }
        };
        let mut out = BytesMut::new();
        match message {
            PgWireFrontendMessage::Query(q) => {
                let sql = q.query.trim().to_uppercase();
                if sql.starts_with("IDENTIFY_SYSTEM") {
                    row(
                        &mut out,
                        &["systemid", "timeline", "xlogpos", "dbname"],
                        &[
                            Some("7000000000000000001"),
                            Some("1"),
                            Some("0/1000000"),
                            Some("fake"),
                        ],
                    );
                    done(&mut out, "IDENTIFY_SYSTEM");
                } else if sql.starts_with("CREATE_REPLICATION_SLOT") {
                    row(
                        &mut out,
                        &[
                            "slot_name",
                            "consistent_point",
                            "snapshot_name",
                            "output_plugin",
                        ],
                        &[Some("fake"), Some("0/1000000"), None, Some("pgoutput")],
                    );
                    done(&mut out, "CREATE_REPLICATION_SLOT");
                } else if sql.starts_with("START_REPLICATION") {
                    starts.fetch_add(1, Ordering::SeqCst);
                    send(
                        &mut out,
                        PgWireBackendMessage::CopyBothResponse(CopyBothResponse::new(0, 0, vec![])),
                    );
                    for payload in script {
                        send(
                            &mut out,
                            PgWireBackendMessage::CopyData(CopyData::new(payload.clone())),
                        );
                    }
                } else {
                    done(&mut out, "SELECT 0");
                }
            }
            PgWireFrontendMessage::CopyData(data) => {
                let d = &data.data;
                if d.first() == Some(&b'r') && d.len() >= 17 {
                    let flush = u64::from_be_bytes(d[9..17].try_into().unwrap());
                    confirmed.lock().unwrap().push(flush);
                }
            }
            PgWireFrontendMessage::Terminate(_) => return Ok(()),
            _ => {}
        }
        if !out.is_empty() {
            socket.write_all(&out).await?;
        }
    }
}

/// An XLogData CopyData payload.
pub fn xlog_data(wal_start: u64, payload: &[u8]) -> Bytes {
    let mut b = BytesMut::new();
    b.put_u8(b'w');
    b.put_u64(wal_start);
    b.put_u64(wal_start);
    b.put_i64(0);
    b.put_slice(payload);
    b.freeze()
}

/// A primary keepalive CopyData payload.
pub fn keepalive(wal_end: u64, reply: bool) -> Bytes {
    let mut b = BytesMut::new();
    b.put_u8(b'k');
    b.put_u64(wal_end);
    b.put_i64(0);
    b.put_u8(u8::from(reply));
    b.freeze()
}

/// pgoutput Begin.
pub fn begin(final_lsn: u64, xid: u32) -> Vec<u8> {
    let mut b = BytesMut::new();
    b.put_u8(b'B');
    b.put_u64(final_lsn);
    b.put_i64(789_000_000_000_000);
    b.put_u32(xid);
    b.to_vec()
}

/// pgoutput Commit.
pub fn commit(commit_lsn: u64, end_lsn: u64) -> Vec<u8> {
    let mut b = BytesMut::new();
    b.put_u8(b'C');
    b.put_u8(0);
    b.put_u64(commit_lsn);
    b.put_u64(end_lsn);
    b.put_i64(789_000_000_000_000);
    b.to_vec()
}

/// pgoutput Relation with text columns.
pub fn relation(oid: u32, namespace: &str, name: &str, columns: &[&str]) -> Vec<u8> {
    let mut b = BytesMut::new();
    b.put_u8(b'R');
    b.put_u32(oid);
    b.put_slice(namespace.as_bytes());
    b.put_u8(0);
    b.put_slice(name.as_bytes());
    b.put_u8(0);
    b.put_u8(b'f');
    b.put_i16(columns.len() as i16);
    for c in columns {
        b.put_u8(0);
        b.put_slice(c.as_bytes());
        b.put_u8(0);
        b.put_u32(25);
        b.put_i32(-1);
    }
    b.to_vec()
}

/// pgoutput Insert with text values.
pub fn insert(oid: u32, values: &[&str]) -> Vec<u8> {
    let mut b = BytesMut::new();
    b.put_u8(b'I');
    b.put_u32(oid);
    b.put_u8(b'N');
    b.put_i16(values.len() as i16);
    for v in values {
        b.put_u8(b't');
        b.put_i32(v.len() as i32);
        b.put_slice(v.as_bytes());
    }
    b.to_vec()
}
