//! The daemon's backfill task: runs unfinished backfills one at a time, chunk
//! by chunk, while this instance streams the slot (the writer that judges the
//! chunks lives beside the stream, so a standby leaves backfills alone).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::{oneshot, watch};
use tokio_postgres::Client;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::{ChunkOutcome, Chunks, Mark, PendingChunk, Watermark};
use crate::http::{Health, StreamState};
use crate::replication::lsn::Lsn;
use crate::store::backfills::{self, Backfill, TableShape};
use crate::telemetry;

mod read;
mod waits;

use read::{connect, read_chunk};

/// Rows per chunk (at most; a `rows_per_second` cap below it shrinks chunks).
pub const CHUNK_ROWS: i64 = 1_000;

/// Consecutive failed attempts at one chunk before the backfill fails.
const MAX_ATTEMPTS: u32 = 10;

/// How often the task looks for work when idle.
const POLL: Duration = Duration::from_secs(1);

/// Everything the task needs.
pub struct Worker {
    pub database: crate::tls::ConnectConfig,
    pub chunks: Arc<Chunks>,
    /// The writer's durable position.
    pub durable: watch::Receiver<Lsn>,
    pub health: Arc<Health>,
    pub shutdown: CancellationToken,
}

/// Why a chunk did not complete.
#[derive(Debug, thiserror::Error)]
enum ChunkError {
    /// Read the chunk again (after a pause).
    #[error("{0}")]
    Retry(String),
    /// The backfill cannot go on.
    #[error("{0}")]
    Fatal(String),
    #[error("database error: {0}")]
    Database(#[from] tokio_postgres::Error),
    #[error("shutting down")]
    Shutdown,
}

enum Step {
    More,
    Done,
    /// The backfill is no longer running (cancelled or deleted).
    Stopped,
    /// This instance is not streaming the slot now: pick it up again later.
    Paused,
}

/// A chunk read inside its watermark window, waiting for the writer.
struct ReadWindow {
    chunk: u64,
    /// The key of the chunk's last row: where the next chunk starts.
    cursor: Vec<String>,
    /// The high watermark's position: the chunk's events are durable when
    /// the writer's durable position passes it.
    high: Lsn,
    /// The chunk had `limit` rows: more may follow.
    full: bool,
    /// The writer's verdict on the chunk.
    outcome: oneshot::Receiver<ChunkOutcome>,
}

/// Chunk numbers, unique within this process (a restart starts elsewhere).
static CHUNK_SEQ: AtomicU64 = AtomicU64::new(0);

fn next_chunk() -> u64 {
    if CHUNK_SEQ.load(Ordering::Relaxed) == 0 {
        let seed = chrono::Utc::now().timestamp_micros().unsigned_abs() << 8;
        let _ = CHUNK_SEQ.compare_exchange(0, seed, Ordering::Relaxed, Ordering::Relaxed);
    }
    CHUNK_SEQ.fetch_add(1, Ordering::Relaxed)
}

impl Worker {
    /// Until shutdown.
    pub async fn run(mut self) {
        let mut client: Option<Client> = None;
        loop {
            tokio::select! {
                _ = tokio::time::sleep(POLL) => {}
                _ = self.shutdown.cancelled() => return,
            }
            if self.health.stream() != StreamState::Streaming {
                continue;
            }
            if client.as_ref().is_none_or(Client::is_closed) {
                client = connect(&self.database).await;
            }
            let Some(c) = client.as_ref() else { continue };
            match backfills::next(c).await {
                Ok(Some(backfill)) => {
                    telemetry::BACKFILLS_RUNNING.inc();
                    self.run_one(c, backfill).await;
                    telemetry::BACKFILLS_RUNNING.dec();
                }
                Ok(None) => {}
                Err(error) => tracing::warn!(%error, "looking for backfills failed"),
            }
        }
    }

