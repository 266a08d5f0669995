//! `walhook run`: starts the stages and supervises the replication stream.
//!
//! Tasks: the slot loop (reconnecting with backoff; waiting as a standby while
//! another instance holds the slot), the event writer, the dispatcher, the HTTP
//! server, the backfill worker, and small periodic jobs (heartbeat, lag, key
//! reload, retention).
//! Shutdown (SIGTERM/SIGINT) cancels one token: the slot loop stops reading and
//! reports the durable position, the writer stores what it has, the dispatcher
//! finishes or parks in-flight requests, and the process exits 0.
//!
//! No half-alive process: if a stage dies (the writer, the dispatcher with its
//! recorder, the backfill worker, the HTTP server), `/readyz` says so, the
//! replication connection is dropped, the others stop, and the process exits
//! non-zero with the reason, so a supervisor restarts it. When a SQL session
//! finds the server shutting down, the replication connection is closed at
//! once (the walsender would otherwise wait for a confirmation that cannot be
//! stored) and resumes from the confirmed position when the server is back.
//!
//! A slot is never lost silently (docs/slot-safety.md): each session checks
//! the slot against walhook's record of it before streaming, positions reach
//! the server only once recorded ([`slot_guard`]), and an invalidated,
//! missing or replaced slot ends the process non-zero with a message naming
//! the slot, the last confirmed position and `walhook slot recreate`
//! ([`slot_recreate`]).

mod slot_guard;
pub mod slot_recreate;

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
use crate::replication::slot::identity::{self, Verdict};
use crate::replication::slot::{self, PreflightError};
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
    #[error(
        "the {stage} stopped unexpectedly ({why}); walhook exits so that its supervisor restarts it, and resumes from the slot's confirmed position"
    )]
    StageDied { stage: &'static str, why: String },
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
    match slot::wal_keep_warning(&client).await {
        Ok(Some(warning)) => tracing::warn!("{warning}"),
        Ok(None) => {}
        Err(error) => {
            tracing::debug!(error = %crate::error::describe(&error), "cannot read max_slot_wal_keep_size")
        }
    }
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

    // told by the writer when a batch cannot be stored, and by any session
    // that finds the server shutting down: the slot loop drops its session
    let store_failed = Arc::new(Notify::new());
    let mut dispatch_config = crate::delivery::dispatcher::DispatcherConfig::new(database.clone());
    dispatch_config.server_stopping = store_failed.clone();
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

    let (durable_tx, durable_rx) = watch::channel(Lsn(0));
    // what the slot loop may confirm: durable positions once recorded
    let (confirmable_tx, confirmable_rx) = watch::channel(Lsn(0));
    let recorder = tokio::spawn(slot_guard::record_positions(
        crate::store::ReconnectingClient::new(database.clone()),
        options.slot.clone(),
        durable_rx.clone(),
        confirmable_tx,
        store_failed.clone(),
        shutdown.clone(),
    ));
    let (materialised_tx, materialised_rx) = watch::channel(Lsn(0));
    let jobs = tokio::spawn(periodic_jobs(
        PeriodicContext {
            database: database.clone(),
            slot: options.slot.clone(),
            keys: keys.clone(),
            health: health.clone(),
            settings: settings.clone(),
            durable: durable_rx.clone(),
            materialised: materialised_rx.clone(),
        },
        shutdown.clone(),
    ));

    let (items_tx, items_rx) = mpsc::channel::<StreamItem>(ITEMS_CAPACITY);
    let system_id = Arc::new(OnceLock::new());
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
        positions: crate::delivery::positions::Positions::new(durable_tx, materialised_tx),
        first_attempts,
        wake,
        store_failed: store_failed.clone(),
        backfill: crate::backfill::Windows::new(chunks),
    };
    let writer = tokio::spawn(writer.run(items_rx));

    let mut stages = Stages {
        writer: Some(writer),
        dispatch: Some(dispatch),
        backfills: Some(backfills),
        http: Some(http),
    };
    let stream = supervise_stream(StreamContext {
        options: &options,
        database: &database,
        replication: &replication,
        items: items_tx,
        durable: durable_rx,
        confirmable: confirmable_rx,
        materialised: materialised_rx,
        system_id,
        store_failed,
        health: &health,
        shutdown: &shutdown,
        streamed_before: std::sync::atomic::AtomicBool::new(false),
    });
    let mut stream = Box::pin(stream);
    let supervised = loop {
        tokio::select! {
            supervised = &mut stream => break supervised,
            // a stage that ends while stopping does its job; one that ends
            // before has died: the stream is dropped with its future (the
            // replication connection closes, the slot keeps its position)
            error = stages.first_to_end() => {
                if shutdown.is_cancelled() {
                    continue;
                }
                tracing::error!(%error, "a stage died; stopping");
                health.set_failed(error.to_string());
                shutdown.cancel();
                break Err(error);
            }
        }
    };
    // with it go the replication connection and the items sender, so the
    // writer drains
    drop(stream);

    // Stop order: the stream is down (items sender dropped), so the writer
    // drains and stores what it has; then deliveries park; then the rest.
    if let Some(writer) = stages.writer.take() {
        let _ = writer.await;
    }
    dispatch_shutdown.cancel();
    let dispatched = match stages.dispatch.take() {
        Some(dispatch) => dispatch.await,
        None => Ok(Ok(())),
    };
    shutdown.cancel();
    if let Some(backfills) = stages.backfills.take() {
        let _ = backfills.await;
    }
    let _ = jobs.await;
    let _ = recorder.await;
    if let Some(http) = stages.http.take() {
        let _ = http.await;
    }
    match (supervised, dispatched) {
        (Err(error), _) => Err(error),
        (Ok(()), Ok(Err(error))) => Err(DaemonError::StageDied {
            stage: "dispatcher",
            why: error.to_string(),
        }),
        (Ok(()), _) => Ok(()),
    }
}

