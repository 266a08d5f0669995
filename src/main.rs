//! The `walhook` binary: parse the command line, set up logging, run a command.
#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::Parser;
use tokio_util::sync::CancellationToken;
use walhook::config::{ApiTokensCommand, Cli, Command, KeysCommand, LogFormat, SlotCommand};

/// jemalloc instead of glibc's allocator: events, requests and rows are
/// allocated on one thread and freed on another, where glibc's arenas took a
/// lock per free (about a fifth of walhook's CPU while draining, profiled).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    // the quickstart prints its own story; the daemon's info logs would drown it
    let default_level = match cli.command {
        Command::Dev(_) => "warn",
        _ => "info",
    };
    init_logging(cli.common.log_format, default_level);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    // on the runtime's worker threads, not on this one: the slot stream then
    // hands each change to the writer on the same thread, where from the main
    // thread every hand-over woke a worker
    let outcome = runtime.block_on(async { tokio::spawn(run(cli)).await });
    match outcome.unwrap_or_else(|panicked| std::panic::resume_unwind(panicked.into_panic())) {
        Ok(code) => code,
        Err(error) => {
            tracing::error!("{error:#}");
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let common = cli.common;
    match cli.command {
        Command::Migrate => {
            let mut client = walhook::store::connect(&common.database()?).await?;
            let report = walhook::store::migrate::migrate(&mut client).await?;
            walhook::store::keys::ensure_key(&client).await?;
            println!(
                "walhook schema at version {} (was {})",
                report.to_version, report.from_version
            );
        }
        Command::Run => {
            let shutdown = CancellationToken::new();
            tokio::spawn(cancel_on_signal(shutdown.clone()));
            walhook::daemon::run(common, shutdown).await?;
            tracing::info!("stopped");
        }
        Command::Dev(args) => {
            let shutdown = CancellationToken::new();
            tokio::spawn(cancel_on_signal(shutdown.clone()));
            return walhook::dev::run(common, args, shutdown).await;
        }
        Command::Status(args) => {
            let client = walhook::store::connect(&common.database()?).await?;
            let report = walhook::status::collect(&client, &common.slot).await?;
            if args.json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print!("{}", report.render());
            }
        }
        Command::Keys(KeysCommand::Rotate) => {
            let client = walhook::store::connect(&common.database()?).await?;
            let kid = walhook::store::keys::rotate(&client).await?;
            println!("new current signing key: {kid}");
        }
        Command::Keys(KeysCommand::Retire { kid }) => {
            let client = walhook::store::connect(&common.database()?).await?;
            walhook::store::keys::retire(&client, &kid).await?;
            println!("retired signing key: {kid}");
        }
        Command::Replay(args) => {
            let mut client = walhook::store::connect(&common.database()?).await?;
            let queued = walhook::store::replay::replay(
                &mut client,
                args.subscription,
                args.from_revision,
                args.to_revision,
            )
            .await?;
            println!(
                "queued {queued} deliveries for subscription {}",
                args.subscription
            );
        }
        Command::ApiTokens(command) => {
            let client = walhook::store::connect(&common.database()?).await?;
            api_tokens(&client, command).await?;
        }
        Command::Slot(SlotCommand::Recreate { yes }) => {
            let code = walhook::daemon::slot_recreate::run(&common, yes).await?;
            return Ok(ExitCode::from(code));
        }
        Command::Backfill(args) => {
            let client = walhook::store::connect(&common.database()?).await?;
            return Ok(walhook::backfill::progress::run(
                &client,
                args.subscription,
                &args.table,
                args.where_clause.as_deref(),
                args.rows_per_second,
                args.detach,
            )
            .await?);
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `walhook api-tokens create|list|revoke`.
async fn api_tokens(
    client: &tokio_postgres::Client,
    command: ApiTokensCommand,
) -> anyhow::Result<()> {
    use walhook::store::api_tokens;
    match command {
        ApiTokensCommand::Create { name } => {
            let token = api_tokens::create(client, &name).await?;
            println!("created API token {name}; it is shown once, store it now:");
            println!("{token}");
        }
        ApiTokensCommand::List => {
            for token in api_tokens::list(client).await? {
                println!("{}\t{}", token.name, token.created_at.to_rfc3339());
            }
        }
        ApiTokensCommand::Revoke { name } => {
            api_tokens::revoke(client, &name).await?;
            println!("revoked API token {name}");
        }
    }
    Ok(())
}

/// SIGTERM or SIGINT starts a graceful shutdown; a second one exits at once.
async fn cancel_on_signal(shutdown: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        return;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    tracing::info!("shutting down");
    shutdown.cancel();
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    std::process::exit(130);
}

fn init_logging(format: LogFormat, default_level: &str) {
    // WALHOOK_LOG, else RUST_LOG (e.g. `debug` shows each delivery's
    // prepare, send, decide and record spans), else the default
    let filter = tracing_subscriber::EnvFilter::try_from_env("WALHOOK_LOG")
        .or_else(|_| tracing_subscriber::EnvFilter::try_from_default_env())
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}
