//! `walhook-bench`: the scenarios of BENCH.md against a throwaway cluster, with
//! the pg_recvlogical decoding ceiling and the naive Python peer measured in the
//! same run. Prints a markdown table (median and spread over runs) and writes
//! per-run JSON, latency CSV and an SVG latency plot to `--out`.
//!
//! `cargo build --release && target/release/walhook-bench --runs 3` (or `bench/run.sh`).

mod receiver;
mod references;
mod report;
mod scenarios;
mod walhook_process;
mod workload;

use std::path::PathBuf;

use clap::Parser;
use walhook::local_cluster::{LocalCluster, LocalClusterOptions};

#[derive(Debug, Parser)]
#[command(name = "walhook-bench", about = "Measure walhook as BENCH.md says")]
pub struct Options {
    /// Tiny sizes: checks the benchmark works (seconds), measures nothing.
    #[arg(long)]
    pub smoke: bool,
    /// Runs of every scenario (the table shows median and spread).
    #[arg(long, default_value_t = 1)]
    pub runs: usize,
    /// Only these scenarios: drain100, drain1, latency, fanout, dead, bigtxn.
    #[arg(long, value_delimiter = ',')]
    pub only: Option<Vec<String>>,
    /// Where JSON, CSV and SVG go.
    #[arg(long, default_value = "bench/out")]
    pub out: PathBuf,
    /// The walhook binary under test (default: next to this one).
    #[arg(long, default_value_os_t = beside_this_binary("walhook"))]
    pub walhook: PathBuf,
    /// Python with psycopg2 and requests for the naive peer; skipped when absent.
    #[arg(long)]
    pub python: Option<PathBuf>,
}

fn beside_this_binary(name: &str) -> PathBuf {
    std::env::current_exe()
        .map(|p| p.with_file_name(name))
        .unwrap_or_else(|_| PathBuf::from(name))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let options = Options::parse();
    anyhow::ensure!(
        options.walhook.exists(),
        "walhook binary not found at {} (cargo build --release)",
        options.walhook.display()
    );
    std::fs::create_dir_all(&options.out)?;
    let cluster = tokio::task::spawn_blocking(|| {
        LocalCluster::start(&LocalClusterOptions {
            prefix: "walhook-bench",
            extra_conf: vec![
                "shared_buffers = 512MB".into(),
                "max_wal_size = 4GB".into(),
                "max_connections = 200".into(),
            ],
        })
    })
    .await??;
    eprintln!(
        "cluster on port {} under {}; {} cores",
        cluster.port(),
        cluster.dir().display(),
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    let mut runs = Vec::new();
    for run in 0..options.runs {
        eprintln!("== run {} of {}", run + 1, options.runs);
        let result = scenarios::run_all(&options, &cluster, run).await?;
        report::write_run(&options.out, run, &result)?;
        runs.push(result);
    }
    let table = report::table(&runs);
    std::fs::write(options.out.join("table.md"), &table)?;
    println!("{table}");
    tokio::task::spawn_blocking(move || drop(cluster)).await?;
    Ok(())
}
