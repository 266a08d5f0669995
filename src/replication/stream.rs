//! The slot loop: one replication connection's life, from `START_REPLICATION` to
//! an error or shutdown.
//!
//! ```text
//!  server ──XLogData──▶ decode ──▶ relation cache ──▶ Change ──▶ items (bounded)
//!     ▲                                                              │
//!     └──── standby status (flush = durable) ◀── durable LSN (watch) ◀┘ store
//! ```
//!
//! **When may an LSN be confirmed?** Only when every event of every change at or
//! before it is committed in `walhook.events`. The store reports that position on
//! the `durable` watch channel: the `end_lsn` of the last transaction whose events
//! it committed, or a [`StreamItem::Position`] it passed with nothing pending.
//! This loop never invents a position itself: it only echoes `durable` to the
//! server (at least every 10 s, and whenever the server asks), so a crash at any
//! moment restarts the slot at or before the first unstored change. Replayed
//! changes map to the same event ids, and the store ignores ids it already has.
//!
//! The items channel is bounded: when the store falls behind, this loop stops
//! reading the socket (PostgreSQL keeps the WAL) but keeps answering keepalives,
//! so memory stays flat whatever the backlog.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

mod error;
mod poison;
mod rows;

pub use error::StreamError;
use error::unexpected;
pub use poison::{FailureStreak, PoisonMessage};
use rows::tuple_to_row;

use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use super::change::{Change, Op, RelationInfo, Row, TxnBegin, TxnCommit};
use super::conn::{ReplicationConnection, ReplicationStream};
use super::lsn::Lsn;
use super::pgoutput::{self, Message, TupleData};
use super::protocol::ReplicationMessage;
use crate::telemetry;

/// Standby status updates go out at least this often.
const STATUS_INTERVAL: Duration = Duration::from_secs(10);

/// Prefix of walhook's own heartbeat messages (`pg_logical_emit_message`).
pub const HEARTBEAT_PREFIX: &str = "walhook.heartbeat";

/// Prefix of backfill watermarks (transactional `pg_logical_emit_message`).
pub const BACKFILL_PREFIX: &str = "walhook.backfill";

/// What the slot loop hands to the next stage, in WAL order.
#[derive(Debug, Clone)]
pub enum StreamItem {
    Begin(TxnBegin),
    Change {
        change: Change,
        /// Columns whose unchanged TOAST value was not in the WAL (the table
        /// lacks `REPLICA IDENTITY FULL`): their value is unknown.
        missing_toast: Vec<String>,
    },
    Commit(TxnCommit),
    /// A backfill watermark, inside its own transaction (between that
    /// transaction's Begin and Commit); `content` is the backfill's to read.
    Watermark {
        content: bytes::Bytes,
    },
    /// A new streaming session starts: the slot replays from its confirmed
    /// position, so anything not yet stored from the last session is dropped.
    Restart,
    /// Everything before `lsn` has been sent and no transaction is open: once
    /// the items before this one are stored, `lsn` may be confirmed.
    Position(Lsn),
}

/// How a streaming session is tied to the rest of `walhook run`.
pub struct StreamLinks<'a> {
    /// Where decoded items go, in WAL order (to the writer).
    pub items: &'a mpsc::Sender<StreamItem>,
    /// Position up to which every event is stored (from the writer).
    pub durable: watch::Receiver<Lsn>,
    pub shutdown: CancellationToken,
    /// Signalled by the writer when it could not store events.
    pub store_failed: Arc<tokio::sync::Notify>,
}

/// One streaming session on an open replication connection.
pub struct SlotStream<'a> {
    stream: ReplicationStream,
    items: &'a mpsc::Sender<StreamItem>,
    durable: watch::Receiver<Lsn>,
    shutdown: CancellationToken,
    /// Signalled by the writer when it could not store events.
    store_failed: Arc<tokio::sync::Notify>,
    /// Highest position reported to the server.
    confirmed: Lsn,
    relations: HashMap<u32, Arc<RelationInfo>>,
    txn: Option<TxnBegin>,
    ordinal: u32,
    ticker: tokio::time::Interval,
}