/// The stages that run beside the slot loop, until one ends (taken out of
/// here when it does, so it is not awaited twice).
struct Stages {
    writer: Option<tokio::task::JoinHandle<()>>,
    dispatch:
        Option<tokio::task::JoinHandle<Result<(), crate::delivery::dispatcher::DeliveryError>>>,
    backfills: Option<tokio::task::JoinHandle<()>>,
    http: Option<tokio::task::JoinHandle<Result<(), std::io::Error>>>,
}

impl Stages {
    /// Wait until a stage ends. While the slot loop runs none should: the
    /// one that did died, and this says which and why.
    async fn first_to_end(&mut self) -> DaemonError {
        fn why<T, E: std::fmt::Display>(
            ended: Result<Result<T, E>, tokio::task::JoinError>,
        ) -> String {
            match ended {
                Ok(Ok(_)) => "it returned".to_owned(),
                Ok(Err(error)) => error.to_string(),
                Err(error) => error.to_string(),
            }
        }
        let ok = |r: Result<(), tokio::task::JoinError>| r.map(Ok::<(), String>);
        let (stage, why) = tokio::select! {
            ended = async { self.writer.as_mut().expect("running").await }, if self.writer.is_some() => {
                self.writer = None;
                ("event writer", why(ok(ended)))
            }
            ended = async { self.dispatch.as_mut().expect("running").await }, if self.dispatch.is_some() => {
                self.dispatch = None;
                ("dispatcher", why(ended))
            }
            ended = async { self.backfills.as_mut().expect("running").await }, if self.backfills.is_some() => {
                self.backfills = None;
                ("backfill worker", why(ok(ended)))
            }
            ended = async { self.http.as_mut().expect("running").await }, if self.http.is_some() => {
                self.http = None;
                ("HTTP server", why(ended))
            }
            else => std::future::pending().await,
        };
        DaemonError::StageDied { stage, why }
    }
}