    /// Chunks until the backfill is done, stopped, failed, or this process
    /// shuts down or loses its connection (then it resumes from the cursor).
    async fn run_one(&mut self, client: &Client, mut backfill: Backfill) {
        let id = backfill.id;
        let shape = match self.prepare(client, &backfill).await {
            Ok(Some(shape)) => shape,
            Ok(None) => return,
            Err(error) => return self.fail(client, id, &error).await,
        };
        tracing::info!(backfill = %id, table = %backfill.table, "backfill running");
        let mut attempts = 0;
        loop {
            match self.chunk(client, &mut backfill, &shape).await {
                Ok(Step::More) => attempts = 0,
                Ok(Step::Done) => {
                    tracing::info!(backfill = %id, "backfill done");
                    if let Err(error) = backfills::finish(client, id, "done", None).await {
                        tracing::warn!(%error, backfill = %id, "recording a finished backfill failed");
                    }
                    return;
                }
                Ok(Step::Stopped) => {
                    tracing::info!(backfill = %id, "backfill stopped (cancelled)");
                    return;
                }
                Ok(Step::Paused) => {
                    tracing::info!(backfill = %id, "backfill paused while the slot is not streamed here");
                    return;
                }
                Err(ChunkError::Shutdown) => return,
                Err(ChunkError::Fatal(error)) => return self.fail(client, id, &error).await,
                Err(ChunkError::Database(error)) if error.as_db_error().is_none() => {
                    tracing::warn!(%error, backfill = %id, "backfill connection lost; resuming later");
                    return;
                }
                Err(ChunkError::Database(error)) => {
                    let message = error
                        .as_db_error()
                        .map_or_else(|| error.to_string(), |e| e.message().to_owned());
                    return self.fail(client, id, &message).await;
                }
                Err(ChunkError::Retry(reason)) => {
                    attempts += 1;
                    if attempts >= MAX_ATTEMPTS {
                        let error = format!("chunk failed {attempts} times, last: {reason}");
                        return self.fail(client, id, &error).await;
                    }
                    let pause = Duration::from_secs(1 << attempts.min(5));
                    tracing::warn!(backfill = %id, %reason, retry_in = ?pause, "reading the chunk again");
                    tokio::select! {
                        _ = tokio::time::sleep(pause) => {}
                        _ = self.shutdown.cancelled() => return,
                    }
                }
            }
        }
    }

    /// Mark the backfill running and read its table's shape.
    async fn prepare(
        &self,
        client: &Client,
        backfill: &Backfill,
    ) -> Result<Option<TableShape>, String> {
        let db = |e: tokio_postgres::Error| e.to_string();
        if !backfills::start(client, backfill.id).await.map_err(db)? {
            return Ok(None);
        }
        let shape = backfills::table_shape(client, backfill.table_oid)
            .await
            .map_err(db)?;
        if shape.key.is_empty() {
            return Err(format!("{} has no primary key", backfill.table));
        }
        Ok(Some(shape))
    }

    async fn fail(&self, client: &Client, id: Uuid, error: &str) {
        tracing::error!(backfill = %id, %error, "backfill failed");
        if let Err(e) = backfills::finish(client, id, "failed", Some(error)).await {
            tracing::warn!(error = %e, backfill = %id, "recording a failed backfill failed");
        }
    }

    /// One chunk: read it inside its watermark window, wait until its events
    /// are stored, advance the cursor, keep to the backfill's rate.
    async fn chunk(
        &mut self,
        client: &Client,
        backfill: &mut Backfill,
        shape: &TableShape,
    ) -> Result<Step, ChunkError> {
        if self.health.stream() != StreamState::Streaming {
            return Ok(Step::Paused);
        }
        if backfills::status(client, backfill.id).await?.as_deref() != Some("running") {
            return Ok(Step::Stopped);
        }
        let started = Instant::now();
        let limit = backfill
            .rows_per_second
            .map_or(CHUNK_ROWS, |r| i64::from(r).min(CHUNK_ROWS));
        let Some(window) = self.read_window(client, backfill, shape, limit).await? else {
            return Ok(Step::Done);
        };
        let ReadWindow {
            chunk,
            cursor,
            high,
            full,
            outcome,
        } = window;
        let stored = self
            .stored_events(client, backfill, chunk, high, outcome)
            .await?;
        if !backfills::advance(client, backfill.id, &cursor, stored).await? {
            return Ok(Step::Stopped);
        }
        telemetry::BACKFILL_ROWS.inc_by(stored.unsigned_abs());
        backfill.cursor = Some(cursor);
        if !full {
            return Ok(Step::Done);
        }
        if let Some(rate) = backfill.rows_per_second {
            let budget = Duration::from_secs_f64(limit as f64 / f64::from(rate.max(1)));
            tokio::select! {
                _ = tokio::time::sleep(budget.saturating_sub(started.elapsed())) => {}
                _ = self.shutdown.cancelled() => return Err(ChunkError::Shutdown),
            }
        }
        Ok(Step::More)
    }

