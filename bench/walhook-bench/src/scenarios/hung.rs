//! The hung neighbour: the 100-row backlog drain with one more subscription,
//! whose receiver accepts connections and never answers (each request ends in
//! its 2 s timeout). Its deliveries keep failing; what it must not do is slow
//! the store or hold the slot's confirmed position back for everyone. So the
//! figures are the store's rate, the healthy receiver's drain, and how far
//! the slot is behind at the end, each also as a ratio to the plain drain of
//! the same binary in the same run (measured just before, so that drift of a
//! shared machine over the run stays out of the ratio as far as it can).

use super::drain::{self, Drained};
use super::{Bench, finish};
use crate::receiver::{HungReceiver, Receiver};
use crate::workload;

/// The hung subscription's request timeout.
const TIMEOUT_MS: i32 = 2_000;

/// The plain drain the figures are divided by.
const PLAIN: &str = "drain 100-row";

pub async fn hung_neighbour(bench: &mut Bench<'_>, name: &str) -> anyhow::Result<()> {
    let scenario = "hung neighbour";
    let total = bench.sizes.backlog;
    eprintln!(
        "-- {scenario}: {total} changes, one receiver hung, {}",
        bench.binary.label
    );
    let receiver = Receiver::start().await?;
    let hung = HungReceiver::start().await?;
    let db = drain::subscribed(bench, name, &receiver, 1).await?;
    workload::subscribe(&db, &hung.url(), TIMEOUT_MS).await?;
    let write_rate = drain::write_backlog(bench, &db, name, total, 100).await?;
    let drained = drain::drain_backlog(bench, &db, name, &receiver, total, 1).await?;
    let rate = total as f64 / drained.seconds;
    bench.add(scenario, "walhook", rate, "events/s");
    bench.add(
        scenario,
        "write rate (walhook stopped)",
        write_rate,
        "changes/s",
    );
    drain::add_store_and_slot(bench, scenario, &drained, total);
    add_ratios(bench, scenario, &drained, total);
    bench.add(
        scenario,
        "connections to the hung receiver",
        hung.connections() as f64,
        "connections",
    );
    drain::add_cpu(bench, scenario, &drained.cpu, total);
    bench.add(scenario, "peak RSS", drained.peak_rss, "MiB");
    finish(bench.cluster, db, name).await
}

/// The drain's figures over the plain drain's, when that ran in this run. A
/// ratio is left out when the plain figure is at its floor: no bytes behind,
/// or caught up within one poll (50 ms), is "at once", and a ratio over it
/// would only measure the poll.
fn add_ratios(bench: &mut Bench<'_>, scenario: &str, drained: &Drained, total: usize) {
    let figures = [
        (
            "walhook",
            total as f64 / drained.seconds,
            0.0,
            "walhook / drain 100-row",
        ),
        (
            "events stored",
            drained.store_rate(total),
            0.0,
            "stored / drain 100-row",
        ),
        (
            "slot behind at the end",
            drained.slot_behind / 1024.0,
            0.0,
            "slot behind / drain 100-row",
        ),
        (
            "slot catch-up after the end",
            drained.slot_catch_up,
            0.05,
            "slot catch-up / drain 100-row",
        ),
    ];
    for (figure, value, floor, ratio) in figures {
        if let Some(plain) = bench.earlier(PLAIN, figure)
            && plain > floor
        {
            bench.add(scenario, ratio, value / plain, "x");
        }
    }
}
