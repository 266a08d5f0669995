//! Backlog drains: changes written while walhook is stopped (their write rate is
//! the first reference), then walhook started and timed until the receiver has
//! every delivery and every delivery is recorded `succeeded`. One instance (100-
//! and 1-row transactions), ten subscriptions (fan-out), and two instances on
//! one slot (the standby claims backlog with `FOR UPDATE SKIP LOCKED`). Besides
//! the drain's own time, each measures when the last event was stored and how
//! far the slot's confirmed position is behind at the end.

use std::time::{Duration, Instant, SystemTime};

use super::{Bench, finish, wait_for};
use crate::cpu::{CpuMeter, CpuUse};
use crate::receiver::Receiver;
use crate::references;
use crate::workload::{self, Database};

/// What one timed drain measured.
pub(super) struct Drained {
    pub seconds: f64,
    /// From walhook's start to its last batch of events (the store's rate is
    /// events over this).
    pub stored_seconds: f64,
    /// How far the slot's confirmed position was behind the server's WAL
    /// position at the end, in bytes.
    pub slot_behind: f64,
    /// Seconds from the end until the slot confirmed the position the server
    /// was at then, or [`super::Sizes::slot_catch_up`] when it did not within it.
    pub slot_catch_up: f64,
    pub slot_caught_up: bool,
    /// The largest peak RSS of the instances, MiB.
    pub peak_rss: f64,
    pub cpu: CpuUse,
    /// Of the attempts started, the share that took the claim path (stored
    /// `pending`, claimed back) instead of going from memory, in %; None
    /// when a binary does not export `walhook_dispatched_total`.
    pub claimed_share: Option<f64>,
}

impl Drained {
    /// Events stored per second (the drain stored `events` events).
    pub fn store_rate(&self, events: usize) -> f64 {
        events as f64 / self.stored_seconds
    }
}

/// Start `instances` walhook processes on a written backlog and time them until
/// the receiver has `total` distinct deliveries and all are recorded
/// `succeeded`; then how far the slot is behind, until it catches up.
pub(super) async fn drain_backlog(
    bench: &Bench<'_>,
    db: &Database,
    slot: &str,
    receiver: &Receiver,
    total: usize,
    instances: usize,
) -> anyhow::Result<Drained> {
    let started = Instant::now();
    let started_at = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH)?;
    let mut walhooks = Vec::new();
    let mut ports = Vec::new();
    for _ in 0..instances {
        let (walhook, port) = bench.spawn_walhook(db, slot)?;
        walhooks.push(walhook);
        ports.push(port);
    }
    let meter = CpuMeter::start(bench.postmaster, walhooks.iter().map(|w| w.pid()).collect());
    let all_alive = || {
        anyhow::ensure!(
            walhooks.iter().all(|w| w.alive()),
            "walhook exited during the drain"
        );
        Ok(())
    };
    wait_for(
        "every delivery received",
        Duration::from_secs(900),
        || async {
            all_alive()?;
            Ok(receiver.distinct() >= total)
        },
    )
    .await?;
    wait_for(
        "every delivery recorded",
        Duration::from_secs(300),
        || async {
            all_alive()?;
            Ok(workload::succeeded(&db.client).await? >= total as i64)
        },
    )
    .await?;
    let seconds = started.elapsed().as_secs_f64();
    let cpu = meter.stop();
    let (end_lsn, slot_behind) = workload::slot_behind_now(&db.client, slot).await?;
    let end = Instant::now();
    let claimed_share = claimed_share(&ports).await;
    let limit = bench.sizes.slot_catch_up;
    let caught_up = wait_for("the slot to catch up", limit * 2, || async {
        all_alive()?;
        workload::slot_confirmed(&db.client, slot, &end_lsn).await
    });
    let slot_caught_up = match tokio::time::timeout(limit, caught_up).await {
        Ok(waited) => waited.map(|_| true)?,
        Err(_) => false,
    };
    let slot_catch_up = end.elapsed().as_secs_f64().min(limit.as_secs_f64());
    let stored_seconds = workload::last_stored(&db.client).await? - started_at.as_secs_f64();
    let peak_rss = walhooks
        .iter()
        .map(|w| w.peak_rss_mib())
        .fold(0.0, f64::max);
    for walhook in walhooks {
        walhook.stop().await;
    }
    Ok(Drained {
        seconds,
        stored_seconds,
        slot_behind,
        slot_catch_up,
        slot_caught_up,
        peak_rss,
        cpu,
        claimed_share,
    })
}

