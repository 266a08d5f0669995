//! walhook running while changes are written: single-row commits at fixed rates
//! and at PostgreSQL's own max rate (commit-to-receipt latency, whether walhook
//! kept up), a receiver that is down for a while (memory, drain after), and one
//! very large transaction (events stored per second, memory).

use std::time::Duration;

use super::{Bench, finish, percentile, wait_for};
use crate::receiver::{HungReceiver, Receiver};
use crate::workload;

/// The live writers' count (BENCH.md: PostgreSQL's max rate with 8 writers).
const WRITERS: usize = 8;
/// Retry schedule of the dead-receiver subscription: short, so the drain after
/// the outage measures walhook rather than the default 5-minute second retry.
const OUTAGE_RETRIES: &str = "{1s,2s,4s,8s,15s,30s,30s,30s,30s}";

/// Single-row commits at `rate` changes/s, or (`None`) at the rate 8 unpaced
/// writers reached on the same database with walhook stopped.
pub async fn live(bench: &mut Bench<'_>, name: &str, rate: Option<f64>) -> anyhow::Result<()> {
    let scenario = match rate {
        Some(r) => format!("live {r}/s"),
        None => "live max".to_owned(),
    };
    let duration = bench.sizes.live;
    eprintln!(
        "-- {scenario}: {WRITERS} writers for {duration:?}, {}",
        bench.binary.label
    );
    let receiver = Receiver::start().await?;
    let db = workload::prepare(
        bench.cluster,
        name,
        &bench.binary.path,
        Some(&receiver.url()),
        1,
        None,
    )
    .await?;
    let target = match rate {
        Some(rate) => rate,
        None => {
            // no slot yet: these writes are not decoded by anyone
            let probe = bench.sizes.max_rate_probe;
            let written = workload::write_live(&db.url, WRITERS, None, probe).await?;
            let max = written as f64 / probe.as_secs_f64();
            bench.add(
                &scenario,
                "PostgreSQL max rate (walhook stopped)",
                max,
                "changes/s",
            );
            max
        }
    };
    let walhook = bench.start_walhook(&db, name).await?;
    let written = workload::write_live(&db.url, WRITERS, Some(target), duration).await?;
    let behind = written.saturating_sub(receiver.distinct() as u64);
    let tail = wait_for("every live event", Duration::from_secs(300), || async {
        anyhow::ensure!(walhook.alive(), "walhook exited");
        Ok(receiver.distinct() as u64 >= written)
    })
    .await?;
    let rss = walhook.peak_rss_mib();
    walhook.stop().await;
    // in receipt order for the CSV (latency over time); sorted for the figures
    let latencies = receiver.take_latencies();
    let mut sorted = latencies.clone();
    sorted.sort_by(f64::total_cmp);
    bench.add(
        &scenario,
        "write rate",
        written as f64 / duration.as_secs_f64(),
        "changes/s",
    );
    bench.add(&scenario, "latency p50", percentile(&sorted, 0.50), "ms");
    bench.add(&scenario, "latency p99", percentile(&sorted, 0.99), "ms");
    bench.add(
        &scenario,
        "latency max",
        sorted.last().copied().unwrap_or(0.0),
        "ms",
    );
    bench.add(
        &scenario,
        "events behind when writes stopped",
        behind as f64,
        "events",
    );
    bench.add(&scenario, "backlog after writes", tail.as_secs_f64(), "s");
    bench.add(&scenario, "peak RSS", rss, "MiB");
    bench.add_latencies(&scenario, latencies);
    finish(bench.cluster, db, name).await
}

pub async fn dead_receiver(bench: &mut Bench<'_>, name: &str) -> anyhow::Result<()> {
    let scenario = "dead receiver";
    let (outage, rate) = (bench.sizes.outage, bench.sizes.outage_rate);
    eprintln!(
        "-- {scenario}: refusing for {outage:?} under {rate}/s, {}",
        bench.binary.label
    );
    let mut receiver = Receiver::start().await?;
    let db = workload::prepare(
        bench.cluster,
        name,
        &bench.binary.path,
        Some(&receiver.url()),
        1,
        Some(OUTAGE_RETRIES),
    )
    .await?;
    let walhook = bench.start_walhook(&db, name).await?;
    receiver.refuse().await;
    let written = workload::write_live(&db.url, WRITERS, Some(rate), outage).await?;
    let rss_outage = walhook.peak_rss_mib();
    receiver.listen().await?;
    let drain = wait_for(
        "the drain after the outage",
        Duration::from_secs(600),
        || async {
            anyhow::ensure!(walhook.alive(), "walhook exited");
            Ok(receiver.distinct() as u64 >= written)
        },
    )
    .await?;
    let rss = walhook.peak_rss_mib();
    walhook.stop().await;
    bench.add(scenario, "changes during outage", written as f64, "changes");
    bench.add(scenario, "peak RSS during outage", rss_outage, "MiB");
    bench.add(scenario, "drain after outage", drain.as_secs_f64(), "s");
    bench.add(scenario, "peak RSS", rss, "MiB");
    finish(bench.cluster, db, name).await
}

/// One large transaction, stored: without a subscriber, or (`hung`) with one
/// whose receiver accepts connections and never answers (its deliveries are
/// deferred; the store's rate must not depend on it).
pub async fn big_transaction(bench: &mut Bench<'_>, name: &str, hung: bool) -> anyhow::Result<()> {
    let scenario = if hung {
        "1 big txn, hung subscriber"
    } else {
        "1 big txn"
    };
    let rows = bench.sizes.big_txn;
    eprintln!(
        "-- {scenario}: {rows} rows in one transaction, {}",
        bench.binary.label
    );
    let db = workload::prepare(bench.cluster, name, &bench.binary.path, None, 0, None).await?;
    let receiver = if hung {
        Some(HungReceiver::start().await?)
    } else {
        None
    };
    if let Some(receiver) = &receiver {
        workload::subscribe(&db, &receiver.url(), 2_000).await?;
    }
    let walhook = bench.start_walhook(&db, name).await?;
    db.client
        .batch_execute(&format!(
            "INSERT INTO directory.software_statements (organisation_id, client_name, description)
             SELECT (SELECT organisation_id FROM bench_orgs WHERE n = 0), 'big ' || g,
                    'one row of a large transaction'
               FROM generate_series(1, {rows}) g"
        ))
        .await?;
    let total = rows as i64;
    let stored = wait_for("every event stored", Duration::from_secs(900), || async {
        anyhow::ensure!(walhook.alive(), "walhook exited");
        tokio::time::sleep(Duration::from_millis(450)).await;
        Ok(workload::events(&db.client).await? >= total)
    })
    .await?;
    let rss = walhook.peak_rss_mib();
    walhook.stop().await;
    bench.add(
        scenario,
        "events stored",
        total as f64 / stored.as_secs_f64(),
        "events/s",
    );
    bench.add(scenario, "peak RSS", rss, "MiB");
    finish(bench.cluster, db, name).await
}
