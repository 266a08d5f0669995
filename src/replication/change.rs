//! Decoded row changes: what the replication stage hands to mapping.
//!
//! A [`Change`] is one row operation of a committed transaction, with its column
//! values already typed as JSON. Changes arrive in commit order, each
//! transaction's changes between its [`TxnBegin`] and [`TxnCommit`].

use std::sync::Arc;

use chrono::{DateTime, Utc};

use super::lsn::Lsn;

pub use super::row::Row;

/// The table a change belongs to, as last described by a Relation message.
#[derive(Debug, Clone, PartialEq)]
pub struct RelationInfo {
    pub oid: u32,
    pub schema: String,
    pub name: String,
    /// `(column name, type oid)` in table order; every row of the relation
    /// shares these names.
    pub columns: Vec<(Arc<str>, u32)>,
}

impl RelationInfo {
    /// `schema.name`, as an operator would type it.
    pub fn qualified_name(&self) -> String {
        format!("{}.{}", self.schema, self.name)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Insert,
    Update,
    Delete,
    Truncate,
}

impl Op {
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Insert => "insert",
            Op::Update => "update",
            Op::Delete => "delete",
            Op::Truncate => "truncate",
        }
    }
}

/// One row change of a committed transaction.
#[derive(Debug, Clone)]
pub struct Change {
    pub relation: Arc<RelationInfo>,
    pub op: Op,
    /// The row after the change (insert, update).
    pub new: Option<Row>,
    /// The row before the change (update, delete), complete when the table has
    /// `REPLICA IDENTITY FULL`.
    pub old: Option<Row>,
    /// WAL position of the change record itself.
    pub lsn: Lsn,
    /// Position of this change within its transaction, from 0.
    pub ordinal: u32,
}

/// Start of a transaction.
#[derive(Debug, Clone, Copy)]
pub struct TxnBegin {
    /// The LSN of the commit record (known up front: pgoutput sends committed
    /// transactions only).
    pub commit_lsn: Lsn,
    pub commit_time: DateTime<Utc>,
    pub xid: u32,
}

/// End of a transaction.
#[derive(Debug, Clone, Copy)]
pub struct TxnCommit {
    pub commit_lsn: Lsn,
    /// The LSN just past the commit record: what may be confirmed once every
    /// event of the transaction is stored.
    pub end_lsn: Lsn,
    pub commit_time: DateTime<Utc>,
}
