//! pgoutput protocol-1 message decoder: the first step from WAL bytes to changes.
//!
//! The slot loop receives each `XLogData` payload as [`Bytes`] and hands it to
//! [`decode`], which returns one [`Message`] (Begin, Relation, Insert, ...,
//! Commit) exactly as PostgreSQL's `pgoutput` plugin wrote it, per
//! <https://www.postgresql.org/docs/15/protocol-logicalrep-message-formats.html>.
//! Column values stay raw: [`ColumnValue::Text`] and [`ColumnValue::Binary`] are
//! zero-copy slices of the input; typing them is `values`' job.
//!
//! Contract: the input comes off the network, so the decoder never panics.
//! Every read is bounds-checked, counts and lengths from the wire are validated
//! before use, preallocation is capped by the bytes actually left, and a
//! message must be consumed exactly (trailing bytes are an error). Anything
//! malformed is a [`DecodeError`] naming the offset where decoding stopped.
use bytes::Bytes;

use super::lsn::Lsn;

mod reader;

use reader::Reader;

/// Why a pgoutput message could not be decoded. Every variant means the
/// replication stream is not what walhook expects: check that the slot uses
/// the `pgoutput` plugin with `proto_version '1'` (no streaming, no binary).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error(
        "malformed pgoutput message: truncated at offset {offset} (needed {needed} more byte(s), \
         {available} left); the stream is corrupt or not pgoutput protocol 1"
    )]
    Truncated {
        offset: usize,
        needed: usize,
        available: usize,
    },
    #[error(
        "malformed pgoutput message: unknown message tag {tag:#04x}; walhook speaks pgoutput \
         protocol 1 only, check the slot's plugin and proto_version"
    )]
    UnknownTag { tag: u8 },
    #[error(
        "malformed pgoutput message: at offset {offset} expected {expected}, found byte {found:#04x}"
    )]
    Unexpected {
        offset: usize,
        expected: &'static str,
        found: u8,
    },
    #[error("malformed pgoutput message: string at offset {offset} has no NUL terminator")]
    MissingNul { offset: usize },
    #[error(
        "malformed pgoutput message: string at offset {offset} is not valid UTF-8; walhook \
         needs a UTF8-encoded database"
    )]
    InvalidUtf8 { offset: usize },
    #[error("malformed pgoutput message: negative length {len} at offset {offset}")]
    NegativeLength { offset: usize, len: i32 },
    #[error(
        "malformed pgoutput message: {count} trailing byte(s) after the message at offset {offset}"
    )]
    TrailingBytes { offset: usize, count: usize },
}

/// One column of a tuple, as sent on the wire.
#[derive(Debug, Clone, PartialEq)]
pub enum ColumnValue {
    /// `'n'`: SQL NULL.
    Null,
    /// `'u'`: a TOASTed value that did not change; its bytes are not sent.
    UnchangedToast,
    /// `'t'`: the value in PostgreSQL's text output format.
    Text(Bytes),
    /// `'b'`: the value in binary format (only with `binary 'true'`).
    Binary(Bytes),
}

/// The columns of one row, in table order.
#[derive(Debug, Clone, PartialEq)]
pub struct TupleData(pub Vec<ColumnValue>);

/// One column of a Relation message.
#[derive(Debug, Clone, PartialEq)]
pub struct ColumnInfo {
    /// 1 when the column is part of the replica identity key.
    pub flags: u8,
    pub name: String,
    pub type_oid: u32,
    pub type_modifier: i32,
}

/// Describes a table before its first change in a session (and after DDL).
#[derive(Debug, Clone, PartialEq)]
pub struct RelationMessage {
    pub oid: u32,
    /// As sent: the empty string stands for `pg_catalog`.
    pub namespace: String,
    pub name: String,
    /// `d` default, `n` nothing, `f` full, `i` index.
    pub replica_identity: u8,
    pub columns: Vec<ColumnInfo>,
}

/// One decoded pgoutput protocol-1 message.
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    Begin {
        final_lsn: Lsn,
        commit_time_us: i64,
        xid: u32,
    },
    Commit {
        flags: u8,
        commit_lsn: Lsn,
        end_lsn: Lsn,
        commit_time_us: i64,
    },
    Origin {
        commit_lsn: Lsn,
        name: String,
    },
    Relation(RelationMessage),
    Type {
        oid: u32,
        namespace: String,
        name: String,
    },
    Insert {
        relation_oid: u32,
        new: TupleData,
    },
    /// `key` is set when the key changed (replica identity default/index),
    /// `old` under `REPLICA IDENTITY FULL`; both `None` otherwise.
    Update {
        relation_oid: u32,
        old: Option<TupleData>,
        key: Option<TupleData>,
        new: TupleData,
    },
    /// Exactly one of `old` (`REPLICA IDENTITY FULL`) and `key` is set.
    Delete {
        relation_oid: u32,
        old: Option<TupleData>,
        key: Option<TupleData>,
    },
    /// `options`: bit 1 `CASCADE`, bit 2 `RESTART IDENTITY`.
    Truncate {
        options: u8,
        relation_oids: Vec<u32>,
    },
    /// A `pg_logical_emit_message` (only with `messages 'true'`).
    Message {
        transactional: bool,
        lsn: Lsn,
        prefix: String,
        content: Bytes,
    },
}

