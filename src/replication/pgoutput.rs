//! STUB (owned by the decoder helper): pgoutput protocol-1 message decoder.
use bytes::Bytes;

use super::lsn::Lsn;

#[derive(Debug, thiserror::Error)]
#[error("malformed pgoutput message: {0}")]
pub struct DecodeError(pub String);

#[derive(Debug, Clone, PartialEq)]
pub enum ColumnValue {
    Null,
    UnchangedToast,
    Text(Bytes),
    Binary(Bytes),
}

#[derive(Debug, Clone, PartialEq)]
pub struct TupleData(pub Vec<ColumnValue>);

#[derive(Debug, Clone, PartialEq)]
pub struct ColumnInfo {
    pub flags: u8,
    pub name: String,
    pub type_oid: u32,
    pub type_modifier: i32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RelationMessage {
    pub oid: u32,
    pub namespace: String,
    pub name: String,
    pub replica_identity: u8,
    pub columns: Vec<ColumnInfo>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    Begin { final_lsn: Lsn, commit_time_us: i64, xid: u32 },
    Commit { flags: u8, commit_lsn: Lsn, end_lsn: Lsn, commit_time_us: i64 },
    Origin { commit_lsn: Lsn, name: String },
    Relation(RelationMessage),
    Type { oid: u32, namespace: String, name: String },
    Insert { relation_oid: u32, new: TupleData },
    Update { relation_oid: u32, old: Option<TupleData>, key: Option<TupleData>, new: TupleData },
    Delete { relation_oid: u32, old: Option<TupleData>, key: Option<TupleData> },
    Truncate { options: u8, relation_oids: Vec<u32> },
    Message { transactional: bool, lsn: Lsn, prefix: String, content: Bytes },
}

pub fn decode(_buf: &Bytes) -> Result<Message, DecodeError> {
    todo!()
}

/// PostgreSQL timestamps count microseconds from 2000-01-01 UTC.
pub fn pg_time_to_utc(_us: i64) -> chrono::DateTime<chrono::Utc> {
    todo!()
}