/// What the slot loop works with, for as long as it runs. Dropping it (when
/// the loop ends) drops the items sender, which lets the writer drain.
struct StreamContext<'a> {
    options: &'a CommonOptions,
    database: &'a crate::tls::ConnectConfig,
    replication: &'a crate::tls::ConnectConfig,
    items: mpsc::Sender<StreamItem>,
    durable: watch::Receiver<Lsn>,
    /// Durable positions once recorded in `walhook.slot_identity`: what the
    /// slot loop confirms.
    confirmable: watch::Receiver<Lsn>,
    /// Up to where this process's first attempts all have rows.
    materialised: watch::Receiver<Lsn>,
    system_id: Arc<OnceLock<String>>,
    store_failed: Arc<Notify>,
    health: &'a Health,
    shutdown: &'a CancellationToken,
    /// Whether this process streamed the slot in an earlier session.
    streamed_before: std::sync::atomic::AtomicBool,
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
    let transient = |e: PreflightError| {
        if e.is_transient() {
            SessionError::Stream(StreamError::Conn(ConnError::Protocol(e.to_string())))
        } else {
            SessionError::Fatal(e.into())
        }
    };
    let slot_name = &options.slot;
    let state = slot::preflight(&sql, slot_name).await.map_err(transient)?;
    let recorded = identity::load(&sql, slot_name)
        .await
        .map_err(|e| transient(e.into()))?;
    let verdict = identity::judge(slot_name, &state, recorded.as_ref())
        .map_err(|e| SessionError::Fatal(e.into()))?;
    let mut conn = ReplicationConnection::connect(replication).await?;
    let system = conn.identify_system().await?;
    let _ = context.system_id.set(system.system_id.clone());
    let confirmed = match verdict {
        Verdict::Same { confirmed } => confirmed,
        Verdict::Adopt { confirmed } => {
            identity::record(&sql, slot_name, &system.system_id, confirmed)
                .await
                .map_err(|e| transient(e.into()))?;
            tracing::info!(slot = %slot_name, %confirmed, "recorded the slot walhook consumes (walhook.slot_identity)");
            confirmed
        }
        Verdict::Create => {
            let at = conn.create_slot(slot_name).await?;
            tracing::info!(slot = %slot_name, %at, "created replication slot");
            if identity::visible(&sql, slot_name)
                .await
                .map_err(|e| transient(e.into()))?
            {
                identity::record(&sql, slot_name, &system.system_id, at)
                    .await
                    .map_err(|e| transient(e.into()))?;
            } else {
                tracing::warn!(slot = %slot_name, "the slot is not visible over --database-url (the replication connection reaches another server): walhook cannot check it and keeps no record of it");
            }
            at
        }
    };
    if options.slot_failover {
        match slot::ensure_failover(&sql, &mut conn, slot_name).await {
            Ok(true) => {
                tracing::info!(slot = %slot_name, "the slot is a failover slot now (standbys with sync_replication_slots = on keep a copy)")
            }
            Ok(false) => {}
            Err(slot::FailoverError::Preflight(e)) => return Err(transient(e)),
            Err(slot::FailoverError::Replication(e)) => return Err(e.into()),
        }
    }
    // the start of a gap, should the server say the slot was invalidated
    let last_confirmed = recorded
        .as_ref()
        .map(|r| r.confirmed_lsn)
        .or(Some(confirmed));
    let invalidated = |error: StreamError| -> SessionError {
        if let StreamError::Conn(conn) = &error
            && let Some(what) = slot::invalidation(conn)
        {
            return SessionError::Fatal(
                PreflightError::SlotInvalidated {
                    slot: slot_name.clone(),
                    confirmed: last_confirmed,
                    what,
                }
                .into(),
            );
        }
        SessionError::from(error)
    };
    sweep_owed(context, &sql, confirmed).await?;
    let stream = SlotStream::start(
        conn,
        slot_name,
        &options.publication,
        confirmed,
        StreamLinks {
            items: &context.items,
            durable: context.confirmable.clone(),
            shutdown: context.shutdown.clone(),
            store_failed: context.store_failed.clone(),
        },
    )
    .await
    .map_err(invalidated)?;
    health.set_stream(StreamState::Streaming);
    tracing::info!(slot = %slot_name, %confirmed, "streaming");
    stream.run().await.map_err(invalidated)
}

