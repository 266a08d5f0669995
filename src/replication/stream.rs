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

use serde_json::Value;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use super::change::{Change, Op, RelationInfo, Row, TxnBegin, TxnCommit};
use super::conn::{ConnError, ReplicationConnection, ReplicationStream};
use super::lsn::Lsn;
use super::pgoutput::{self, ColumnValue, DecodeError, Message, TupleData};
use super::protocol::ReplicationMessage;
use super::values::text_to_json;
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

/// Why the loop stopped.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    #[error(transparent)]
    Conn(#[from] ConnError),
    #[error(
        "undecodable message at {lsn}{}: {source}; not confirming past it",
        on_table(table)
    )]
    Decode {
        lsn: Lsn,
        /// `schema.table` the message is about, when known.
        table: Option<String>,
        #[source]
        source: DecodeError,
    },
    #[error(
        "unexpected message at {lsn}{}: {what}; not confirming past it",
        on_table(table)
    )]
    Unexpected {
        lsn: Lsn,
        table: Option<String>,
        what: String,
    },
    #[error("the server closed the replication stream")]
    Closed,
    #[error("storing events failed; restarting the stream from the last confirmed position")]
    StoreFailed,
    #[error("shutting down")]
    Shutdown,
}

fn on_table(table: &Option<String>) -> String {
    table
        .as_ref()
        .map(|t| format!(" (table {t})"))
        .unwrap_or_default()
}

impl StreamError {
    /// The WAL position and table of a message this stream cannot take; the
    /// same bytes come back after a reconnect.
    pub fn bad_message(&self) -> Option<(Lsn, Option<&str>)> {
        match self {
            StreamError::Decode { lsn, table, .. } | StreamError::Unexpected { lsn, table, .. } => {
                Some((*lsn, table.as_deref()))
            }
            _ => None,
        }
    }

    /// Name the table, when the error does not already.
    fn on(mut self, name: Option<String>) -> Self {
        if let StreamError::Decode { table, .. } | StreamError::Unexpected { table, .. } = &mut self
            && table.is_none()
        {
            *table = name;
        }
        self
    }

    pub fn kind(&self) -> &'static str {
        match self {
            StreamError::Conn(_) => "connection",
            StreamError::Decode { .. } => "decode",
            StreamError::Unexpected { .. } => "protocol",
            StreamError::Closed => "closed",
            StreamError::StoreFailed => "store",
            StreamError::Shutdown => "shutdown",
        }
    }
}

/// A message that failed this many sessions in a row stops walhook: the slot
/// replays the same bytes after every reconnect, so retrying cannot help.
pub const MAX_IDENTICAL_FAILURES: u32 = 5;

/// The stream keeps failing on one message: walhook stops.
#[derive(Debug, thiserror::Error)]
#[error(
    "the replication stream failed {failures} times in a row on the message at {lsn} \
     (table {table}): {error}. walhook stops instead of retrying forever and confirms \
     nothing past it; inspect the message with pg_logical_slot_peek_binary_changes, \
     upgrade walhook or report it with the LSN; only advancing the slot past {lsn} \
     (pg_replication_slot_advance) skips it, losing its events"
)]
pub struct PoisonMessage {
    pub lsn: Lsn,
    pub table: String,
    pub failures: u32,
    pub error: String,
}

/// Counts consecutive session failures on the same message (same position,
/// same error). Any other outcome starts a new count.
#[derive(Debug, Default)]
pub struct FailureStreak {
    last: Option<(Lsn, String)>,
    count: u32,
}

impl FailureStreak {
    /// Record the error that ended a session; the [`PoisonMessage`] when the
    /// same message has now failed [`MAX_IDENTICAL_FAILURES`] times (counted
    /// in `walhook_replication_poison_messages_total`).
    pub fn record(&mut self, error: &StreamError) -> Option<PoisonMessage> {
        let Some((lsn, table)) = error.bad_message() else {
            self.reset();
            return None;
        };
        let key = (lsn, error.to_string());
        if self.last.as_ref() == Some(&key) {
            self.count += 1;
        } else {
            self.last = Some(key);
            self.count = 1;
        }
        if self.count < MAX_IDENTICAL_FAILURES {
            return None;
        }
        let table = table.unwrap_or("unknown").to_owned();
        telemetry::REPLICATION_POISON_MESSAGES
            .with_label_values(&[&table])
            .inc();
        Some(PoisonMessage {
            lsn,
            table,
            failures: self.count,
            error: error.to_string(),
        })
    }

    /// A session streamed or failed for another reason.
    pub fn reset(&mut self) {
        self.last = None;
        self.count = 0;
    }
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

