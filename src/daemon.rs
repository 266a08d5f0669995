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

mod periodic;
mod session;
mod slot_guard;
pub mod slot_recreate;
mod stages;

use std::sync::{Arc, OnceLock};

use tokio::sync::{Notify, mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::config::{CommonOptions, ConfigError};
use crate::delivery::KeyRing;
use crate::error::{StatementError, during};
use crate::http::Health;
use crate::mapping::Mapper;
use crate::pipeline::{ITEMS_CAPACITY, Writer};
use crate::replication::conn::ConnError;
use crate::replication::lsn::Lsn;
use crate::replication::slot::{self, PreflightError};
use crate::replication::stream::StreamItem;
use crate::store::migrate::{self, MigrateError};
use crate::store::settings::Settings;
use crate::telemetry;
use crate::tls::ConnectConfig;
use periodic::{PeriodicContext, periodic_jobs};
use session::{StreamContext, supervise_stream};
use stages::Stages;

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

/// Run until shutdown is requested or a fatal error occurs: check and load
/// what the stages need, start them, run the slot loop under supervision,
/// then stop everything in order.
pub async fn run(options: CommonOptions, shutdown: CancellationToken) -> Result<(), DaemonError> {
    telemetry::init();
    let database = options.database()?;
    let replication = options.replication()?;
    let loaded = load(&options, &database, &shutdown).await?;
    let health = Arc::new(Health::default());
    health.set_database_ok(true);
    let running = start(&options, &database, loaded, &health, &shutdown).await?;
    let Running {
        mut stages,
        recorder,
        jobs,
        dispatch_shutdown,
        stream,
    } = running;
    let stream = supervise_stream(StreamContext {
        options: &options,
        database: &database,
        replication: &replication,
        items: stream.items,
        durable: stream.durable,
        confirmable: stream.confirmable,
        materialised: stream.materialised,
        system_id: stream.system_id,
        store_failed: stream.store_failed,
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
    let dispatched = stop(stages, dispatch_shutdown, &shutdown, [recorder, jobs]).await;
    match (supervised, dispatched) {
        (Err(error), _) => Err(error),
        (Ok(()), Err(error)) => Err(error),
        (Ok(()), Ok(())) => Ok(()),
    }
}

/// What the stages start from, read from the database before any starts.
struct Loaded {
    keys: KeyRing,
    settings: watch::Receiver<Settings>,
    mapper: Mapper,
}

/// Check the schema and the server, keep the publication in step with the
/// routes, and read the keys, settings, routes and subscriptions.
async fn load(
    options: &CommonOptions,
    database: &ConnectConfig,
    shutdown: &CancellationToken,
) -> Result<Loaded, DaemonError> {
    let client = crate::store::connect(database).await?;
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
    let settings = crate::store::settings::watch(
        database,
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
    Ok(Loaded {
        keys,
        settings,
        mapper,
    })
}

/// The started stages, and what the slot loop needs to feed them.
struct Running {
    stages: Stages,
    /// Records durable positions before they are confirmed.
    recorder: tokio::task::JoinHandle<()>,
    jobs: tokio::task::JoinHandle<()>,
    /// Stops the dispatcher, after the writer has drained.
    dispatch_shutdown: CancellationToken,
    stream: StreamLinks,
}

/// The slot loop's ends of the channels to the writer and the position
/// recorder.
struct StreamLinks {
    items: mpsc::Sender<StreamItem>,
    durable: watch::Receiver<Lsn>,
    confirmable: watch::Receiver<Lsn>,
    materialised: watch::Receiver<Lsn>,
    system_id: Arc<OnceLock<String>>,
    store_failed: Arc<Notify>,
}

/// Start the HTTP server, the dispatcher, the position recorder, the
/// periodic jobs, the backfill worker and the event writer.
async fn start(
    options: &CommonOptions,
    database: &ConnectConfig,
    loaded: Loaded,
    health: &Arc<Health>,
    shutdown: &CancellationToken,
) -> Result<Running, DaemonError> {
    let Loaded {
        keys,
        settings,
        mapper,
    } = loaded;
    let wake = Arc::new(Notify::new());
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
    let deferrals = crate::delivery::deferrals::Deferrals::new(first_attempt_jobs.slow.clone());
    let materialiser = tokio::spawn(deferrals.clone().materialise(
        crate::store::ReconnectingClient::new(database.clone()),
        settings.clone(),
        wake.clone(),
        shutdown.clone(),
    ));
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
            crate::store::connect(database).await?,
        ),
        system_id: system_id.clone(),
        positions: crate::delivery::positions::Positions::new(durable_tx, materialised_tx),
        first_attempts,
        wake,
        store_failed: store_failed.clone(),
        backfill: crate::backfill::Windows::new(chunks),
        deferrals,
    };
    let writer = tokio::spawn(writer.run(items_rx));
    Ok(Running {
        stages: Stages {
            writer: Some(writer),
            dispatch: Some(dispatch),
            backfills: Some(backfills),
            materialiser: Some(materialiser),
            http: Some(http),
        },
        recorder,
        jobs,
        dispatch_shutdown,
        stream: StreamLinks {
            items: items_tx,
            durable: durable_rx,
            confirmable: confirmable_rx,
            materialised: materialised_rx,
            system_id,
            store_failed,
        },
    })
}

/// Stop in order, once the slot loop is down (its items sender dropped): the
/// writer drains and stores what it has; then deliveries park; then the rest.
/// The dispatcher's error, if it ended with one.
async fn stop(
    mut stages: Stages,
    dispatch_shutdown: CancellationToken,
    shutdown: &CancellationToken,
    helpers: [tokio::task::JoinHandle<()>; 2],
) -> Result<(), DaemonError> {
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
    if let Some(materialiser) = stages.materialiser.take() {
        let _ = materialiser.await;
    }
    for helper in helpers {
        let _ = helper.await;
    }
    if let Some(http) = stages.http.take() {
        let _ = http.await;
    }
    match dispatched {
        Ok(Err(error)) => Err(DaemonError::StageDied {
            stage: "dispatcher",
            why: error.to_string(),
        }),
        _ => Ok(()),
    }
}
