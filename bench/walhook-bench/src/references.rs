//! The decoding references a drain is divided by, measured in the same run on a
//! copy of walhook's slot taken before walhook drains it: `pg_recvlogical`
//! decoding with pgoutput to /dev/null (the ceiling: PostgreSQL's own decoding
//! speed) and the naive Python peer (`bench/naive_peer.py`) on a test_decoding
//! copy. The first reference, PostgreSQL's write rate with walhook stopped, is
//! timed where the backlog is written (`workload::write_backlog`).

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::process::Command;

use walhook::local_cluster::LocalCluster;

use crate::workload::Database;

/// Copy walhook's slot `source` (still holding the backlog) as `copy` with `plugin`.
pub async fn copy_slot(
    db: &Database,
    source: &str,
    copy: &str,
    plugin: &str,
) -> anyhow::Result<()> {
    db.client
        .execute(
            "SELECT pg_copy_logical_replication_slot($1, $2, false, $3)",
            &[&source, &copy, &plugin],
        )
        .await?;
    Ok(())
}

pub async fn drop_slot(db: &Database, slot: &str) {
    let _ = db
        .client
        .execute("SELECT pg_drop_replication_slot($1)", &[&slot])
        .await;
}

/// Seconds `pg_recvlogical` takes to decode slot `slot` up to `end_lsn`.
pub async fn ceiling_seconds(
    cluster: &LocalCluster,
    db: &Database,
    slot: &str,
    end_lsn: &str,
) -> anyhow::Result<f64> {
    let started = Instant::now();
    let out = Command::new(cluster.bin("pg_recvlogical"))
        .args(["-d", &db.url, "--slot", slot, "--start", "--no-loop"])
        .args(["-o", "proto_version=1", "-o", "publication_names=walhook"])
        .args(["--endpos", end_lsn, "-f", "/dev/null"])
        .output()
        .await?;
    anyhow::ensure!(
        out.status.success(),
        "pg_recvlogical failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(started.elapsed().as_secs_f64())
}

/// Changes/s of the naive peer posting `changes` changes from slot `slot`.
pub async fn naive_rate(
    python: &Path,
    db: &Database,
    slot: &str,
    receiver_url: &str,
    changes: usize,
) -> anyhow::Result<f64> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../naive_peer.py");
    let child = Command::new(python)
        .arg(script)
        .args(["--dsn", &db.url, "--slot", slot, "--url", receiver_url])
        .args(["--changes", &changes.to_string()])
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let out = tokio::time::timeout(Duration::from_secs(600), child.wait_with_output())
        .await
        .map_err(|_| anyhow::anyhow!("the naive peer did not finish within 600 s"))??;
    anyhow::ensure!(out.status.success(), "naive peer failed");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let posted = report["changes"].as_f64().unwrap_or(0.0);
    let seconds = report["seconds"].as_f64().unwrap_or(f64::INFINITY);
    Ok(posted / seconds)
}