    async fn apply(&mut self, lsn: Lsn, message: Message) -> Result<(), StreamError> {
        match message {
            Message::Begin {
                final_lsn,
                commit_time_us,
                xid,
            } => {
                let begin = TxnBegin {
                    commit_lsn: final_lsn,
                    commit_time: pgoutput::pg_time_to_utc(commit_time_us),
                    xid,
                };
                self.txn = Some(begin);
                self.ordinal = 0;
                self.push(StreamItem::Begin(begin)).await
            }
            Message::Commit {
                commit_lsn,
                end_lsn,
                commit_time_us,
                ..
            } => {
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
            Message::Relation(rel) => {
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
                Ok(())
            }
            Message::Insert { relation_oid, new } => {
                let relation = self.relation(lsn, relation_oid)?;
                let (new, missing) = tuple_to_row(lsn, &relation, &new, None)?;
                self.push_change(lsn, relation, Op::Insert, Some(new), None, missing)
                    .await
            }
            Message::Update {
                relation_oid,
                old,
                key,
                new,
            } => {
                let relation = self.relation(lsn, relation_oid)?;
                let old = match old.or(key) {
                    Some(tuple) => Some(tuple_to_row(lsn, &relation, &tuple, None)?.0),
                    None => None,
                };
                let (new, missing) = tuple_to_row(lsn, &relation, &new, old.as_ref())?;
                self.push_change(lsn, relation, Op::Update, Some(new), old, missing)
                    .await
            }
            Message::Delete {
                relation_oid,
                old,
                key,
            } => {
                let relation = self.relation(lsn, relation_oid)?;
                let old = match old.or(key) {
                    Some(tuple) => Some(tuple_to_row(lsn, &relation, &tuple, None)?.0),
                    None => None,
                };
                self.push_change(lsn, relation, Op::Delete, None, old, Vec::new())
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
                if !transactional && self.txn.is_none() && prefix == HEARTBEAT_PREFIX {
                    self.push(StreamItem::Position(message_lsn)).await?;
                } else if transactional && self.txn.is_some() && prefix == BACKFILL_PREFIX {
                    self.push(StreamItem::Watermark { content }).await?;
                }
                Ok(())
            }
            Message::Origin { .. } | Message::Type { .. } => Ok(()),
        }
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

fn unexpected(lsn: Lsn, what: &str) -> StreamError {
    StreamError::Unexpected {
        lsn,
        table: None,
        what: what.to_owned(),
    }
}

/// Turn a tuple into a typed row. Unchanged TOAST values are taken from `old`
/// (present under `REPLICA IDENTITY FULL`); those not available are left out of
/// the row and named in the second value.
fn tuple_to_row(
    lsn: Lsn,
    relation: &RelationInfo,
    tuple: &TupleData,
    old: Option<&Row>,
) -> Result<(Row, Vec<String>), StreamError> {
    if tuple.0.len() != relation.columns.len() {
        return Err(unexpected(
            lsn,
            &format!(
                "tuple of {} columns for relation {} of {} columns",
                tuple.0.len(),
                relation.qualified_name(),
                relation.columns.len()
            ),
        ));
    }
    let mut row = Row::with_capacity(tuple.0.len());
    let mut missing = Vec::new();
    for ((name, type_oid), value) in relation.columns.iter().zip(&tuple.0) {
        let json = match value {
            ColumnValue::Null => Value::Null,
            ColumnValue::Text(bytes) => {
                let text = std::str::from_utf8(bytes)
                    .map_err(|_| unexpected(lsn, &format!("column {name} is not valid UTF-8")))?;
                text_to_json(*type_oid, text)
            }
            ColumnValue::Binary(_) => {
                return Err(unexpected(lsn, &format!("binary value for column {name}")));
            }
            ColumnValue::UnchangedToast => match old.and_then(|o| o.get(name)) {
                Some(v) => v.clone(),
                None => {
                    missing.push(name.to_string());
                    continue;
                }
            },
        };
        row.push(Arc::clone(name), json);
    }
    Ok((row, missing))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_error(lsn: u64) -> StreamError {
        StreamError::Decode {
            lsn: Lsn(lsn),
            table: Some("public.remote".into()),
            source: pgoutput::decode(&bytes::Bytes::from_static(b"Zhello")).unwrap_err(),
        }
    }

    #[test]
    fn the_same_bad_message_stops_after_a_few_failures() {
        let metric = || {
            telemetry::REPLICATION_POISON_MESSAGES
                .with_label_values(&["public.remote"])
                .get()
        };
        let before = metric();
        let mut streak = FailureStreak::default();
        for _ in 1..MAX_IDENTICAL_FAILURES {
            assert!(streak.record(&decode_error(0x3000_0000)).is_none());
        }
        let poison = streak.record(&decode_error(0x3000_0000)).expect("stops");
        assert_eq!(poison.lsn, Lsn(0x3000_0000));
        let text = poison.to_string();
        assert!(text.contains("0/30000000"), "{text}");
        assert!(text.contains("table public.remote"), "{text}");
        assert_eq!(metric(), before + 1);
    }

    #[test]
    fn other_failures_start_a_new_count() {
        let mut streak = FailureStreak::default();
        for i in 0..2 * MAX_IDENTICAL_FAILURES {
            // alternating positions never add up
            assert!(
                streak
                    .record(&decode_error(0x100 + u64::from(i % 2)))
                    .is_none()
            );
        }
        for _ in 1..MAX_IDENTICAL_FAILURES {
            assert!(streak.record(&decode_error(0x200)).is_none());
        }
        assert!(streak.record(&StreamError::Closed).is_none());
        assert!(
            streak.record(&decode_error(0x200)).is_none(),
            "reset by another error"
        );
    }
}
