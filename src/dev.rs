//! `walhook dev`: the embedded quickstart.
//!
//! Everything runs in this one process except PostgreSQL itself: a throwaway
//! cluster ([`crate::local_cluster`]), migrated and loaded with an example
//! (`--example directory`, the default, or `iam`) and its routes; a demo
//! receiver that verifies every signature; a subscription to it; the daemon
//! ([`crate::daemon::run`]) in-process; then the example's sample changes
//! (`sample`). Each delivery is printed as it arrives. Ctrl-C
//! (or, with `--once`, the last sample event verified) stops the daemon, the
//! receiver and the cluster, and removes the cluster's folder.

mod receiver;
mod sample;

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::config::{CommonOptions, DevArgs};
use crate::delivery::verifier::Verifier;
use crate::local_cluster::{LocalCluster, LocalClusterOptions};
use sample::{Sample, SampleStep};

/// How long `--once` waits for every sample event before giving up.
const ONCE_DEADLINE: Duration = Duration::from_secs(120);

/// Run the quickstart until `shutdown` (Ctrl-C), or with `--once` until every
/// sample event was delivered and verified.
pub async fn run(
    common: CommonOptions,
    args: DevArgs,
    shutdown: CancellationToken,
) -> anyhow::Result<ExitCode> {
    println!("walhook dev: starting a throwaway PostgreSQL cluster ...");
    let cluster = tokio::task::spawn_blocking(|| {
        LocalCluster::start(&LocalClusterOptions {
            prefix: "walhook-dev",
            ..Default::default()
        })
    })
    .await??;
    let result = quickstart(&cluster, common, args, shutdown).await;
    println!(
        "stopping PostgreSQL and removing {}",
        cluster.dir().display()
    );
    tokio::task::spawn_blocking(move || drop(cluster)).await?;
    result
}

