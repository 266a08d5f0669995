//! The messages of the streaming replication sub-protocol, carried inside
//! CopyData once `START_REPLICATION` switched the connection to CopyBoth:
//! XLogData (`w`) and primary keepalives (`k`) from the server, standby status
//! updates (`r`) from us. Pure functions; the connection does the I/O.

use bytes::{BufMut, Bytes, BytesMut};

use super::lsn::Lsn;

/// Seconds from the Unix epoch to PostgreSQL's (2000-01-01 UTC).
const PG_EPOCH_OFFSET_SECS: i64 = 946_684_800;

#[derive(Debug, Clone, PartialEq)]
pub enum ReplicationMessage {
    /// WAL data: one pgoutput message starting at `wal_start`.
    XLogData {
        wal_start: Lsn,
        wal_end: Lsn,
        server_time_us: i64,
        data: Bytes,
    },
    /// The server's clock; `reply_requested` asks for a status update now.
    PrimaryKeepalive {
        wal_end: Lsn,
        server_time_us: i64,
        reply_requested: bool,
    },
}

/// A CopyData payload that is not a replication message we know.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ProtocolError {
    #[error("empty CopyData message")]
    Empty,
    #[error("truncated {kind} message: {len} bytes, need {need}")]
    Truncated {
        kind: &'static str,
        len: usize,
        need: usize,
    },
    #[error("unknown replication message tag {0:?}")]
    UnknownTag(char),
}

fn be_u64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_be_bytes(a)
}

/// Parse one CopyData payload of the replication stream.
pub fn parse_copy_data(payload: Bytes) -> Result<ReplicationMessage, ProtocolError> {
    let Some(&tag) = payload.first() else {
        return Err(ProtocolError::Empty);
    };
    match tag {
        b'w' => {
            const HEADER: usize = 1 + 8 + 8 + 8;
            if payload.len() < HEADER {
                return Err(ProtocolError::Truncated {
                    kind: "XLogData",
                    len: payload.len(),
                    need: HEADER,
                });
            }
            Ok(ReplicationMessage::XLogData {
                wal_start: Lsn(be_u64(&payload[1..])),
                wal_end: Lsn(be_u64(&payload[9..])),
                server_time_us: be_u64(&payload[17..]) as i64,
                data: payload.slice(HEADER..),
            })
        }
        b'k' => {
            const LEN: usize = 1 + 8 + 8 + 1;
            if payload.len() < LEN {
                return Err(ProtocolError::Truncated {
                    kind: "keepalive",
                    len: payload.len(),
                    need: LEN,
                });
            }
            Ok(ReplicationMessage::PrimaryKeepalive {
                wal_end: Lsn(be_u64(&payload[1..])),
                server_time_us: be_u64(&payload[9..]) as i64,
                reply_requested: payload[17] != 0,
            })
        }
        other => Err(ProtocolError::UnknownTag(other as char)),
    }
}

/// A Standby Status Update payload (to be wrapped in CopyData).
pub fn encode_standby_status(
    written: Lsn,
    flushed: Lsn,
    applied: Lsn,
    now_us: i64,
    reply_requested: bool,
) -> Bytes {
    let mut buf = BytesMut::with_capacity(34);
    buf.put_u8(b'r');
    buf.put_u64(written.0);
    buf.put_u64(flushed.0);
    buf.put_u64(applied.0);
    buf.put_i64(now_us);
    buf.put_u8(u8::from(reply_requested));
    buf.freeze()
}

/// Now, in microseconds since 2000-01-01 UTC.
pub fn pg_epoch_micros_now() -> i64 {
    let now = chrono::Utc::now();
    (now.timestamp() - PG_EPOCH_OFFSET_SECS) * 1_000_000 + i64::from(now.timestamp_subsec_micros())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_xlogdata_and_keepalive() {
        let mut b = BytesMut::new();
        b.put_u8(b'w');
        b.put_u64(0x10);
        b.put_u64(0x20);
        b.put_i64(7);
        b.put_slice(b"Bxyz");
        let msg = parse_copy_data(b.freeze()).unwrap();
        assert_eq!(
            msg,
            ReplicationMessage::XLogData {
                wal_start: Lsn(0x10),
                wal_end: Lsn(0x20),
                server_time_us: 7,
                data: Bytes::from_static(b"Bxyz"),
            }
        );
        let mut k = BytesMut::new();
        k.put_u8(b'k');
        k.put_u64(0x30);
        k.put_i64(9);
        k.put_u8(1);
        assert_eq!(
            parse_copy_data(k.freeze()).unwrap(),
            ReplicationMessage::PrimaryKeepalive {
                wal_end: Lsn(0x30),
                server_time_us: 9,
                reply_requested: true
            }
        );
    }

    #[test]
    fn every_truncation_and_unknown_tag_is_an_error() {
        let full = {
            let mut b = BytesMut::new();
            b.put_u8(b'k');
            b.put_u64(1);
            b.put_i64(2);
            b.put_u8(0);
            b.freeze()
        };
        for n in 0..full.len() {
            assert!(parse_copy_data(full.slice(..n)).is_err(), "prefix {n}");
        }
        let w = Bytes::from_static(b"w\0\0\0");
        assert!(parse_copy_data(w).is_err());
        assert_eq!(
            parse_copy_data(Bytes::from_static(b"z123")),
            Err(ProtocolError::UnknownTag('z'))
        );
    }

    #[test]
    fn encodes_status_update() {
        let b = encode_standby_status(Lsn(1), Lsn(2), Lsn(3), 4, true);
        assert_eq!(b.len(), 34);
        assert_eq!(b[0], b'r');
        assert_eq!(be_u64(&b[9..]), 2);
        assert_eq!(b[33], 1);
    }
}
