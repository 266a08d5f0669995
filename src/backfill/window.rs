//! The writer's side of a backfill: watermark windows over the stream.
//!
//! Called by the writer in WAL order: [`Windows::observe`] for every row
//! change, [`Windows::watermark`] for every backfill watermark, and
//! [`Windows::reset`] when a stream session restarts. Pure apart from the
//! hand-over of chunks through [`Chunks`]; no I/O.

use std::collections::HashSet;
use std::sync::Arc;

use serde_json::Value;

use super::{ChunkOutcome, Chunks, Mark, Watermark};
use crate::mapping::Mapper;
use crate::mapping::event::Event;
use crate::replication::change::{Change, Op, Row, TxnBegin};

/// A chunk between its low watermark and its high one.
struct Window {
    backfill: uuid::Uuid,
    chunk: u64,
    table: u32,
    key: Vec<String>,
    /// The low watermark's transaction: the snapshot events' position and time.
    low: TxnBegin,
    /// Keys of the table's rows changed since the low watermark.
    changed: HashSet<String>,
    /// The table was truncated inside the window: no row of the chunk holds.
    truncated: bool,
    /// More than [`MAX_WINDOW_KEYS`] keys changed: the chunk is read again.
    overflowed: bool,
}

/// Keys noted per window, at most (memory stays bounded even when a low
/// watermark's high one never comes: its worker died between the two).
pub const MAX_WINDOW_KEYS: usize = 100_000;

/// Open windows (one per running backfill; usually none).
pub struct Windows {
    chunks: Arc<Chunks>,
    open: Vec<Window>,
}

/// A row's primary key as the JSON array of its typed values: the same text
/// for a row read by the worker and a row decoded from the WAL.
pub fn key_of(columns: &[String], row: &Row) -> String {
    let values: Vec<&Value> = columns
        .iter()
        .map(|c| row.get(c).unwrap_or(&Value::Null))
        .collect();
    serde_json::to_string(&values).unwrap_or_default()
}

impl Windows {
    pub fn new(chunks: Arc<Chunks>) -> Windows {
        Windows {
            chunks,
            open: Vec::new(),
        }
    }

    /// A new stream session replays from the confirmed position: windows seen
    /// so far may be incomplete.
    pub fn reset(&mut self) {
        self.open.clear();
    }

    /// Note the keys a row change touches, for every window on its table.
    pub fn observe(&mut self, change: &Change) {
        for window in self
            .open
            .iter_mut()
            .filter(|w| w.table == change.relation.oid)
        {
            if change.op == Op::Truncate {
                window.truncated = true;
                continue;
            }
            if window.overflowed {
                continue;
            }
            for row in [&change.old, &change.new].into_iter().flatten() {
                window.changed.insert(key_of(&window.key, row));
            }
            if window.changed.len() > MAX_WINDOW_KEYS {
                window.overflowed = true;
                window.changed = HashSet::new();
            }
        }
    }