/// Decodes one pgoutput protocol-1 message; the whole buffer must be one
/// message. Column values and message content are slices of `buf`.
pub fn decode(buf: &Bytes) -> Result<Message, DecodeError> {
    let mut r = Reader { buf, pos: 0 };
    let msg = match r.u8()? {
        b'B' => Message::Begin {
            final_lsn: Lsn(r.u64()?),
            commit_time_us: r.i64()?,
            xid: r.u32()?,
        },
        b'C' => Message::Commit {
            flags: r.u8()?,
            commit_lsn: Lsn(r.u64()?),
            end_lsn: Lsn(r.u64()?),
            commit_time_us: r.i64()?,
        },
        b'O' => Message::Origin {
            commit_lsn: Lsn(r.u64()?),
            name: r.string()?,
        },
        b'R' => Message::Relation(relation(&mut r)?),
        b'Y' => Message::Type {
            oid: r.u32()?,
            namespace: r.string()?,
            name: r.string()?,
        },
        b'I' => {
            let relation_oid = r.u32()?;
            r.expect(b'N', "'N' (new tuple)")?;
            Message::Insert {
                relation_oid,
                new: tuple(&mut r)?,
            }
        }
        b'U' => update(&mut r)?,
        b'D' => {
            let relation_oid = r.u32()?;
            let tag = r.peek()?;
            let (old, key) = old_or_key(&mut r, tag)?;
            if old.is_none() && key.is_none() {
                return Err(r.unexpected("'K' (key) or 'O' (old tuple)"));
            }
            Message::Delete {
                relation_oid,
                old,
                key,
            }
        }
        b'T' => {
            let count = r.u32()?;
            let options = r.u8()?;
            let count = usize::try_from(count).unwrap_or(usize::MAX);
            let mut relation_oids = Vec::with_capacity(count.min(r.remaining() / 4));
            for _ in 0..count {
                relation_oids.push(r.u32()?);
            }
            Message::Truncate {
                options,
                relation_oids,
            }
        }
        b'M' => {
            let flags = r.u8()?;
            let lsn = Lsn(r.u64()?);
            let prefix = r.string()?;
            let len = r.length()?;
            Message::Message {
                transactional: flags & 1 == 1,
                lsn,
                prefix,
                content: r.bytes(len)?,
            }
        }
        tag => return Err(DecodeError::UnknownTag { tag }),
    };
    r.finish()?;
    Ok(msg)
}

fn relation(r: &mut Reader<'_>) -> Result<RelationMessage, DecodeError> {
    let oid = r.u32()?;
    let namespace = r.string()?;
    let name = r.string()?;
    let replica_identity = r.u8()?;
    let count = usize::from(r.u16()?);
    // Each column takes at least 10 bytes: flags, NUL, type oid, typmod.
    let mut columns = Vec::with_capacity(count.min(r.remaining() / 10));
    for _ in 0..count {
        columns.push(ColumnInfo {
            flags: r.u8()?,
            name: r.string()?,
            type_oid: r.u32()?,
            type_modifier: r.i32()?,
        });
    }
    Ok(RelationMessage {
        oid,
        namespace,
        name,
        replica_identity,
        columns,
    })
}

fn update(r: &mut Reader<'_>) -> Result<Message, DecodeError> {
    let relation_oid = r.u32()?;
    let tag = r.peek()?;
    let (old, key) = old_or_key(r, tag)?;
    r.expect(b'N', "'N' (new tuple)")?;
    Ok(Message::Update {
        relation_oid,
        old,
        key,
        new: tuple(r)?,
    })
}

type OldAndKey = (Option<TupleData>, Option<TupleData>);

/// Reads an optional `'O'` or `'K'` tuple; `tag` is the next byte, unread.
fn old_or_key(r: &mut Reader<'_>, tag: u8) -> Result<OldAndKey, DecodeError> {
    match tag {
        b'O' => {
            r.u8()?;
            Ok((Some(tuple(r)?), None))
        }
        b'K' => {
            r.u8()?;
            Ok((None, Some(tuple(r)?)))
        }
        _ => Ok((None, None)),
    }
}

fn tuple(r: &mut Reader<'_>) -> Result<TupleData, DecodeError> {
    let count = usize::from(r.u16()?);
    // Each column takes at least its one kind byte.
    let mut columns = Vec::with_capacity(count.min(r.remaining()));
    for _ in 0..count {
        let offset = r.pos;
        let value = match r.u8()? {
            b'n' => ColumnValue::Null,
            b'u' => ColumnValue::UnchangedToast,
            b't' => {
                let len = r.length()?;
                ColumnValue::Text(r.bytes(len)?)
            }
            b'b' => {
                let len = r.length()?;
                ColumnValue::Binary(r.bytes(len)?)
            }
            found => {
                return Err(DecodeError::Unexpected {
                    offset,
                    expected: "a column kind 'n', 'u', 't' or 'b'",
                    found,
                });
            }
        };
        columns.push(value);
    }
    Ok(TupleData(columns))
}

/// Seconds from the Unix epoch to PostgreSQL's epoch, 2000-01-01 00:00:00 UTC.
const PG_EPOCH_UNIX_SECS: i64 = 946_684_800;

/// PostgreSQL timestamps count microseconds from 2000-01-01 UTC. Values beyond
/// chrono's range (PostgreSQL's `±infinity` are `i64::MAX`/`MIN`) saturate to
/// the latest/earliest representable instant.
pub fn pg_time_to_utc(us: i64) -> chrono::DateTime<chrono::Utc> {
    use chrono::DateTime;
    PG_EPOCH_UNIX_SECS
        .checked_mul(1_000_000)
        .and_then(|epoch| us.checked_add(epoch))
        .and_then(DateTime::from_timestamp_micros)
        .unwrap_or(if us < 0 {
            DateTime::<chrono::Utc>::MIN_UTC
        } else {
            DateTime::<chrono::Utc>::MAX_UTC
        })
}

#[cfg(test)]
mod tests;
