//! How a chunk waits: for the transactions in progress at its low
//! watermark to end before it reads, then for the writer's verdict on its
//! window and for its events to be durable, as long as the stream makes
//! progress.

use std::time::{Duration, Instant};

use tokio::sync::oneshot;
use tokio_postgres::Client;
use uuid::Uuid;

use super::{ChunkError, Worker};
use crate::backfill::ChunkOutcome;
use crate::replication::lsn::Lsn;
use crate::store::backfills;

/// How long a chunk waits for its high watermark and its storage while the
/// stream makes no progress at all, before it is read again.
const STALL_TIMEOUT: Duration = Duration::from_secs(120);

/// How often a waiting chunk checks that the stream makes progress.
const STALL_CHECK: Duration = Duration::from_secs(5);

impl Worker {
    /// Wait until the transactions in progress at the low watermark have
    /// ended (as `CREATE INDEX CONCURRENTLY` does). One of them may have
    /// changed a row before the low watermark and commit after the high
    /// one: read meanwhile, the row's snapshot (at the low watermark's
    /// position, so a higher revision) would outrank that newer change.
    /// Ended before the read, its commit falls inside the window, and the
    /// row is left to its change event.
    pub(super) async fn wait_for_earlier_transactions(
        &self,
        client: &Client,
    ) -> Result<(), tokio_postgres::Error> {
        let mut running = backfills::transactions_in_progress(client).await?;
        let began = Instant::now();
        let mut pause = Duration::from_millis(5);
        let mut warned = false;
        while !running.is_empty() && !self.shutdown.is_cancelled() {
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(500));
            running = backfills::still_in_progress(client, &running).await?;
            if !warned && !running.is_empty() && began.elapsed() > Duration::from_secs(10) {
                tracing::warn!(transactions = ?running, "a backfill chunk waits for transactions in progress since before its low watermark; it reads once they commit or roll back");
                warned = true;
            }
        }
        Ok(())
    }

    /// The writer's verdict on the chunk.
    pub(super) async fn wait_outcome(
        &self,
        backfill: Uuid,
        chunk: u64,
        rx: oneshot::Receiver<ChunkOutcome>,
    ) -> Result<ChunkOutcome, ChunkError> {
        match self.while_progressing(rx).await {
            Ok(Ok(outcome)) => Ok(outcome),
            Ok(Err(_)) => Err(ChunkError::Retry("the writer dropped the chunk".into())),
            Err(error) => {
                self.chunks.take(backfill, chunk);
                Err(error)
            }
        }
    }

    /// Until everything up to the high watermark is stored.
    pub(super) async fn wait_durable(&self, high: Lsn) -> Result<(), ChunkError> {
        let mut durable = self.durable.clone();
        match self
            .while_progressing(async move { durable.wait_for(|d| *d > high).await.is_ok() })
            .await?
        {
            true => Ok(()),
            false => Err(ChunkError::Shutdown),
        }
    }

    /// Await `work` as long as the stream makes progress (the durable position
    /// moves; heartbeats move it on an idle database): a large backlog ahead of
    /// a watermark only delays the chunk. [`STALL_TIMEOUT`] without progress
    /// reads the chunk again.
    pub(super) async fn while_progressing<T>(
        &self,
        work: impl std::future::Future<Output = T>,
    ) -> Result<T, ChunkError> {
        tokio::pin!(work);
        let mut last = *self.durable.borrow();
        let mut stalled = Duration::ZERO;
        loop {
            tokio::select! {
                out = &mut work => return Ok(out),
                _ = tokio::time::sleep(STALL_CHECK) => {}
                _ = self.shutdown.cancelled() => return Err(ChunkError::Shutdown),
            }
            let now = *self.durable.borrow();
            if now > last {
                last = now;
                stalled = Duration::ZERO;
            } else {
                stalled += STALL_CHECK;
                if stalled >= STALL_TIMEOUT {
                    return Err(ChunkError::Retry(format!(
                        "the stream stored nothing for {} s while the chunk waited",
                        STALL_TIMEOUT.as_secs()
                    )));
                }
            }
        }
    }
}
