//! STUB (owned by the connection helper): CopyBoth replication messages.
use bytes::Bytes;

use super::lsn::Lsn;

#[derive(Debug, Clone, PartialEq)]
pub enum ReplicationMessage {
    XLogData {
        wal_start: Lsn,
        wal_end: Lsn,
        server_time_us: i64,
        data: Bytes,
    },
    PrimaryKeepalive {
        wal_end: Lsn,
        server_time_us: i64,
        reply_requested: bool,
    },
}
