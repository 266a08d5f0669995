//! The scenarios of BENCH.md, each on a database of its own in the run's
//! cluster, with its own slot, receiver and walhook process. Every scenario
//! returns figures; the drain scenarios also measure their references (the
//! pg_recvlogical ceiling, the naive peer) on copies of the same slot.

use std::future::Future;
use std::time::{Duration, Instant};

use walhook::local_cluster::LocalCluster;

use crate::Options;
use crate::receiver::Receiver;
use crate::references;
use crate::walhook_process::WalhookProcess;
use crate::workload::{self, Database};

/// Scenario sizes: the BENCH.md ones, or tiny ones for `--smoke`.
pub struct Sizes {
    pub backlog: usize,
    pub naive_changes: usize,
    pub live: Duration,
    pub live_rates: [Option<f64>; 3],
    pub fanout_changes: usize,
    pub outage: Duration,
    pub big_txn: usize,
}

impl Sizes {
    pub fn new(smoke: bool) -> Sizes {
        if smoke {
            Sizes {
                backlog: 2_000,
                naive_changes: 200,
                live: Duration::from_secs(2),
                live_rates: [Some(200.0), Some(500.0), None],
                fanout_changes: 200,
                outage: Duration::from_secs(3),
                big_txn: 10_000,
            }
        } else {
            Sizes {
                backlog: 100_000,
                naive_changes: 20_000,
                live: Duration::from_secs(30),
                live_rates: [Some(1_000.0), Some(5_000.0), None],
                fanout_changes: 10_000,
                outage: Duration::from_secs(60),
                big_txn: 1_000_000,
            }
        }
    }
}

/// One measured figure.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Figure {
    pub scenario: String,
    pub name: &'static str,
    pub value: f64,
    pub unit: &'static str,
}

/// Figures and raw latencies of one run.
#[derive(Debug, Default, serde::Serialize)]
pub struct RunResult {
    pub figures: Vec<Figure>,
    /// (scenario, commit-to-receipt latencies in ms, in receipt order)
    #[serde(skip)]
    pub latencies: Vec<(String, Vec<f64>)>,
}

impl RunResult {
    fn add(&mut self, scenario: &str, name: &'static str, value: f64, unit: &'static str) {
        eprintln!("   {scenario:<14} {name:<28} {value:>12.1} {unit}");
        self.figures.push(Figure {
            scenario: scenario.to_owned(),
            name,
            value,
            unit,
        });
    }
}

/// The live writers' count (BENCH.md: PostgreSQL's max rate with 8 writers).
const WRITERS: usize = 8;
/// Retry schedule of the dead-receiver subscription: short, so the drain after
/// the outage measures walhook rather than the default 5-minute second retry.
const OUTAGE_RETRIES: &str = "{1s,2s,4s,8s,15s,30s,30s,30s,30s}";

pub async fn run_all(
    options: &Options,
    cluster: &LocalCluster,
    run: usize,
) -> anyhow::Result<RunResult> {
    let sizes = Sizes::new(options.smoke);
    let mut result = RunResult::default();
    let wanted = |name: &str| {
        options
            .only
            .as_ref()
            .is_none_or(|o| o.iter().any(|x| x == name))
    };
    let mut n = 0;
    let mut next_name = |s: &str| {
        n += 1;
        format!("bench_r{run}_{n}_{s}")
    };
    if wanted("drain100") {
        drain(
            options,
            cluster,
            &next_name("drain100"),
            &sizes,
            100,
            &mut result,
        )
        .await?;
    }
    if wanted("drain1") {
        drain(
            options,
            cluster,
            &next_name("drain1"),
            &sizes,
            1,
            &mut result,
        )
        .await?;
    }
    if wanted("latency") {
        for rate in sizes.live_rates {
            let label = match rate {
                Some(r) => format!("live {r}/s"),
                None => "live max".to_owned(),
            };
            live(
                options,
                cluster,
                &next_name("live"),
                &label,
                rate,
                &sizes,
                &mut result,
            )
            .await?;
        }
    }
    if wanted("fanout") {
        fanout(options, cluster, &next_name("fanout"), &sizes, &mut result).await?;
    }
    if wanted("dead") {
        dead_receiver(options, cluster, &next_name("dead"), &sizes, &mut result).await?;
    }
    if wanted("bigtxn") {
        big_transaction(options, cluster, &next_name("bigtxn"), &sizes, &mut result).await?;
    }
    Ok(result)
}

