//! `walhook run`: starts the stages and supervises the replication stream.
//!
//! Tasks: the slot loop (reconnecting with backoff; waiting as a standby while
//! another instance holds the slot), the event writer, the dispatcher, the HTTP
//! server, the backfill worker, and small periodic jobs (heartbeat, lag, key
//! reload, retention).
//! Shutdown (SIGTERM/SIGINT) cancels one token: the slot loop stops reading and
//! reports the durable position, the writer stores what it has, the dispatcher
//! finishes or parks in-flight requests, and the process exits 0.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio::sync::{Notify, mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::config::{CommonOptions, ConfigError};
use crate::delivery::KeyRing;
use crate::error::{Disposition, StatementError, during};
use crate::http::{Health, StreamState};
use crate::pipeline::{ITEMS_CAPACITY, Writer};
use crate::reconnect::{Backoff, Tries};
use crate::replication::conn::{ConnError, ReplicationConnection};
use crate::replication::lsn::Lsn;
use crate::replication::slot::{self, PreflightError, SlotState};
use crate::replication::stream::{FailureStreak, SlotStream, StreamError, StreamItem, StreamLinks};
use crate::store::migrate::{self, MigrateError};
use crate::store::monitor;
use crate::telemetry;

/// The daemon cannot start or must stop; each message says what to do.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Migrate(#[from] MigrateError),
    #[error(transparent)]
    Preflight(#[from] PreflightError),
    #[error(transparent)]
    PoisonMessage(#[from] crate::replication::stream::PoisonMessage),
    #[error("replication connection failed: {0}")]
    Replication(#[from] ConnError),
    #[error(transparent)]
    Statement(#[from] StatementError),
    #[error(transparent)]
    Connect(#[from] crate::store::ConnectError),
    #[error(transparent)]
    Http(#[from] std::io::Error),
    #[error("{0}")]
    Other(String),
}

/// Deliveries whose first attempt may wait or run in memory at once (each
/// holds its event's body, shared by the event's deliveries: a few MiB); the
/// rest wait in the WAL or in PostgreSQL.
const FIRST_ATTEMPTS_IN_MEMORY: usize = 4_096;

/// Run until shutdown is requested or a fatal error occurs.
pub async fn run(options: CommonOptions, shutdown: CancellationToken) -> Result<(), DaemonError> {
    telemetry::init();
    let database = options.database()?;
    let replication = options.replication()?;
    let client = crate::store::connect(&database).await?;
    migrate::check_version(&client).await?;
    crate::store::config::register_publication(&client, &options.publication)
        .await
        .map_err(during("registering the publication with its routed tables"))?;
    tracing::info!(publication = %options.publication, "publication registered with routed tables");

    let keys: KeyRing = Arc::new(std::sync::RwLock::new(Arc::new(
        crate::store::keys::load_active(&client)
            .await
            .map_err(|e| DaemonError::Other(e.to_string()))?,
    )));
    let health = Arc::new(Health::default());
    health.set_database_ok(true);
    let wake = Arc::new(Notify::new());
    let settings = crate::store::settings::watch(
        &database,
        &client,
        crate::store::settings::REFRESH_INTERVAL,
        shutdown.clone(),
    )
    .await
    .map_err(during("reading walhook.settings"))?;
    let mapper = crate::store::config::load_mapper(&client)
        .await
        .map_err(during("loading routes and subscriptions"))?
        .with_settings(settings.clone());

    let listener = crate::http::bind(options.http_addr).await?;
    tracing::info!(addr = %listener.local_addr()?, "http server listening");
    let http = tokio::spawn(crate::http::serve(
        listener,
        health.clone(),
        keys.clone(),
        database.clone(),
        shutdown.clone(),
    ));

    let dispatch_config = crate::delivery::dispatcher::DispatcherConfig::new(database.clone());
    let targets = crate::delivery::targets::Targets::default();
    let (first_attempts, first_attempt_jobs) = crate::delivery::first_attempts::FirstAttempts::new(
        targets.clone(),
        FIRST_ATTEMPTS_IN_MEMORY,
    );
    let dispatcher = crate::delivery::dispatcher::Dispatcher::new(
        dispatch_config,
        keys.clone(),
        targets,
        first_attempt_jobs,
        settings.clone(),
        wake.clone(),
    );
    let dispatch_shutdown = CancellationToken::new();
    let dispatch = tokio::spawn(dispatcher.run(dispatch_shutdown.clone()));

    let jobs = tokio::spawn(periodic_jobs(
        database.clone(),
        options.slot.clone(),
        keys.clone(),
        health.clone(),
        settings.clone(),
        shutdown.clone(),
    ));

    let (durable_tx, durable_rx) = watch::channel(Lsn(0));
    let (items_tx, items_rx) = mpsc::channel::<StreamItem>(ITEMS_CAPACITY);
    let system_id = Arc::new(OnceLock::new());
    let store_failed = Arc::new(Notify::new());
    let chunks = Arc::new(crate::backfill::Chunks::default());
    let backfills = tokio::spawn(
        crate::backfill::worker::Worker {
            database: database.clone(),
            chunks: chunks.clone(),
            durable: durable_rx.clone(),
            health: health.clone(),
            shutdown: shutdown.clone(),
        }
        .run(),
    );
    let writer = Writer {
        mapper,
        client: crate::store::ReconnectingClient::connected(
            database.clone(),
            crate::store::connect(&database).await?,
        ),
        system_id: system_id.clone(),
        positions: crate::delivery::positions::Positions::new(durable_tx),
        first_attempts,
        wake,
        store_failed: store_failed.clone(),
        backfill: crate::backfill::Windows::new(chunks),
    };
    let writer = tokio::spawn(writer.run(items_rx));

    let supervised = supervise_stream(StreamContext {
        options: &options,
        database: &database,
        replication: &replication,
        items: items_tx,
        durable: durable_rx,
        system_id,
        store_failed,
        health: &health,
        shutdown: &shutdown,
    })
    .await;

    // Stop order: the stream is down (items sender dropped), so the writer
    // drains and stores what it has; then deliveries park; then the rest.
    let _ = writer.await;
    dispatch_shutdown.cancel();
    let _ = dispatch.await;
    shutdown.cancel();
    let _ = backfills.await;
    let _ = jobs.await;
    let _ = http.await;
    supervised
}

/// What the slot loop works with, for as long as it runs. Dropping it (when
/// the loop ends) drops the items sender, which lets the writer drain.
struct StreamContext<'a> {
    options: &'a CommonOptions,
    database: &'a crate::tls::ConnectConfig,
    replication: &'a crate::tls::ConnectConfig,
    items: mpsc::Sender<StreamItem>,
    durable: watch::Receiver<Lsn>,
    system_id: Arc<OnceLock<String>>,
    store_failed: Arc<Notify>,
    health: &'a Health,
    shutdown: &'a CancellationToken,
}

async fn supervise_stream(context: StreamContext<'_>) -> Result<(), DaemonError> {
    let StreamContext {
        options,
        health,
        shutdown,
        ..
    } = context;
    let mut standby_logged = false;
    let mut streak = FailureStreak::default();
    let backoff = Backoff::doubling(Duration::from_millis(250), Duration::from_secs(30));
    let mut tries = Tries::new(backoff, shutdown);
    while tries.next().await {
        health.set_stream(StreamState::Connecting);
        let session = stream_session(&context).await;
        match session {
            Ok(()) => return Ok(()),
            Err(SessionError::Stream(StreamError::Shutdown)) => return Ok(()),
            Err(SessionError::Fatal(error)) => {
                tracing::error!(%error, "cannot stream the replication slot");
                shutdown.cancel();
                return Err(error);
            }
            Err(SessionError::SlotBusy) => {
                streak.reset();
                health.set_stream(StreamState::Standby);
                if !standby_logged {
                    tracing::info!(slot = %options.slot, "slot is active in another process; waiting as standby");
                    standby_logged = true;
                }
                tries.restart_from(Duration::from_secs(1));
            }
            Err(SessionError::Stream(error)) => {
                telemetry::REPLICATION_ERRORS
                    .with_label_values(&[error.kind()])
                    .inc();
                if let Some(poison) = streak.record(&error) {
                    let error = DaemonError::from(poison);
                    tracing::error!(%error, "cannot stream the replication slot");
                    shutdown.cancel();
                    return Err(error);
                }
                tracing::error!(%error, retry_in = ?tries.delay(), "replication stream failed; reconnecting");
                standby_logged = false;
            }
        }
    }
    Ok(())
}

enum SessionError {
    /// The slot is held by another walhook: wait as a standby.
    SlotBusy,
    /// Retry with backoff.
    Stream(StreamError),
    /// Give up: the operator must change something.
    Fatal(DaemonError),
}

impl From<ConnError> for SessionError {
    fn from(error: ConnError) -> Self {
        match error.disposition() {
            Disposition::SlotBusy => SessionError::SlotBusy,
            Disposition::Transient => SessionError::Stream(StreamError::Conn(error)),
            Disposition::Fatal => SessionError::Fatal(DaemonError::Replication(error)),
        }
    }
}

impl From<StreamError> for SessionError {
    fn from(error: StreamError) -> Self {
        match error {
            StreamError::Conn(conn) => conn.into(),
            other => SessionError::Stream(other),
        }
    }
}

async fn stream_session(context: &StreamContext<'_>) -> Result<(), SessionError> {
    let StreamContext {
        options,
        database,
        replication,
        health,
        ..
    } = *context;
    let sql = crate::store::connect(database).await.map_err(|e| {
        health.set_database_ok(false);
        SessionError::Stream(StreamError::Conn(ConnError::Protocol(format!(
            "database unreachable: {e}"
        ))))
    })?;
    health.set_database_ok(true);
    let state = slot::preflight(&sql, &options.slot).await.map_err(|e| {
        if e.is_transient() {
            SessionError::Stream(StreamError::Conn(ConnError::Protocol(e.to_string())))
        } else {
            SessionError::Fatal(e.into())
        }
    })?;
    let mut conn = ReplicationConnection::connect(replication).await?;
    let system = conn.identify_system().await?;
    let _ = context.system_id.set(system.system_id.clone());
    let confirmed = match state {
        SlotState::Ready { confirmed_flush } => confirmed_flush,
        SlotState::Missing => {
            let at = conn.create_slot(&options.slot).await?;
            tracing::info!(slot = %options.slot, %at, "created replication slot");
            at
        }
    };
    let stream = SlotStream::start(
        conn,
        &options.slot,
        &options.publication,
        confirmed,
        StreamLinks {
            items: &context.items,
            durable: context.durable.clone(),
            shutdown: context.shutdown.clone(),
            store_failed: context.store_failed.clone(),
        },
    )
    .await?;
    health.set_stream(StreamState::Streaming);
    tracing::info!(slot = %options.slot, %confirmed, "streaming");
    stream.run().await.map_err(SessionError::from)
}

/// Heartbeat, lag and pending gauges, key reload, retention; until shutdown.
async fn periodic_jobs(
    database: crate::tls::ConnectConfig,
    slot: String,
    keys: KeyRing,
    health: Arc<Health>,
    settings: watch::Receiver<crate::store::settings::Settings>,
    shutdown: CancellationToken,
) {
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    let mut client = crate::store::ReconnectingClient::new(database);
    let mut rounds: u64 = 0;
    let mut heartbeat_warned = false;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.cancelled() => return,
        }
        rounds += 1;
        let Ok(c) = client.get().await else {
            health.set_database_ok(false);
            continue;
        };
        health.set_database_ok(c.simple_query("").await.is_ok());
        // An idle routed database must not pin WAL: a tiny logical message
        // gives the slot a position to confirm.
        if rounds.is_multiple_of(2) && monitor::heartbeat(c).await.is_err() && !heartbeat_warned {
            tracing::warn!(
                "heartbeat failed (pg_logical_emit_message needs superuser or REPLICATION); an idle database may hold WAL longer"
            );
            heartbeat_warned = true;
        }
        update_gauges(c, &slot).await;
        reload_keys(c, &keys).await;
        if rounds % 120 == 1 {
            let settings = settings.borrow().clone();
            sweep_retention(c, &settings).await;
        }
    }
}

/// Replication lag in bytes and the pending-deliveries gauge.
async fn update_gauges(client: &tokio_postgres::Client, slot: &str) {
    if let Ok(status) = monitor::slot_status(client, slot).await
        && let Some(lag) = status.lag_bytes
    {
        telemetry::REPLICATION_LAG_BYTES.set(lag);
    }
    if let Ok(n) = crate::store::deliveries::pending_count(client).await {
        telemetry::PENDING_DELIVERIES.set(n);
    }
}

/// Pick up rotated or retired signing keys.
async fn reload_keys(client: &tokio_postgres::Client, keys: &KeyRing) {
    if let Ok(active) = crate::store::keys::load_active(client).await
        && let Ok(mut ring) = keys.write()
    {
        *ring = Arc::new(active);
    }
}

/// Remove events and attempts past their retention.
async fn sweep_retention(
    client: &tokio_postgres::Client,
    settings: &crate::store::settings::Settings,
) {
    match crate::store::retention::sweep(client, settings).await {
        Ok((events, attempts)) if events + attempts > 0 => {
            tracing::info!(events, attempts, "retention removed old rows")
        }
        Ok(_) => {}
        Err(error) => tracing::warn!(%error, "retention sweep failed"),
    }
}
