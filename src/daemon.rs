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
use crate::http::{Health, StreamState};
use crate::mapping::Mapper;
use crate::pipeline::{ITEMS_CAPACITY, Writer};
use crate::replication::conn::{ConnError, ReplicationConnection};
use crate::replication::lsn::Lsn;
use crate::replication::slot::{self, PreflightError, SlotState};
use crate::replication::stream::{HEARTBEAT_PREFIX, SlotStream, StreamError, StreamItem};
use crate::store::migrate::{self, MigrateError};
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
    #[error("replication connection failed: {0}")]
    Replication(#[from] ConnError),
    #[error(
        "cannot connect to the database: {0}; check --database-url and that PostgreSQL is running"
    )]
    Database(#[from] tokio_postgres::Error),
    #[error(transparent)]
    Connect(#[from] crate::store::ConnectError),
    #[error(transparent)]
    Http(#[from] std::io::Error),
    #[error("{0}")]
    Other(String),
}

/// Run until shutdown is requested or a fatal error occurs.
pub async fn run(options: CommonOptions, shutdown: CancellationToken) -> Result<(), DaemonError> {
    telemetry::init();
    let database = options.database()?;
    let replication = options.replication()?;
    let client = crate::store::connect(&database).await?;
    migrate::check_version(&client).await?;
    client
        .execute(
            "SELECT walhook.register_publication($1)",
            &[&options.publication],
        )
        .await?;
    tracing::info!(publication = %options.publication, "publication registered with routed tables");

    let keys: KeyRing = Arc::new(std::sync::RwLock::new(Arc::new(
        crate::store::keys::load_active(&client)
            .await
            .map_err(|e| DaemonError::Other(e.to_string()))?,
    )));
    let health = Arc::new(Health::default());
    health.set_database_ok(true);
    let wake = Arc::new(Notify::new());
    let mapper = Mapper::load(&client).await?;

    let listener = crate::http::bind(options.http_addr).await?;
    tracing::info!(addr = %listener.local_addr()?, "http server listening");
    let http = tokio::spawn(crate::http::serve(
        listener,
        health.clone(),
        keys.clone(),
        shutdown.clone(),
    ));

    let dispatcher = crate::delivery::dispatcher::Dispatcher::new(
        crate::delivery::dispatcher::DispatcherConfig::new(database.clone()),
        keys.clone(),
        wake.clone(),
    );
    let dispatch_shutdown = CancellationToken::new();
    let dispatch = tokio::spawn(dispatcher.run(dispatch_shutdown.clone()));

    let jobs = tokio::spawn(periodic_jobs(
        database.clone(),
        options.slot.clone(),
        keys.clone(),
        health.clone(),
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
        database: database.clone(),
        client: crate::store::connect(&database).await?,
        system_id: system_id.clone(),
        durable: durable_tx,
        wake,
        store_failed: store_failed.clone(),
        backfill: crate::backfill::Windows::new(chunks),
    };
    let writer = tokio::spawn(writer.run(items_rx));

    let supervised = supervise_stream(
        &options,
        &database,
        &replication,
        items_tx,
        durable_rx,
        system_id,
        store_failed,
        &health,
        &shutdown,
    )
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

#[allow(clippy::too_many_arguments)]
async fn supervise_stream(
    options: &CommonOptions,
    database: &crate::tls::Database,
    replication: &crate::tls::Database,
    items: mpsc::Sender<StreamItem>,
    durable: watch::Receiver<Lsn>,
    system_id: Arc<OnceLock<String>>,
    store_failed: Arc<Notify>,
    health: &Health,
    shutdown: &CancellationToken,
) -> Result<(), DaemonError> {
    let mut delay = Duration::from_millis(250);
    let mut standby_logged = false;
    loop {
        if shutdown.is_cancelled() {
            return Ok(());
        }
        health.set_stream(StreamState::Connecting);
        let session = stream_session(
            options,
            database,
            replication,
            &items,
            &durable,
            &system_id,
            &store_failed,
            health,
            shutdown,
        )
        .await;
        let retry = match session {
            Ok(()) => return Ok(()),
            Err(SessionError::Stream(StreamError::Shutdown)) => return Ok(()),
            Err(SessionError::Fatal(error)) => {
                tracing::error!(%error, "cannot stream the replication slot");
                shutdown.cancel();
                return Err(error);
            }
            Err(SessionError::SlotBusy) => {
                health.set_stream(StreamState::Standby);
                if !standby_logged {
                    tracing::info!(slot = %options.slot, "slot is active in another process; waiting as standby");
                    standby_logged = true;
                }
                delay = Duration::from_secs(1);
                Duration::from_secs(1)
            }
            Err(SessionError::Stream(error)) => {
                telemetry::REPLICATION_ERRORS
                    .with_label_values(&[error.kind()])
                    .inc();
                tracing::error!(%error, retry_in = ?delay, "replication stream failed; reconnecting");
                standby_logged = false;
                delay
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(retry) => {}
            _ = shutdown.cancelled() => return Ok(()),
        }
        delay = (delay * 2).min(Duration::from_secs(30));
    }
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
        if error.sqlstate() == Some("55006") {
            SessionError::SlotBusy
        } else if error.is_transient() {
            SessionError::Stream(StreamError::Conn(error))
        } else {
            SessionError::Fatal(DaemonError::Replication(error))
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

#[allow(clippy::too_many_arguments)]
async fn stream_session(
    options: &CommonOptions,
    database: &crate::tls::Database,
    replication: &crate::tls::Database,
    items: &mpsc::Sender<StreamItem>,
    durable: &watch::Receiver<Lsn>,
    system_id: &OnceLock<String>,
    store_failed: &Arc<Notify>,
    health: &Health,
    shutdown: &CancellationToken,
) -> Result<(), SessionError> {
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
    let _ = system_id.set(system.system_id.clone());
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
        items,
        durable.clone(),
        shutdown.clone(),
        store_failed.clone(),
    )
    .await?;
    health.set_stream(StreamState::Streaming);
    tracing::info!(slot = %options.slot, %confirmed, "streaming");
    stream.run().await.map_err(SessionError::from)
}

/// Heartbeat, lag and pending gauges, key reload, retention; until shutdown.
async fn periodic_jobs(
    database: crate::tls::Database,
    slot: String,
    keys: KeyRing,
    health: Arc<Health>,
    shutdown: CancellationToken,
) {
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    let mut client: Option<tokio_postgres::Client> = None;
    let mut rounds: u64 = 0;
    let mut heartbeat_warned = false;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.cancelled() => return,
        }
        rounds += 1;
        if client.as_ref().is_none_or(|c| c.is_closed()) {
            client = crate::store::connect(&database).await.ok();
        }
        let Some(c) = client.as_ref() else {
            health.set_database_ok(false);
            continue;
        };
        health.set_database_ok(c.simple_query("").await.is_ok());
        // An idle routed database must not pin WAL: a tiny logical message
        // gives the slot a position to confirm.
        if rounds.is_multiple_of(2) && !heartbeat(c).await && !heartbeat_warned {
            tracing::warn!(
                "heartbeat failed (pg_logical_emit_message needs superuser or REPLICATION); an idle database may hold WAL longer"
            );
            heartbeat_warned = true;
        }
        update_gauges(c, &slot).await;
        reload_keys(c, &keys).await;
        if rounds % 120 == 1 {
            sweep_retention(c).await;
        }
    }
}

/// Emit a heartbeat message into the WAL; false when not permitted or failed.
async fn heartbeat(client: &tokio_postgres::Client) -> bool {
    client
        .execute(
            "SELECT pg_logical_emit_message(false, $1, '')",
            &[&HEARTBEAT_PREFIX],
        )
        .await
        .is_ok()
}

/// Replication lag in bytes and the pending-deliveries gauge.
async fn update_gauges(client: &tokio_postgres::Client, slot: &str) {
    let lag = client
        .query_opt(
            "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn)::int8
               FROM pg_replication_slots WHERE slot_name = $1",
            &[&slot],
        )
        .await;
    if let Ok(Some(row)) = lag
        && let Ok(Some(lag)) = row.try_get::<_, Option<i64>>(0)
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
async fn sweep_retention(client: &tokio_postgres::Client) {
    let Ok(settings) = crate::store::settings::load(client).await else {
        return;
    };
    match crate::store::retention::sweep(client, &settings).await {
        Ok((events, attempts)) if events + attempts > 0 => {
            tracing::info!(events, attempts, "retention removed old rows")
        }
        Ok(_) => {}
        Err(error) => tracing::warn!(%error, "retention sweep failed"),
    }
}