    /// A watermark inside the transaction `txn`: a low one opens a window; a
    /// high one closes it and returns the chunk's snapshot events to store.
    pub fn watermark(&mut self, mapper: &Mapper, txn: &TxnBegin, content: &[u8]) -> Vec<Event> {
        let Some(mark) = Watermark::parse(content) else {
            tracing::warn!("ignoring a malformed backfill watermark");
            return Vec::new();
        };
        // a window of the same backfill still open was abandoned by its worker
        let window = self
            .open
            .iter()
            .position(|w| w.backfill == mark.backfill)
            .map(|i| self.open.swap_remove(i));
        if mark.mark == Mark::Low {
            self.open.push(Window {
                backfill: mark.backfill,
                chunk: mark.chunk,
                table: mark.table,
                key: mark.key,
                low: *txn,
                changed: HashSet::new(),
                truncated: false,
                overflowed: false,
            });
            return Vec::new();
        }
        // no pending chunk: a replay of a chunk already handled, or one with no rows
        let Some(pending) = self.chunks.take(mark.backfill, mark.chunk) else {
            return Vec::new();
        };
        let Some(window) = window.filter(|w| w.chunk == mark.chunk) else {
            let _ = pending.outcome.send(ChunkOutcome::Dropped(
                "the stream did not show the chunk's low watermark",
            ));
            return Vec::new();
        };
        if window.overflowed {
            let _ = pending.outcome.send(ChunkOutcome::Dropped(
                "too many changes to the table inside the chunk's window",
            ));
            return Vec::new();
        }
        let rows: Vec<_> = pending
            .rows
            .into_iter()
            .filter(|r| !window.truncated && !window.changed.contains(&r.key))
            .collect();
        match mapper.snapshot(
            window.table,
            window.backfill,
            pending.subscription,
            &window.low,
            &rows,
        ) {
            Some(events) => {
                let ids = events.iter().map(|e| e.id).collect();
                let _ = pending.outcome.send(ChunkOutcome::Emitted { ids });
                events
            }
            None => {
                let _ = pending.outcome.send(ChunkOutcome::NoRoute);
                Vec::new()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use serde_json::json;
    use tokio::sync::oneshot;
    use uuid::Uuid;

    use super::*;
    use crate::backfill::PendingChunk;
    use crate::mapping::routes::Route;
    use crate::mapping::snapshot::SnapshotRow;
    use crate::replication::change::RelationInfo;
    use crate::replication::lsn::Lsn;

    const TABLE: u32 = 42;
    const BACKFILL: Uuid = Uuid::from_u128(7);

    fn mapper() -> Mapper {
        let route = json!({
            "source_oid": "42", "source_table": "items", "resource": "item",
            "apiresource": "/items/{id}", "payload": null, "enabled": true
        });
        Mapper::new(
            vec![Route::from_row(&Row::from_json(route)).unwrap()],
            Vec::new(),
        )
    }

    fn row(id: i64, name: &str) -> Row {
        Row::from_json(json!({"id": id, "name": name}))
    }

    fn txn(lsn: u64) -> TxnBegin {
        TxnBegin {
            commit_lsn: Lsn(lsn),
            commit_time: chrono::Utc::now(),
            xid: 1,
        }
    }

    fn mark(mark: Mark, chunk: u64) -> Vec<u8> {
        serde_json::to_vec(&Watermark {
            backfill: BACKFILL,
            chunk,
            mark,
            table: TABLE,
            key: vec!["id".into()],
        })
        .unwrap()
    }

    /// Chunk `chunk`'s low watermark, in the transaction at position 100.
    fn low(windows: &mut Windows, mapper: &Mapper, chunk: u64) -> Vec<Event> {
        windows.watermark(mapper, &txn(100), &mark(Mark::Low, chunk))
    }

    /// Chunk `chunk`'s high watermark, in the transaction at position 200.
    fn high(windows: &mut Windows, mapper: &Mapper, chunk: u64) -> Vec<Event> {
        windows.watermark(mapper, &txn(200), &mark(Mark::High, chunk))
    }

    fn change(op: Op, old: Option<Row>, new: Option<Row>) -> Change {
        Change {
            relation: Arc::new(RelationInfo {
                oid: TABLE,
                schema: "public".into(),
                name: "items".into(),
                columns: vec![("id".into(), 20), ("name".into(), 25)],
            }),
            op,
            new,
            old,
            lsn: Lsn(150),
            ordinal: 0,
        }
    }

    /// Windows with chunk `chunk` of rows 1..=3 registered.
    fn setup(chunk: u64) -> (Windows, oneshot::Receiver<ChunkOutcome>) {
        let chunks = Arc::new(Chunks::default());
        let (tx, rx) = oneshot::channel();
        let rows = (1..=3)
            .map(|id| SnapshotRow {
                key: format!("[{id}]"),
                row: row(id, "stale"),
            })
            .collect();
        chunks.register(
            BACKFILL,
            chunk,
            PendingChunk {
                subscription: Uuid::from_u128(9),
                rows,
                outcome: tx,
            },
        );
        (Windows::new(chunks), rx)
    }

    #[test]
    fn rows_changed_inside_the_window_are_left_to_their_change_events() {
        let (mut windows, mut rx) = setup(1);
        let mapper = mapper();
        assert!(low(&mut windows, &mapper, 1).is_empty());
        windows.observe(&change(
            Op::Update,
            Some(row(2, "stale")),
            Some(row(2, "fresh")),
        ));
        windows.observe(&change(Op::Delete, Some(row(3, "stale")), None));
        let events = high(&mut windows, &mapper, 1);
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].apiresource, "/items/1");
        assert_eq!(
            events[0].commit_lsn,
            Lsn(100),
            "the low watermark's position"
        );
        let Ok(ChunkOutcome::Emitted { ids }) = rx.try_recv() else {
            panic!("no outcome")
        };
        assert_eq!(ids, vec![events[0].id]);
        // the window is closed: later changes are not noted anywhere
        windows.observe(&change(Op::Insert, None, Some(row(1, "x"))));
        assert!(windows.open.is_empty());
    }

    #[test]
    fn a_high_watermark_without_its_low_one_drops_the_chunk() {
        let (mut windows, mut rx) = setup(1);
        let events = high(&mut windows, &mapper(), 1);
        assert!(events.is_empty());
        assert!(matches!(rx.try_recv(), Ok(ChunkOutcome::Dropped(_))));
    }

    #[test]
    fn a_reset_forgets_open_windows() {
        let (mut windows, mut rx) = setup(1);
        let mapper = mapper();
        low(&mut windows, &mapper, 1);
        windows.reset();
        assert!(high(&mut windows, &mapper, 1).is_empty());
        assert!(matches!(rx.try_recv(), Ok(ChunkOutcome::Dropped(_))));
    }

    #[test]
    fn a_truncate_inside_the_window_leaves_no_row() {
        let (mut windows, mut rx) = setup(1);
        let mapper = mapper();
        low(&mut windows, &mapper, 1);
        windows.observe(&change(Op::Truncate, None, None));
        assert!(high(&mut windows, &mapper, 1).is_empty());
        assert_eq!(
            rx.try_recv().unwrap(),
            ChunkOutcome::Emitted { ids: Vec::new() }
        );
    }

    #[test]
    fn a_replayed_high_watermark_and_junk_change_nothing() {
        let (mut windows, _rx) = setup(1);
        let mapper = mapper();
        assert!(windows.watermark(&mapper, &txn(1), b"not json").is_empty());
        // chunk 2 was never registered (already handled before a restart)
        low(&mut windows, &mapper, 2);
        assert!(high(&mut windows, &mapper, 2).is_empty());
        assert!(windows.open.is_empty());
    }

    #[test]
    fn a_window_keeps_a_bounded_number_of_keys() {
        let (mut windows, mut rx) = setup(1);
        let mapper = mapper();
        low(&mut windows, &mapper, 1);
        for id in 0..=MAX_WINDOW_KEYS as i64 + 10 {
            windows.observe(&change(Op::Insert, None, Some(row(1_000 + id, "x"))));
        }
        assert!(windows.open[0].changed.is_empty());
        assert!(high(&mut windows, &mapper, 1).is_empty());
        assert!(matches!(rx.try_recv(), Ok(ChunkOutcome::Dropped(_))));
    }

    #[test]
    fn a_missing_route_is_reported() {
        let (mut windows, mut rx) = setup(1);
        let mapper = Mapper::new(Vec::new(), Vec::new());
        low(&mut windows, &mapper, 1);
        high(&mut windows, &mapper, 1);
        assert_eq!(rx.try_recv().unwrap(), ChunkOutcome::NoRoute);
    }
}