impl<'a> SlotStream<'a> {
    /// Start replication on `conn` from the slot's confirmed position.
    pub async fn start(
        conn: ReplicationConnection,
        slot: &str,
        publication: &str,
        confirmed: Lsn,
        links: StreamLinks<'a>,
    ) -> Result<SlotStream<'a>, StreamError> {
        let StreamLinks {
            items,
            durable,
            shutdown,
            store_failed,
        } = links;
        let stream = conn.start_replication(slot, Lsn(0), publication).await?;
        let mut ticker = tokio::time::interval(STATUS_INTERVAL);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let confirmed = confirmed.max(*durable.borrow());
        let mut this = SlotStream {
            stream,
            items,
            durable,
            shutdown,
            store_failed,
            confirmed,
            relations: HashMap::new(),
            txn: None,
            ordinal: 0,
            ticker,
        };
        this.push(StreamItem::Restart).await?;
        Ok(this)
    }

    /// Stream until an error or shutdown. On shutdown the durable position is
    /// reported once more before returning.
    pub async fn run(mut self) -> Result<(), StreamError> {
        loop {
            tokio::select! {
                biased;
                _ = self.shutdown.cancelled() => {
                    self.report().await?;
                    return Err(StreamError::Shutdown);
                }
                _ = self.store_failed.notified() => return Err(StreamError::StoreFailed),
                changed = self.durable.changed() => {
                    if changed.is_err() {
                        return Err(StreamError::Shutdown);
                    }
                    self.report().await?;
                }
                _ = self.ticker.tick() => self.report().await?,
                message = self.stream.next_message() => match message? {
                    Some(message) => self.handle(message).await?,
                    None => return Err(StreamError::Closed),
                },
            }
        }
    }

    /// Report the durable position to the server (a standby status update).
    async fn report(&mut self) -> Result<(), StreamError> {
        let durable = *self.durable.borrow_and_update();
        self.confirmed = self.confirmed.max(durable);
        self.stream
            .send_status(self.confirmed, self.confirmed, self.confirmed, false)
            .await?;
        Ok(())
    }

    async fn handle(&mut self, message: ReplicationMessage) -> Result<(), StreamError> {
        match message {
            ReplicationMessage::PrimaryKeepalive {
                wal_end,
                reply_requested,
                ..
            } => {
                if self.txn.is_none() {
                    self.push(StreamItem::Position(wal_end)).await?;
                }
                if reply_requested {
                    self.report().await?;
                }
                Ok(())
            }
            ReplicationMessage::XLogData {
                wal_start, data, ..
            } => {
                let result = match pgoutput::decode(&data) {
                    Ok(message) => self.apply(wal_start, message).await,
                    Err(source) => Err(StreamError::Decode {
                        lsn: wal_start,
                        table: None,
                        source,
                    }),
                };
                result.map_err(|error| error.on(self.table_of(&data)))
            }
        }
    }

    /// One decoded pgoutput message: transaction bounds, relation metadata,
    /// row changes and logical messages each have their step.
    async fn apply(&mut self, lsn: Lsn, message: Message) -> Result<(), StreamError> {
        match message {
            Message::Begin {
                final_lsn,
                commit_time_us,
                xid,
            } => self.begin(final_lsn, commit_time_us, xid).await,
            Message::Commit {
                commit_lsn,
                end_lsn,
                commit_time_us,
                ..
            } => self.commit(lsn, commit_lsn, end_lsn, commit_time_us).await,
            Message::Relation(rel) => {
                self.remember_relation(rel);
                Ok(())
            }
            Message::Insert { relation_oid, new } => {
                self.row_change(lsn, relation_oid, Op::Insert, Some(new), None)
                    .await
            }
            Message::Update {
                relation_oid,
                old,
                key,
                new,
            } => {
                self.row_change(lsn, relation_oid, Op::Update, Some(new), old.or(key))
                    .await
            }
            Message::Delete {
                relation_oid,
                old,
                key,
            } => {
                self.row_change(lsn, relation_oid, Op::Delete, None, old.or(key))
                    .await
            }
            Message::Truncate { relation_oids, .. } => {
                for oid in relation_oids {
                    let relation = self.relation(lsn, oid)?;
                    self.push_change(lsn, relation, Op::Truncate, None, None, Vec::new())
                        .await?;
                }
                Ok(())
            }
            Message::Message {
                transactional,
                lsn: message_lsn,
                prefix,
                content,
            } => {
                self.logical_message(transactional, message_lsn, &prefix, content)
                    .await
            }
            Message::Origin { .. } | Message::Type { .. } => Ok(()),
        }
    }

    async fn begin(
        &mut self,
        final_lsn: Lsn,
        commit_time_us: i64,
        xid: u32,
    ) -> Result<(), StreamError> {
        let begin = TxnBegin {
            commit_lsn: final_lsn,
            commit_time: pgoutput::pg_time_to_utc(commit_time_us),
            xid,
        };
        self.txn = Some(begin);
        self.ordinal = 0;
        self.push(StreamItem::Begin(begin)).await
    }

    async fn commit(
        &mut self,
        lsn: Lsn,
        commit_lsn: Lsn,
        end_lsn: Lsn,
        commit_time_us: i64,
    ) -> Result<(), StreamError> {
        if self.txn.take().is_none() {
            return Err(unexpected(lsn, "Commit without Begin"));
        }
        let commit_time = pgoutput::pg_time_to_utc(commit_time_us);
        let lag = (chrono::Utc::now() - commit_time).num_milliseconds() as f64 / 1000.0;
        telemetry::REPLICATION_LAG_SECONDS.set(lag.max(0.0));
        self.push(StreamItem::Commit(TxnCommit {
            commit_lsn,
            end_lsn,
            commit_time,
        }))
        .await
    }

    fn remember_relation(&mut self, rel: pgoutput::RelationMessage) {
        let info = RelationInfo {
            oid: rel.oid,
            schema: rel.namespace,
            name: rel.name,
            columns: rel
                .columns
                .into_iter()
                .map(|c| (Arc::from(c.name), c.type_oid))
                .collect(),
        };
        self.relations.insert(info.oid, Arc::new(info));
    }

    /// An Insert, Update or Delete: its tuples as typed rows (the old one,
    /// when sent, fills in unchanged TOAST values of the new one).
    async fn row_change(
        &mut self,
        lsn: Lsn,
        relation_oid: u32,
        op: Op,
        new: Option<TupleData>,
        old: Option<TupleData>,
    ) -> Result<(), StreamError> {
        let relation = self.relation(lsn, relation_oid)?;
        let old = match old {
            Some(tuple) => Some(tuple_to_row(lsn, &relation, &tuple, None)?.0),
            None => None,
        };
        let (new, missing) = match new {
            Some(tuple) => {
                let (row, missing) = tuple_to_row(lsn, &relation, &tuple, old.as_ref())?;
                (Some(row), missing)
            }
            None => (None, Vec::new()),
        };
        self.push_change(lsn, relation, op, new, old, missing).await
    }

    /// walhook's own logical messages: a heartbeat outside a transaction is a
    /// position that may be confirmed; a backfill watermark inside one is
    /// handed on in order. Others' messages are ignored.
    async fn logical_message(
        &mut self,
        transactional: bool,
        lsn: Lsn,
        prefix: &str,
        content: bytes::Bytes,
    ) -> Result<(), StreamError> {
        if !transactional && self.txn.is_none() && prefix == HEARTBEAT_PREFIX {
            self.push(StreamItem::Position(lsn)).await?;
        } else if transactional && self.txn.is_some() && prefix == BACKFILL_PREFIX {
            self.push(StreamItem::Watermark { content }).await?;
        }
        Ok(())
    }

    /// The table a row message (Insert, Update, Delete) is about, if its
    /// relation is known: for error messages.
    fn table_of(&self, data: &[u8]) -> Option<String> {
        match data {
            [b'I' | b'U' | b'D', a, b, c, d, ..] => self
                .relations
                .get(&u32::from_be_bytes([*a, *b, *c, *d]))
                .map(|r| r.qualified_name()),
            _ => None,
        }
    }

    fn relation(&self, lsn: Lsn, oid: u32) -> Result<Arc<RelationInfo>, StreamError> {
        self.relations.get(&oid).cloned().ok_or_else(|| {
            unexpected(
                lsn,
                &format!("change on relation {oid} before its Relation message"),
            )
        })
    }

    async fn push_change(
        &mut self,
        lsn: Lsn,
        relation: Arc<RelationInfo>,
        op: Op,
        new: Option<Row>,
        old: Option<Row>,
        missing_toast: Vec<String>,
    ) -> Result<(), StreamError> {
        if self.txn.is_none() {
            return Err(unexpected(lsn, "row change outside a transaction"));
        }
        telemetry::CHANGES_RECEIVED
            .with_label_values(&[&relation.qualified_name(), op.as_str()])
            .inc();
        let change = Change {
            relation,
            op,
            new,
            old,
            lsn,
            ordinal: self.ordinal,
        };
        self.ordinal += 1;
        self.push(StreamItem::Change {
            change,
            missing_toast,
        })
        .await
    }

    /// Hand an item on, answering the server's clock while the store is busy.
    async fn push(&mut self, item: StreamItem) -> Result<(), StreamError> {
        loop {
            tokio::select! {
                permit = self.items.reserve() => {
                    let permit = permit.map_err(|_| StreamError::Shutdown)?;
                    permit.send(item);
                    return Ok(());
                }
                _ = self.ticker.tick() => self.report().await?,
                _ = self.store_failed.notified() => return Err(StreamError::StoreFailed),
                _ = self.shutdown.cancelled() => return Err(StreamError::Shutdown),
            }
        }
    }
}
