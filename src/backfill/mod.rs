//! Backfills: the current rows of a routed table, sent to one subscription as
//! `<resource>.snapshot` events, consistent with the change stream.
//!
//! ```text
//!  worker (SQL connection)                 slot loop -> writer (WAL order)
//!  ───────────────────────                 ─────────────────────────────────
//!  emit low watermark  ──── WAL ────────▶  Low: open a window for the table
//!  wait for transactions then in progress   changes of the table: note their keys
//!  SELECT chunk (pk > cursor LIMIT n)
//!  register chunk in [`Chunks`]
//!  emit high watermark ──── WAL ────────▶  High: take the chunk, drop rows whose
//!                                           key changed in the window, the rest
//!  wait: outcome, then durable > high  ◀──  become snapshot events in the batch
//!  advance cursor, rows_sent
//! ```
//!
//! This is the watermark scheme of DBLog (Netflix) and Debezium's incremental
//! snapshots. The chunk is read after the low watermark committed and before
//! the high one, and only once every transaction in progress at the low
//! watermark has ended, so any change the chunk's copy of a row could race
//! with commits inside the window and is seen by the writer between the two
//! watermarks: such a row is left out and its change event, already in the
//! stream, carries its latest state. (Without that wait, a change made before
//! the low watermark and committed after the high one would carry an older
//! revision, its record's position, than the row's stale snapshot.) Every other row's copy is the state as of
//! the window, older than any change that follows the high watermark. Snapshot
//! events are stored by the writer, in the same batches as the stream's
//! events, so the slot's confirmed position and the order of `commit_lsn`
//! (the low watermark's) hold for them too.
//!
//! Crash safety: event ids are derived from the backfill id and the row's
//! primary key, and the cursor moves only once the chunk's events are durably
//! stored, with their deliveries' pending rows: a snapshot's deliveries are
//! never attempted from memory, because its `commit_lsn` (the low
//! watermark's) may lie below the delivery mark, where a restart's sweep of
//! owed deliveries starts (`store::obligations`). A restart (or a stream session that did not see both watermarks)
//! redoes the chunk from the stored cursor; ids already stored are skipped.
//! Memory is one chunk, plus the keys changed inside an open window.

pub mod progress;
mod window;
pub(crate) mod worker;

use std::collections::HashMap;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;
use uuid::Uuid;

use crate::mapping::snapshot::SnapshotRow;

pub use window::Windows;

/// Which side of a chunk a watermark marks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mark {
    Low,
    High,
}

/// The content of a watermark message (JSON).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Watermark {
    pub backfill: Uuid,
    /// Distinguishes the chunks (and retries) of one backfill.
    pub chunk: u64,
    pub mark: Mark,
    /// OID of the table read.
    pub table: u32,
    /// Primary-key column names, in key order.
    pub key: Vec<String>,
}

impl Watermark {
    /// Parse a watermark message's content; `None` for anything else (the
    /// content comes off the stream: no panics, no partial trust).
    pub fn parse(content: &[u8]) -> Option<Watermark> {
        serde_json::from_slice(content).ok()
    }
}

/// What the writer did with a chunk at its high watermark.
#[derive(Debug, PartialEq, Eq)]
pub enum ChunkOutcome {
    /// These snapshot events were added to the writer's batch (rows changed
    /// inside the window were left out).
    Emitted { ids: Vec<Uuid> },
    /// The chunk could not be judged (e.g. the stream session started between
    /// its watermarks): read it again.
    Dropped(&'static str),
    /// The table has no enabled route at the high watermark.
    NoRoute,
}

/// A chunk read by the worker, waiting for its high watermark.
pub struct PendingChunk {
    pub subscription: Uuid,
    pub rows: Vec<SnapshotRow>,
    pub outcome: oneshot::Sender<ChunkOutcome>,
}

/// Chunks handed from the worker to the writer, by `(backfill, chunk)`.
#[derive(Default)]
pub struct Chunks {
    pending: Mutex<HashMap<(Uuid, u64), PendingChunk>>,
}

impl Chunks {
    pub fn register(&self, backfill: Uuid, chunk: u64, pending: PendingChunk) {
        self.lock().insert((backfill, chunk), pending);
    }

    pub fn take(&self, backfill: Uuid, chunk: u64) -> Option<PendingChunk> {
        self.lock().remove(&(backfill, chunk))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(Uuid, u64), PendingChunk>> {
        // a panic while holding the lock leaves a plain map: still usable
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watermarks_round_trip_and_junk_is_none() {
        let w = Watermark {
            backfill: Uuid::from_u128(5),
            chunk: 3,
            mark: Mark::High,
            table: 16384,
            key: vec!["id".into()],
        };
        let text = serde_json::to_vec(&w).unwrap();
        assert_eq!(Watermark::parse(&text), Some(w));
        for junk in [
            &b""[..],
            b"{",
            b"null",
            b"{\"backfill\":1}",
            b"\xff\xfe",
            b"{\"backfill\":\"00000000-0000-0000-0000-000000000005\",\"chunk\":-1,\"mark\":\"high\",\"table\":1,\"key\":[]}",
        ] {
            assert_eq!(Watermark::parse(junk), None, "{junk:?}");
        }
    }
}