/// Prepare the database, start the receiver and the daemon, write the
/// sample changes, then print deliveries until done.
async fn quickstart(
    cluster: &LocalCluster,
    common: CommonOptions,
    args: DevArgs,
    shutdown: CancellationToken,
) -> anyhow::Result<ExitCode> {
    let sample = Sample::of(args.example);
    let url = cluster.url("postgres");
    println!(
        "  postgres on 127.0.0.1:{} (data, socket and log under {})",
        cluster.port(),
        cluster.dir().display()
    );
    let client = prepare_database(&url, sample).await?;
    let http_addr = available(common.http_addr)?;
    let (receiver_task, mut deliveries) = start_receiver(&client, http_addr).await?;

    let daemon_stop = CancellationToken::new();
    let options = CommonOptions {
        database_url: Some(url.clone()),
        replication_url: None,
        http_addr,
        ..common
    };
    let mut daemon = tokio::spawn(crate::daemon::run(options, daemon_stop.clone()));
    tokio::select! {
        ready = wait_ready(http_addr) => ready?,
        ended = &mut daemon => anyhow::bail!("walhook stopped while starting: {:?}", ended?),
    }
    println!("  walhook streaming; metrics and JWKS on http://{http_addr}");
    let console_token = crate::store::api_tokens::create(&client, "walhook-dev").await?;
    println!("  console: http://{http_addr}/console#token={console_token}\n");

    for step in sample.steps {
        println!("> {}", step.what);
        client.batch_execute(step.sql).await?;
    }
    let watched = tokio::select! {
        watched = watch_deliveries(&mut deliveries, sample, args.once, &shutdown, || {
            print_hints(cluster, sample, &url, http_addr)
        }) => watched,
        ended = &mut daemon => anyhow::bail!("walhook stopped unexpectedly: {:?}", ended?),
    };
    daemon_stop.cancel();
    match tokio::time::timeout(Duration::from_secs(15), &mut daemon).await {
        Ok(ended) => ended??,
        Err(_) => daemon.abort(),
    }
    receiver_task.abort();
    Ok(if !args.once || watched.all_verified() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Migrate the cluster, make a signing key, load the example and allow
/// plain-HTTP targets (the demo receiver is on loopback).
async fn prepare_database(url: &str, sample: &Sample) -> anyhow::Result<tokio_postgres::Client> {
    let database = crate::tls::ConnectConfig::parse(url)?;
    let mut client = crate::store::connect(&database).await?;
    crate::store::migrate::migrate(&mut client).await?;
    crate::store::keys::ensure_key(&client).await?;
    client.batch_execute(sample.schema).await?;
    client
        .batch_execute(
            "INSERT INTO walhook.settings VALUES ('allow_insecure_targets', 'true')
             ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
        )
        .await?;
    println!("  migrated; {} loaded ({})", sample.what, sample.file);
    Ok(client)
}

/// The demo receiver on a free loopback port, subscribed to every event; its
/// verified (or refused) deliveries come out of the channel.
async fn start_receiver(
    client: &tokio_postgres::Client,
    http_addr: SocketAddr,
) -> anyhow::Result<(
    tokio::task::JoinHandle<()>,
    mpsc::UnboundedReceiver<receiver::Delivery>,
)> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let receiver_url = receiver::url(listener.local_addr()?);
    let secret: String = client
        .query_one(
            "INSERT INTO walhook.subscriptions (name, url) VALUES ('walhook dev receiver', $1)
             RETURNING secret",
            &[&receiver_url],
        )
        .await?
        .get(0);
    let (deliveries_tx, deliveries) = mpsc::unbounded_channel();
    let verifier = Verifier::new(secret, format!("http://{http_addr}/.well-known/jwks.json"));
    let receiver_task = receiver::spawn(listener, verifier, deliveries_tx);
    println!(
        "  demo receiver at {receiver_url} checks v1 (HMAC), v1a (Ed25519) and RFC 9421 signatures"
    );
    Ok((receiver_task, deliveries))
}

/// What the receiver saw of the sample.
struct Watched {
    complete: bool,
    failures: usize,
}

impl Watched {
    fn all_verified(&self) -> bool {
        self.complete && self.failures == 0
    }
}

/// Print each delivery as it arrives. With `once`, stop when every sample
/// event was verified (or after [`ONCE_DEADLINE`]); otherwise print the hints
/// then and go on until `shutdown`.
async fn watch_deliveries(
    deliveries: &mut mpsc::UnboundedReceiver<receiver::Delivery>,
    sample: &Sample,
    once: bool,
    shutdown: &CancellationToken,
    hints: impl Fn(),
) -> Watched {
    let expected = sample.expected_events();
    println!("\nwaiting for {expected} events ...\n");
    let deadline = tokio::time::sleep(if once {
        ONCE_DEADLINE
    } else {
        Duration::from_secs(10 * 365 * 86_400)
    });
    tokio::pin!(deadline);
    let mut verified = Vec::new();
    let mut failures = 0usize;
    let mut said_done = false;
    loop {
        tokio::select! {
            Some(d) = deliveries.recv() => {
                match &d.verdict {
                    Ok(kid) => {
                        println!(
                            "  {:<37} revision {:<8} signatures ok (kid {})  {}",
                            d.event_type, d.revision, short(kid), d.apiresource
                        );
                        verified.push(d.event_type.clone());
                    }
                    Err(why) => {
                        failures += 1;
                        println!(
                            "  {:<37} attempt {} NOT VERIFIED: {why}  {}",
                            d.event_type, d.attempt, d.apiresource
                        );
                    }
                }
                if !said_done && sample_complete(sample.steps, &verified) {
                    said_done = true;
                    println!("\nall {expected} sample events delivered and verified.");
                    if once {
                        break;
                    }
                    hints();
                }
            }
            _ = shutdown.cancelled() => break,
            _ = &mut deadline => {
                println!("\ngave up after {ONCE_DEADLINE:?}: {} of {expected} sample events verified", verified.len());
                break;
            }
        }
    }
    Watched {
        complete: sample_complete(sample.steps, &verified),
        failures,
    }
}

/// Every event the sample declares was verified (as a multiset of types).
fn sample_complete(steps: &[SampleStep], verified: &[String]) -> bool {
    let mut want: Vec<&str> = steps
        .iter()
        .flat_map(|s| s.events.iter().copied())
        .collect();
    for got in verified {
        if let Some(i) = want.iter().position(|w| w == got) {
            want.swap_remove(i);
        }
    }
    want.is_empty()
}

fn short(kid: &str) -> &str {
    kid.get(..12).unwrap_or(kid)
}

/// `requested`, or a free loopback port when that one is taken (a `walhook run`
/// may already be serving the default address on this machine).
fn available(requested: SocketAddr) -> std::io::Result<SocketAddr> {
    match std::net::TcpListener::bind(requested) {
        Ok(l) => l.local_addr(),
        Err(_) => std::net::TcpListener::bind("127.0.0.1:0")?.local_addr(),
    }
}

async fn wait_ready(http_addr: SocketAddr) -> anyhow::Result<()> {
    let client = reqwest::Client::new();
    let url = format!("http://{http_addr}/readyz");
    for _ in 0..600 {
        if let Ok(r) = client.get(&url).send().await
            && r.status().is_success()
        {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    anyhow::bail!("walhook was not ready after 60 s ({url})")
}

fn print_hints(cluster: &LocalCluster, sample: &Sample, url: &str, http_addr: SocketAddr) {
    println!(
        "\nmake more changes by hand and watch them arrive here:\n\n  {} {url}",
        cluster.bin("psql").display()
    );
    for hint in sample.hints.iter().chain([
        &"SELECT e.type, d.status, d.attempts FROM walhook.deliveries d JOIN walhook.events e ON e.id = d.event_id;",
    ]) {
        println!("  postgres=# {hint}");
    }
    println!(
        "\nmetrics: http://{http_addr}/metrics   keys: http://{http_addr}/.well-known/jwks.json\n\
         Ctrl-C stops everything and removes the cluster.\n"
    );
}