/// Poll `check` every 50 ms until true; error after `timeout`.
async fn wait_for<F, Fut>(what: &str, timeout: Duration, mut check: F) -> anyhow::Result<Duration>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<bool>>,
{
    let started = Instant::now();
    while !check().await? {
        anyhow::ensure!(
            started.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(started.elapsed())
}

/// Start walhook on `db` (slot named after the database) and wait until it streams.
async fn start_walhook(
    options: &Options,
    db: &Database,
    slot: &str,
) -> anyhow::Result<WalhookProcess> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let url = format!("{}?application_name=walhook", db.url);
    let process = WalhookProcess::start(&options.walhook, &url, slot, port)?;
    let http = reqwest::Client::new();
    let ready = format!("http://127.0.0.1:{port}/readyz");
    wait_for("walhook to stream", Duration::from_secs(60), || async {
        Ok(http
            .get(&ready)
            .send()
            .await
            .is_ok_and(|r| r.status().is_success()))
    })
    .await?;
    Ok(process)
}

/// Start walhook on a written backlog and time it until the receiver has
/// `total` distinct deliveries and all are recorded `succeeded`; returns the
/// seconds taken and walhook's peak RSS in MiB.
async fn drain_backlog(
    options: &Options,
    db: &Database,
    slot: &str,
    receiver: &Receiver,
    total: usize,
) -> anyhow::Result<(f64, f64)> {
    let started = Instant::now();
    let walhook = start_walhook(options, db, slot).await?;
    wait_for(
        "every delivery received",
        Duration::from_secs(900),
        || async { Ok(receiver.distinct() >= total) },
    )
    .await?;
    wait_for(
        "every delivery recorded",
        Duration::from_secs(300),
        || async { Ok(workload::succeeded(&db.client).await? >= total as i64) },
    )
    .await?;
    let elapsed = started.elapsed().as_secs_f64();
    let rss = walhook.peak_rss_mib();
    walhook.stop();
    Ok((elapsed, rss))
}

/// Drop the scenario's database (walhook stopped first).
async fn finish(cluster: &LocalCluster, name: &str) -> anyhow::Result<()> {
    let admin = workload::connect(&cluster.url("postgres")).await?;
    admin
        .execute(
            "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE database = $1",
            &[&name],
        )
        .await?;
    admin
        .batch_execute(&format!("DROP DATABASE {name} WITH (FORCE)"))
        .await?;
    Ok(())
}

async fn drain(
    options: &Options,
    cluster: &LocalCluster,
    name: &str,
    sizes: &Sizes,
    per_txn: usize,
    result: &mut RunResult,
) -> anyhow::Result<()> {
    let scenario = format!("drain {per_txn}-row");
    eprintln!("-- {scenario}: {} changes", sizes.backlog);
    let receiver = Receiver::start().await?;
    let db = workload::prepare(cluster, name, Some(&receiver.url()), 1, None).await?;
    start_walhook(options, &db, name).await?.stop(); // creates the slot
    workload::write_backlog(&db, sizes.backlog, per_txn).await?;
    let end_lsn = workload::current_lsn(&db.client).await?;

    references::copy_slot(&db, name, "ceiling", "pgoutput").await?;
    let ceiling = references::ceiling_seconds(cluster, &db, "ceiling", &end_lsn)?;
    references::drop_slot(&db, "ceiling").await;
    let ceiling_rate = sizes.backlog as f64 / ceiling;

    let naive_rate = match (&options.python, per_txn) {
        (Some(python), 100) => {
            references::copy_slot(&db, name, "naive", "test_decoding").await?;
            let naive_receiver = Receiver::start().await?;
            let rate = references::naive_rate(
                python,
                &db,
                "naive",
                &naive_receiver.url(),
                sizes.naive_changes,
            )?;
            references::drop_slot(&db, "naive").await;
            Some(rate)
        }
        _ => None,
    };

    let total = sizes.backlog;
    let (elapsed, rss) = drain_backlog(options, &db, name, &receiver, total).await?;
    let rate = total as f64 / elapsed;
    result.add(&scenario, "walhook", rate, "events/s");
    result.add(
        &scenario,
        "pg_recvlogical ceiling",
        ceiling_rate,
        "changes/s",
    );
    result.add(
        &scenario,
        "walhook / ceiling",
        100.0 * rate / ceiling_rate,
        "%",
    );
    if let Some(naive) = naive_rate {
        result.add(&scenario, "naive peer", naive, "changes/s");
        result.add(&scenario, "walhook / naive", rate / naive, "x");
    }
    result.add(&scenario, "peak RSS", rss, "MiB");
    drop(db);
    finish(cluster, name).await
}

async fn live(
    options: &Options,
    cluster: &LocalCluster,
    name: &str,
    scenario: &str,
    rate: Option<f64>,
    sizes: &Sizes,
    result: &mut RunResult,
) -> anyhow::Result<()> {
    eprintln!("-- {scenario}: {WRITERS} writers for {:?}", sizes.live);
    let receiver = Receiver::start().await?;
    let db = workload::prepare(cluster, name, Some(&receiver.url()), 1, None).await?;
    let walhook = start_walhook(options, &db, name).await?;
    let written = workload::write_live(&db.url, WRITERS, rate, sizes.live).await?;
    let tail = wait_for("every live event", Duration::from_secs(300), || async {
        Ok(receiver.distinct() as u64 >= written)
    })
    .await?;
    let rss = walhook.peak_rss_mib();
    walhook.stop();
    // in receipt order for the CSV (latency over time); sorted for the figures
    let latencies = receiver.take_latencies();
    let mut sorted = latencies.clone();
    sorted.sort_by(f64::total_cmp);
    result.add(
        scenario,
        "write rate",
        written as f64 / sizes.live.as_secs_f64(),
        "changes/s",
    );
    result.add(scenario, "latency p50", percentile(&sorted, 0.50), "ms");
    result.add(scenario, "latency p99", percentile(&sorted, 0.99), "ms");
    result.add(
        scenario,
        "latency max",
        sorted.last().copied().unwrap_or(0.0),
        "ms",
    );
    result.add(scenario, "backlog after writes", tail.as_secs_f64(), "s");
    result.add(scenario, "peak RSS", rss, "MiB");
    result.latencies.push((scenario.to_owned(), latencies));
    drop(db);
    finish(cluster, name).await
}

async fn fanout(
    options: &Options,
    cluster: &LocalCluster,
    name: &str,
    sizes: &Sizes,
    result: &mut RunResult,
) -> anyhow::Result<()> {
    const SUBSCRIPTIONS: usize = 10;
    let scenario = "fan-out x10";
    eprintln!("-- {scenario}: {} changes", sizes.fanout_changes);
    let receiver = Receiver::start().await?;
    let db = workload::prepare(cluster, name, Some(&receiver.url()), SUBSCRIPTIONS, None).await?;
    start_walhook(options, &db, name).await?.stop();
    workload::write_backlog(&db, sizes.fanout_changes, 100).await?;
    let total = sizes.fanout_changes * SUBSCRIPTIONS;
    let (elapsed, rss) = drain_backlog(options, &db, name, &receiver, total).await?;
    result.add(
        scenario,
        "deliveries",
        total as f64 / elapsed,
        "deliveries/s",
    );
    result.add(scenario, "peak RSS", rss, "MiB");
    drop(db);
    finish(cluster, name).await
}

async fn dead_receiver(
    options: &Options,
    cluster: &LocalCluster,
    name: &str,
    sizes: &Sizes,
    result: &mut RunResult,
) -> anyhow::Result<()> {
    let scenario = "dead receiver";
    eprintln!(
        "-- {scenario}: refusing for {:?} under 1,000/s",
        sizes.outage
    );
    let mut receiver = Receiver::start().await?;
    let db = workload::prepare(
        cluster,
        name,
        Some(&receiver.url()),
        1,
        Some(OUTAGE_RETRIES),
    )
    .await?;
    let walhook = start_walhook(options, &db, name).await?;
    receiver.refuse().await;
    let rate = if options.smoke { 200.0 } else { 1_000.0 };
    let written = workload::write_live(&db.url, WRITERS, Some(rate), sizes.outage).await?;
    let rss_outage = walhook.peak_rss_mib();
    receiver.listen().await?;
    let drain = wait_for(
        "the drain after the outage",
        Duration::from_secs(600),
        || async { Ok(receiver.distinct() as u64 >= written) },
    )
    .await?;
    let rss = walhook.peak_rss_mib();
    walhook.stop();
    result.add(scenario, "changes during outage", written as f64, "changes");
    result.add(scenario, "peak RSS during outage", rss_outage, "MiB");
    result.add(scenario, "drain after outage", drain.as_secs_f64(), "s");
    result.add(scenario, "peak RSS", rss, "MiB");
    drop(db);
    finish(cluster, name).await
}

async fn big_transaction(
    options: &Options,
    cluster: &LocalCluster,
    name: &str,
    sizes: &Sizes,
    result: &mut RunResult,
) -> anyhow::Result<()> {
    let scenario = "1 big txn";
    eprintln!("-- {scenario}: {} rows in one transaction", sizes.big_txn);
    let db = workload::prepare(cluster, name, None, 0, None).await?;
    let walhook = start_walhook(options, &db, name).await?;
    db.client
        .batch_execute(&format!(
            "INSERT INTO directory.software_statements (organisation_id, client_name, description)
             SELECT (SELECT organisation_id FROM bench_orgs WHERE n = 0), 'big ' || g,
                    'one row of a large transaction'
               FROM generate_series(1, {}) g",
            sizes.big_txn
        ))
        .await?;
    let total = sizes.big_txn as i64;
    let stored = wait_for("every event stored", Duration::from_secs(900), || async {
        tokio::time::sleep(Duration::from_millis(450)).await;
        Ok(workload::events(&db.client).await? >= total)
    })
    .await?;
    let rss = walhook.peak_rss_mib();
    walhook.stop();
    result.add(
        scenario,
        "events stored",
        total as f64 / stored.as_secs_f64(),
        "events/s",
    );
    result.add(scenario, "peak RSS", rss, "MiB");
    drop(db);
    finish(cluster, name).await
}

/// The `q` quantile of sorted `values` (nearest rank).
pub fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}
