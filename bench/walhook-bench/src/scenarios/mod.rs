//! The scenarios of BENCH.md, each on a database of its own in the run's
//! cluster, with its own slot, receiver and walhook process(es). Every scenario
//! returns figures tagged with the binary under test; the drain scenarios also
//! measure their references (PostgreSQL's write rate with walhook stopped, the
//! pg_recvlogical ceiling, the naive peer) next to the drain, and the CPU each
//! side spent per delivered event.

mod drain;
mod hung;
mod live;

use std::future::Future;
use std::time::{Duration, Instant};

use walhook::local_cluster::LocalCluster;

use crate::walhook_process::WalhookProcess;
use crate::workload::{self, Database};
use crate::{Binary, Options};

/// Scenario sizes: the BENCH.md ones, or tiny ones for `--smoke`.
pub struct Sizes {
    pub backlog: usize,
    pub naive_changes: usize,
    pub live: Duration,
    pub live_rates: [Option<f64>; 3],
    /// How long 8 unpaced writers run (walhook stopped) to find PostgreSQL's
    /// max single-row rate for the `live max` scenario.
    pub max_rate_probe: Duration,
    pub fanout_changes: usize,
    pub outage: Duration,
    pub outage_rate: f64,
    pub big_txn: usize,
    /// How long a drain waits after its end for the slot to confirm the
    /// position the server was at then.
    pub slot_catch_up: Duration,
}

impl Sizes {
    pub fn new(smoke: bool) -> Sizes {
        if smoke {
            Sizes {
                backlog: 2_000,
                naive_changes: 200,
                live: Duration::from_secs(2),
                live_rates: [Some(200.0), Some(500.0), None],
                max_rate_probe: Duration::from_secs(1),
                fanout_changes: 200,
                outage: Duration::from_secs(3),
                outage_rate: 200.0,
                big_txn: 10_000,
                slot_catch_up: Duration::from_secs(3),
            }
        } else {
            Sizes {
                backlog: 100_000,
                naive_changes: 20_000,
                live: Duration::from_secs(30),
                live_rates: [Some(1_000.0), Some(5_000.0), None],
                max_rate_probe: Duration::from_secs(10),
                fanout_changes: 10_000,
                outage: Duration::from_secs(60),
                outage_rate: 1_000.0,
                big_txn: 1_000_000,
                slot_catch_up: Duration::from_secs(180),
            }
        }
    }
}

/// One measured figure of one binary under test.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Figure {
    pub scenario: String,
    /// The label of the walhook binary the figure belongs to.
    pub walhook: String,
    pub name: &'static str,
    pub value: f64,
    pub unit: &'static str,
}

/// Figures and raw latencies of one run.
#[derive(Debug, Default, serde::Serialize)]
pub struct RunResult {
    pub figures: Vec<Figure>,
    /// (series name, commit-to-receipt latencies in ms, in receipt order)
    #[serde(skip)]
    pub latencies: Vec<(String, Vec<f64>)>,
}

/// One scenario of one run for one binary: where it runs and where its
/// figures go.
pub struct Bench<'a> {
    pub options: &'a Options,
    pub cluster: &'a LocalCluster,
    pub binary: &'a Binary,
    pub sizes: &'a Sizes,
    /// Label latency series with the binary (more than one under test).
    pub compare: bool,
    /// The cluster's postmaster, for PostgreSQL's CPU.
    pub postmaster: u32,
    pub result: &'a mut RunResult,
}

impl Bench<'_> {
    fn add(&mut self, scenario: &str, name: &'static str, value: f64, unit: &'static str) {
        eprintln!(
            "   {:<10} {scenario:<16} {name:<36} {:>12} {unit}",
            self.binary.label,
            crate::report::num(value)
        );
        self.result.figures.push(Figure {
            scenario: scenario.to_owned(),
            walhook: self.binary.label.clone(),
            name,
            value,
            unit,
        });
    }

    /// This binary's figure `name` of `scenario` measured earlier in this run.
    fn earlier(&self, scenario: &str, name: &str) -> Option<f64> {
        self.result
            .figures
            .iter()
            .find(|f| f.scenario == scenario && f.name == name && f.walhook == self.binary.label)
            .map(|f| f.value)
    }

    fn add_latencies(&mut self, scenario: &str, latencies: Vec<f64>) {
        let series = if self.compare {
            format!("{}: {scenario}", self.binary.label)
        } else {
            scenario.to_owned()
        };
        self.result.latencies.push((series, latencies));
    }

    /// Start walhook on `db` (slot `slot`) without waiting; returns it and its
    /// HTTP port.
    fn spawn_walhook(&self, db: &Database, slot: &str) -> anyhow::Result<(WalhookProcess, u16)> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let url = format!("{}?application_name=walhook", db.url);
        let process = WalhookProcess::start(&self.binary.path, &url, slot, port)?;
        Ok((process, port))
    }

    /// Start walhook on `db` (slot `slot`) and wait until it streams.
    async fn start_walhook(&self, db: &Database, slot: &str) -> anyhow::Result<WalhookProcess> {
        let (process, port) = self.spawn_walhook(db, slot)?;
        let http = reqwest::Client::new();
        let ready = format!("http://127.0.0.1:{port}/readyz");
        wait_for("walhook to stream", Duration::from_secs(60), || async {
            anyhow::ensure!(process.alive(), "walhook exited while starting");
            Ok(http
                .get(&ready)
                .send()
                .await
                .is_ok_and(|r| r.status().is_success()))
        })
        .await?;
        Ok(process)
    }
}