/// Before streaming: pending rows for the deliveries that stored events owe
/// and that have none (left in memory by an instance that stopped; see
/// [`crate::store::obligations`]). On this process's first session the mark
/// then moves to the slot's confirmed position. On a later one (another
/// instance may have streamed meanwhile), the events this process still
/// owes from memory (between its materialised and durable positions) are
/// left to it, and the mark moves with this process's own progress.
async fn sweep_owed(
    context: &StreamContext<'_>,
    sql: &tokio_postgres::Client,
    confirmed: Lsn,
) -> Result<(), SessionError> {
    use std::sync::atomic::Ordering;
    let slot = &context.options.slot;
    let own = context
        .streamed_before
        .load(Ordering::Acquire)
        .then(|| (*context.materialised.borrow(), *context.durable.borrow()));
    let swept = crate::store::obligations::sweep(sql, slot, own, confirmed)
        .await
        .map_err(|e| {
            SessionError::Stream(StreamError::Conn(ConnError::Protocol(format!(
                "writing the pending rows of owed deliveries failed: {}",
                crate::error::describe(&e)
            ))))
        })?;
    context.streamed_before.store(true, Ordering::Release);
    if swept > 0 {
        telemetry::DELIVERIES_MATERIALISED
            .with_label_values(&["sweep"])
            .inc_by(swept);
        tracing::info!(
            swept,
            "deliveries owed by stored events (left in memory by an instance that stopped) now have pending rows"
        );
    }
    Ok(())
}

/// What the periodic jobs read.
struct PeriodicContext {
    database: crate::tls::ConnectConfig,
    slot: String,
    keys: KeyRing,
    health: Arc<Health>,
    settings: watch::Receiver<crate::store::settings::Settings>,
    durable: watch::Receiver<Lsn>,
    materialised: watch::Receiver<Lsn>,
}

/// Heartbeat, lag and pending gauges, the delivery mark, key reload,
/// retention; until shutdown.
async fn periodic_jobs(context: PeriodicContext, shutdown: CancellationToken) {
    let PeriodicContext {
        database,
        slot,
        keys,
        health,
        settings,
        durable,
        materialised,
    } = context;
    let mut tick = tokio::time::interval(Duration::from_secs(2));
    let mut client = crate::store::ReconnectingClient::new(database);
    let mut rounds: u64 = 0;
    let mut heartbeat_warned = false;
    let mut mark_stored = Lsn(0);
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
        let mark = *materialised.borrow();
        if mark > mark_stored {
            match crate::store::obligations::advance(c, &slot, mark).await {
                Ok(()) => mark_stored = mark,
                Err(error) => tracing::warn!(%error, "storing the delivery mark failed; retrying"),
            }
        }
        let behind = durable.borrow().0.saturating_sub(mark.0);
        telemetry::DELIVERY_MARK_LAG_BYTES.set(behind.min(i64::MAX as u64) as i64);
        if !rounds.is_multiple_of(3) {
            continue;
        }
        health.set_database_ok(c.simple_query("").await.is_ok());
        // An idle routed database must not pin WAL: a tiny logical message
        // gives the slot a position to confirm.
        if rounds.is_multiple_of(6) && monitor::heartbeat(c).await.is_err() && !heartbeat_warned {
            tracing::warn!(
                "heartbeat failed (pg_logical_emit_message needs superuser or REPLICATION); an idle database may hold WAL longer"
            );
            heartbeat_warned = true;
        }
        update_gauges(c, &slot).await;
        reload_keys(c, &keys).await;
        if rounds % 360 == 3 {
            let settings = settings.borrow().clone();
            sweep_retention(c, &settings).await;
        }
    }
}

/// Replication lag in bytes, the slot's cost and record, and the
/// pending-deliveries gauge.
async fn update_gauges(client: &tokio_postgres::Client, slot: &str) {
    if let Ok(status) = monitor::slot_status(client, slot).await {
        if let Some(lag) = status.lag_bytes {
            telemetry::REPLICATION_LAG_BYTES.set(lag);
        }
        slot_guard::set_gauges(&status);
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