    /// Low watermark, read up to `limit` rows after the cursor (handed to the
    /// writer, which judges them against the changes streamed inside the
    /// window), high watermark. `None` when no row is left.
    async fn read_window(
        &mut self,
        client: &Client,
        backfill: &Backfill,
        shape: &TableShape,
        limit: i64,
    ) -> Result<Option<ReadWindow>, ChunkError> {
        let chunk = next_chunk();
        let mark = |mark| {
            let watermark = Watermark {
                backfill: backfill.id,
                chunk,
                mark,
                table: backfill.table_oid,
                key: shape.key_names(),
            };
            serde_json::to_string(&watermark).unwrap_or_default()
        };
        backfills::emit_watermark(client, &mark(Mark::Low)).await?;
        let read = match self.wait_for_earlier_transactions(client).await {
            Ok(()) => read_chunk(client, backfill, shape, limit).await,
            Err(error) => Err(error),
        };
        let (rows, cursor) = match read {
            Ok(read) => read,
            Err(error) => {
                // close the window the writer opened (best effort: it also
                // closes at this backfill's next low watermark or a restart)
                let _ = backfills::emit_watermark(client, &mark(Mark::High)).await;
                return Err(error.into());
            }
        };
        let full = rows.len() as i64 >= limit;
        let (tx, outcome) = oneshot::channel();
        if !rows.is_empty() {
            let pending = PendingChunk {
                subscription: backfill.subscription_id,
                rows,
                outcome: tx,
            };
            self.chunks.register(backfill.id, chunk, pending);
        }
        // always closes the window, even when there is nothing to judge
        let high = backfills::emit_watermark(client, &mark(Mark::High)).await;
        let Some(cursor) = cursor else {
            high?;
            return Ok(None);
        };
        match high {
            Ok(high) => Ok(Some(ReadWindow {
                chunk,
                cursor,
                high,
                full,
                outcome,
            })),
            Err(error) => {
                self.chunks.take(backfill.id, chunk);
                Err(error.into())
            }
        }
    }

    /// Wait for the writer's verdict on the window, then until its events are
    /// durable; how many are stored (all of them, or the chunk is read again).
    async fn stored_events(
        &self,
        client: &Client,
        backfill: &Backfill,
        chunk: u64,
        high: Lsn,
        outcome: oneshot::Receiver<ChunkOutcome>,
    ) -> Result<i64, ChunkError> {
        let ids = match self.wait_outcome(backfill.id, chunk, outcome).await? {
            ChunkOutcome::Emitted { ids } => ids,
            ChunkOutcome::Dropped(reason) => return Err(ChunkError::Retry(reason.into())),
            ChunkOutcome::NoRoute => {
                return Err(ChunkError::Fatal(format!(
                    "{} has no enabled route any more",
                    backfill.table
                )));
            }
        };
        self.wait_durable(high).await?;
        let stored = backfills::count_stored(client, &ids).await?;
        if stored < ids.len() as i64 {
            return Err(ChunkError::Retry(format!(
                "{} of the chunk's {} events were not stored (the stream restarted)",
                ids.len() as i64 - stored,
                ids.len()
            )));
        }
        Ok(stored)
    }
}