/// `walhook_dispatched_total` of every instance, by `path`: the claimed
/// share in %. The figure that explains a drain: a claimed delivery costs
/// PostgreSQL about five row writes, one from memory two.
async fn claimed_share(ports: &[u16]) -> Option<f64> {
    let http = reqwest::Client::new();
    let (mut first, mut claimed) = (0.0, 0.0);
    for port in ports {
        let text = http
            .get(format!("http://127.0.0.1:{port}/metrics"))
            .send()
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        for line in text.lines() {
            let value = || line.rsplit(' ').next()?.parse::<f64>().ok();
            if line.starts_with("walhook_dispatched_total{path=\"first\"}") {
                first += value()?;
            } else if line.starts_with("walhook_dispatched_total{path=\"claimed\"}") {
                claimed += value()?;
            }
        }
    }
    (first + claimed > 0.0).then(|| 100.0 * claimed / (first + claimed))
}

/// The claimed share as a figure of `scenario`, when the binary has it.
fn add_claimed_share(bench: &mut Bench<'_>, scenario: &str, drained: &Drained) {
    if let Some(share) = drained.claimed_share {
        bench.add(scenario, "attempts via claims", share, "%");
    }
}

/// The store's rate (the drain stored `events` events) and where the slot
/// stood at the drain's end, as figures of `scenario`.
pub(super) fn add_store_and_slot(
    bench: &mut Bench<'_>,
    scenario: &str,
    drained: &Drained,
    events: usize,
) {
    bench.add(
        scenario,
        "events stored",
        drained.store_rate(events),
        "events/s",
    );
    bench.add(
        scenario,
        "slot behind at the end",
        drained.slot_behind / 1024.0,
        "KiB",
    );
    if !drained.slot_caught_up {
        eprintln!("   (the slot did not catch up within the limit: the figure is the limit)");
    }
    bench.add(
        scenario,
        "slot catch-up after the end",
        drained.slot_catch_up,
        "s",
    );
}

/// CPU per delivered event (µs) of walhook, PostgreSQL (all its processes) and
/// the bench's receiver, and the average load of the first two (% of a core).
pub(super) fn add_cpu(bench: &mut Bench<'_>, scenario: &str, cpu: &CpuUse, events: usize) {
    let per_event = |seconds: f64| seconds * 1e6 / events as f64;
    bench.add(
        scenario,
        "walhook CPU per event",
        per_event(cpu.walhook),
        "µs",
    );
    bench.add(
        scenario,
        "PostgreSQL CPU per event",
        per_event(cpu.postgres),
        "µs",
    );
    bench.add(
        scenario,
        "receiver CPU per event",
        per_event(cpu.bench),
        "µs",
    );
    bench.add(
        scenario,
        "walhook CPU",
        100.0 * cpu.walhook / cpu.wall,
        "% of a core",
    );
    bench.add(
        scenario,
        "PostgreSQL CPU",
        100.0 * cpu.postgres / cpu.wall,
        "% of a core",
    );
}

/// A database with `subscriptions` subscriptions to `receiver` and a backlog
/// ([`write_backlog`]); returns it and PostgreSQL's write rate.
async fn with_backlog(
    bench: &Bench<'_>,
    name: &str,
    receiver: &Receiver,
    subscriptions: usize,
    changes: usize,
    per_txn: usize,
) -> anyhow::Result<(Database, f64)> {
    let db = subscribed(bench, name, receiver, subscriptions).await?;
    let write_rate = write_backlog(bench, &db, name, changes, per_txn).await?;
    Ok((db, write_rate))
}

/// Database `name` prepared for the binary under test, with `subscriptions`
/// subscriptions to `receiver` (default settings).
pub(super) async fn subscribed(
    bench: &Bench<'_>,
    name: &str,
    receiver: &Receiver,
    subscriptions: usize,
) -> anyhow::Result<Database> {
    workload::prepare(
        bench.cluster,
        name,
        &bench.binary.path,
        Some(&receiver.url()),
        subscriptions,
        None,
    )
    .await
}

/// Walhook's slot `slot` created on `db` (walhook started and stopped), then
/// `changes` changes written in `per_txn`-row transactions; returns
/// PostgreSQL's write rate.
pub(super) async fn write_backlog(
    bench: &Bench<'_>,
    db: &Database,
    slot: &str,
    changes: usize,
    per_txn: usize,
) -> anyhow::Result<f64> {
    bench.start_walhook(db, slot).await?.stop().await;
    workload::write_backlog(db, changes, per_txn).await
}