/// The steps of a run, in order; each runs once per binary under test.
#[derive(Clone, Copy)]
enum Step {
    Drain(usize),
    Live(Option<f64>),
    Fanout,
    TwoInstances,
    HungNeighbour,
    Dead,
    /// One large transaction; with a hung subscriber when true.
    BigTxn(bool),
}

impl Step {
    /// The `--only` name selecting this step.
    fn only_name(self) -> &'static str {
        match self {
            Step::Drain(100) => "drain100",
            Step::Drain(_) => "drain1",
            Step::Live(_) => "latency",
            Step::Fanout => "fanout",
            Step::TwoInstances => "two",
            Step::HungNeighbour => "hung",
            Step::Dead => "dead",
            Step::BigTxn(false) => "bigtxn",
            Step::BigTxn(true) => "bigtxnhung",
        }
    }

    /// Whether `--only` name `name` selects this step: its name, or for one
    /// live rate alone `live<rate>` (`live1000`, `livemax`).
    fn selected_by(self, name: &str) -> bool {
        name == self.only_name()
            || match self {
                Step::Live(Some(rate)) => name == format!("live{rate}"),
                Step::Live(None) => name == "livemax",
                _ => false,
            }
    }

    fn db_name(self) -> &'static str {
        match self {
            Step::Live(_) => "live",
            other => other.only_name(),
        }
    }
}

pub async fn run_all(
    options: &Options,
    binaries: &[Binary],
    cluster: &LocalCluster,
    run: usize,
) -> anyhow::Result<RunResult> {
    let sizes = Sizes::new(options.smoke);
    let mut result = RunResult::default();
    let admin = workload::connect(&cluster.url("postgres")).await?;
    let postmaster = crate::cpu::postmaster_of(workload::backend_pid(&admin).await?)?;
    drop(admin);
    // alternate the order from run to run so drift over time hits every binary
    let mut order: Vec<&Binary> = binaries.iter().collect();
    if run % 2 == 1 {
        order.reverse();
    }
    // the hung neighbour right after the drain it is divided by, so both see
    // about the same machine
    let mut steps = vec![Step::Drain(100), Step::HungNeighbour, Step::Drain(1)];
    steps.extend(sizes.live_rates.iter().map(|&rate| Step::Live(rate)));
    steps.extend([
        Step::Fanout,
        Step::TwoInstances,
        Step::Dead,
        Step::BigTxn(false),
        Step::BigTxn(true),
    ]);
    let wanted = |step: Step| {
        options
            .only
            .as_ref()
            .is_none_or(|o| o.iter().any(|x| step.selected_by(x)))
    };
    let mut n = 0;
    for step in steps.into_iter().filter(|&s| wanted(s)) {
        for binary in &order {
            n += 1;
            let name = format!("bench_r{run}_{n}_{}", step.db_name());
            let mut bench = Bench {
                options,
                cluster,
                binary,
                sizes: &sizes,
                compare: binaries.len() > 1,
                postmaster,
                result: &mut result,
            };
            match step {
                Step::Drain(per_txn) => drain::drain(&mut bench, &name, per_txn).await?,
                Step::Live(rate) => live::live(&mut bench, &name, rate).await?,
                Step::Fanout => drain::fanout(&mut bench, &name).await?,
                Step::TwoInstances => drain::two_instances(&mut bench, &name).await?,
                Step::HungNeighbour => hung::hung_neighbour(&mut bench, &name).await?,
                Step::Dead => live::dead_receiver(&mut bench, &name).await?,
                Step::BigTxn(hung) => live::big_transaction(&mut bench, &name, hung).await?,
            }
        }
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

/// Drop the scenario's database (walhook stopped first).
async fn finish(cluster: &LocalCluster, db: Database, name: &str) -> anyhow::Result<()> {
    drop(db);
    let admin = workload::connect(&cluster.url("postgres")).await?;
    // A walsender can outlive its stopped walhook for a while (one still
    // decoding a 1M-row transaction notices the closed socket only when it
    // next sends): end it, then drop the slot once it is released.
    let mut tries = 0;
    loop {
        admin
            .execute(
                "SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots
                  WHERE database = $1 AND active_pid IS NOT NULL",
                &[&name],
            )
            .await?;
        match admin
            .execute(
                "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE database = $1",
                &[&name],
            )
            .await
        {
            Ok(_) => break,
            Err(error) if tries < 20 => {
                tries += 1;
                eprintln!("   (dropping the slot: {error}; again in 0.5 s)");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(error) => return Err(error.into()),
        }
    }
    admin
        .batch_execute(&format!("DROP DATABASE {name} WITH (FORCE)"))
        .await?;
    Ok(())
}

/// The `q` quantile of sorted `values` (nearest rank).
pub fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}
