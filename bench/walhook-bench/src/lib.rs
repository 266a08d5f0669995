//! `walhook-bench`: the scenarios of BENCH.md against a throwaway cluster, with
//! their references measured in the same run (PostgreSQL's own write rate with
//! walhook stopped, the pg_recvlogical decoding ceiling, the naive Python peer)
//! and the CPU each side spends per delivered event. Prints a markdown table
//! (median and spread over runs) and writes per-run JSON, latency CSV and an SVG
//! latency plot to `--out`.
//!
//! Several walhook binaries can be measured in one run (`--walhook-bin
//! before=PATH --walhook-bin after=PATH`): every scenario runs once per binary,
//! back to back and in alternating order from run to run, so before/after figures
//! come from the same machine state. The table then has one column per binary
//! and the ratio of the last to the first.
//!
//! A workspace member of its own, so the daemon's install and dependencies stay
//! the daemon's: `cargo build --release && target/release/walhook-bench --runs 3`
//! (or `bench/run.sh`).

mod cpu;
mod receiver;
mod references;
mod report;
mod scenarios;
mod walhook_process;
mod workload;

use std::path::PathBuf;

use clap::Parser;
use walhook::local_cluster::{LocalCluster, LocalClusterOptions};

pub use scenarios::{Figure, RunResult};

#[derive(Debug, Parser)]
#[command(name = "walhook-bench", about = "Measure walhook as BENCH.md says")]
pub struct Options {
    /// Tiny sizes: checks the benchmark works (seconds), measures nothing.
    #[arg(long)]
    pub smoke: bool,
    /// Runs of every scenario (the table shows median and spread).
    #[arg(long, default_value_t = 1)]
    pub runs: usize,
    /// Only these scenarios: drain100, drain1, latency (or one rate of it:
    /// live1000, live5000, livemax), fanout, two, hung, dead, bigtxn, bigtxnhung.
    #[arg(long, value_delimiter = ',')]
    pub only: Option<Vec<String>>,
    /// Where JSON, CSV and SVG go.
    #[arg(long, default_value = "bench/out")]
    pub out: PathBuf,
    /// A walhook binary under test, `LABEL=PATH` or `PATH` (labelled by its file
    /// name). Repeat to compare binaries in one run; the first is the baseline.
    /// Default: `walhook` next to this binary.
    #[arg(long = "walhook-bin", alias = "walhook", value_parser = parse_binary)]
    pub walhook_bins: Vec<Binary>,
    /// Python with psycopg2 and requests for the naive peer; skipped when absent.
    #[arg(long)]
    pub python: Option<PathBuf>,
}

/// A walhook binary under test and its label in the figures.
#[derive(Debug, Clone)]
pub struct Binary {
    pub label: String,
    pub path: PathBuf,
}

fn parse_binary(arg: &str) -> Result<Binary, String> {
    let (label, path) = match arg.split_once('=') {
        Some((label, path)) if !label.is_empty() && !label.contains('/') => {
            (label.to_owned(), PathBuf::from(path))
        }
        _ => {
            let path = PathBuf::from(arg);
            let label = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .ok_or_else(|| format!("{arg}: not a file path"))?;
            (label, path)
        }
    };
    if !path.is_file() {
        return Err(format!(
            "walhook binary not found at {} (cargo build --release)",
            path.display()
        ));
    }
    Ok(Binary { label, path })
}

impl Options {
    /// The binaries under test: the ones given, else `walhook` beside this one.
    pub fn binaries(&self) -> anyhow::Result<Vec<Binary>> {
        if !self.walhook_bins.is_empty() {
            let mut labels: Vec<&str> =
                self.walhook_bins.iter().map(|b| b.label.as_str()).collect();
            labels.sort_unstable();
            labels.dedup();
            anyhow::ensure!(
                labels.len() == self.walhook_bins.len(),
                "two --walhook-bin share a label; name them: --walhook-bin before=PATH"
            );
            return Ok(self.walhook_bins.clone());
        }
        let beside = std::env::current_exe()?.with_file_name("walhook");
        parse_binary(&beside.to_string_lossy())
            .map(|b| vec![b])
            .map_err(anyhow::Error::msg)
    }
}

/// Run every scenario `options.runs` times on one throwaway cluster; writes the
/// per-run files and `table.md` to `options.out` and returns the table.
pub async fn run(options: &Options) -> anyhow::Result<String> {
    let binaries = options.binaries()?;
    std::fs::create_dir_all(&options.out)?;
    let cluster = tokio::task::spawn_blocking(|| {
        LocalCluster::start(&LocalClusterOptions {
            prefix: "walhook-bench",
            extra_conf: vec![
                "shared_buffers = 512MB".into(),
                "max_wal_size = 4GB".into(),
                "max_connections = 200".into(),
            ],
            ..Default::default()
        })
    })
    .await??;
    eprintln!(
        "cluster on port {} under {}; {} cores; walhook: {}",
        cluster.port(),
        cluster.dir().display(),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        binaries
            .iter()
            .map(|b| format!("{}={}", b.label, b.path.display()))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let mut runs = Vec::new();
    let outcome = async {
        for run in 0..options.runs {
            eprintln!("== run {} of {}", run + 1, options.runs);
            let result = scenarios::run_all(options, &binaries, &cluster, run).await?;
            report::write_run(&options.out, run, &result)?;
            runs.push(result);
        }
        anyhow::Ok(())
    }
    .await;
    tokio::task::spawn_blocking(move || drop(cluster)).await?;
    outcome?;
    let labels: Vec<&str> = binaries.iter().map(|b| b.label.as_str()).collect();
    let table = report::table(&runs, &labels);
    std::fs::write(options.out.join("table.md"), &table)?;
    Ok(table)
}