pub async fn drain(bench: &mut Bench<'_>, name: &str, per_txn: usize) -> anyhow::Result<()> {
    let scenario = format!("drain {per_txn}-row");
    let total = bench.sizes.backlog;
    eprintln!("-- {scenario}: {total} changes, {}", bench.binary.label);
    let receiver = Receiver::start().await?;
    let (db, write_rate) = with_backlog(bench, name, &receiver, 1, total, per_txn).await?;
    let end_lsn = workload::current_lsn(&db.client).await?;

    references::copy_slot(&db, name, "ceiling", "pgoutput").await?;
    let ceiling = references::ceiling_seconds(bench.cluster, &db, "ceiling", &end_lsn).await?;
    references::drop_slot(&db, "ceiling").await;
    let ceiling_rate = total as f64 / ceiling;

    let naive_rate = match (&bench.options.python, per_txn) {
        (Some(python), 100) => {
            references::copy_slot(&db, name, "naive", "test_decoding").await?;
            let naive_receiver = Receiver::start().await?;
            let rate = references::naive_rate(
                python,
                &db,
                "naive",
                &naive_receiver.url(),
                bench.sizes.naive_changes,
            )
            .await?;
            references::drop_slot(&db, "naive").await;
            Some(rate)
        }
        _ => None,
    };

    let drained = drain_backlog(bench, &db, name, &receiver, total, 1).await?;
    let rate = total as f64 / drained.seconds;
    bench.add(&scenario, "walhook / write rate", rate / write_rate, "x");
    bench.add(&scenario, "walhook", rate, "events/s");
    bench.add(
        &scenario,
        "write rate (walhook stopped)",
        write_rate,
        "changes/s",
    );
    bench.add(
        &scenario,
        "pg_recvlogical ceiling",
        ceiling_rate,
        "changes/s",
    );
    bench.add(
        &scenario,
        "walhook / ceiling",
        100.0 * rate / ceiling_rate,
        "%",
    );
    if let Some(naive) = naive_rate {
        bench.add(&scenario, "naive peer", naive, "changes/s");
        bench.add(&scenario, "walhook / naive", rate / naive, "x");
    }
    add_store_and_slot(bench, &scenario, &drained, total);
    add_cpu(bench, &scenario, &drained.cpu, total);
    add_claimed_share(bench, &scenario, &drained);
    bench.add(&scenario, "peak RSS", drained.peak_rss, "MiB");
    finish(bench.cluster, db, name).await
}

pub async fn fanout(bench: &mut Bench<'_>, name: &str) -> anyhow::Result<()> {
    const SUBSCRIPTIONS: usize = 10;
    let scenario = "fan-out x10";
    let changes = bench.sizes.fanout_changes;
    eprintln!("-- {scenario}: {changes} changes, {}", bench.binary.label);
    let receiver = Receiver::start().await?;
    let (db, _) = with_backlog(bench, name, &receiver, SUBSCRIPTIONS, changes, 100).await?;
    let total = changes * SUBSCRIPTIONS;
    let drained = drain_backlog(bench, &db, name, &receiver, total, 1).await?;
    bench.add(
        scenario,
        "deliveries",
        total as f64 / drained.seconds,
        "deliveries/s",
    );
    add_cpu(bench, scenario, &drained.cpu, total);
    add_claimed_share(bench, scenario, &drained);
    bench.add(scenario, "peak RSS", drained.peak_rss, "MiB");
    finish(bench.cluster, db, name).await
}

/// Two instances of the binary on one slot and one backlog of 100-row
/// transactions: one streams and stores, both deliver (the standby claims the
/// stored backlog with `FOR UPDATE SKIP LOCKED`).
pub async fn two_instances(bench: &mut Bench<'_>, name: &str) -> anyhow::Result<()> {
    let scenario = "two instances";
    let total = bench.sizes.backlog;
    eprintln!("-- {scenario}: {total} changes, {}", bench.binary.label);
    let receiver = Receiver::start().await?;
    let (db, _) = with_backlog(bench, name, &receiver, 1, total, 100).await?;
    let drained = drain_backlog(bench, &db, name, &receiver, total, 2).await?;
    let rate = total as f64 / drained.seconds;
    bench.add(scenario, "deliveries", rate, "deliveries/s");
    if let Some(one) = bench.earlier("drain 100-row", "walhook") {
        bench.add(scenario, "two / one instance", rate / one, "x");
    }
    let attempts = workload::attempts_per_instance(&db.client).await?;
    let all: i64 = attempts.iter().sum();
    let fewer = if attempts.len() > 1 {
        attempts[attempts.len() - 1]
    } else {
        0
    };
    bench.add(
        scenario,
        "attempts by the less busy instance",
        100.0 * fewer as f64 / all.max(1) as f64,
        "%",
    );
    add_cpu(bench, scenario, &drained.cpu, total);
    add_claimed_share(bench, scenario, &drained);
    bench.add(scenario, "peak RSS", drained.peak_rss, "MiB");
    finish(bench.cluster, db, name).await
}
