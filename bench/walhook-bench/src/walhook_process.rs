//! The walhook daemon under test: a `--release` binary started as a child
//! process with default settings, and its peak RSS (the kernel's `VmHWM`).

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use tokio::process::{Child, Command};

pub struct WalhookProcess {
    child: Child,
    pid: u32,
}

impl WalhookProcess {
    pub fn start(
        binary: &Path,
        database_url: &str,
        slot: &str,
        http_port: u16,
    ) -> std::io::Result<Self> {
        let child = Command::new(binary)
            .arg("run")
            .env("WALHOOK_DATABASE_URL", database_url)
            .env("WALHOOK_SLOT", slot)
            .env("WALHOOK_HTTP_ADDR", format!("127.0.0.1:{http_port}"))
            .env("WALHOOK_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()?;
        let pid = child.id().unwrap_or(0);
        Ok(WalhookProcess { child, pid })
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Still running (not exited, not a zombie waiting to be reaped).
    pub fn alive(&self) -> bool {
        std::fs::read_to_string(format!("/proc/{}/stat", self.pid))
            .ok()
            .and_then(|s| Some(s[s.rfind(')')? + 1..].split_whitespace().next()? != "Z"))
            .unwrap_or(false)
    }

    /// Peak resident set size so far, in MiB.
    pub fn peak_rss_mib(&self) -> f64 {
        status_kib(self.pid, "VmHWM:") as f64 / 1024.0
    }

    /// Stop with SIGTERM (graceful), waiting up to 20 s, then SIGKILL.
    pub async fn stop(mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.pid.to_string()])
            .status()
            .await;
        if tokio::time::timeout(Duration::from_secs(20), self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.kill().await;
        }
    }
}

/// `walhook migrate` with `binary` on `database_url`: each binary under test
/// sets up the schema (and first signing key) it expects.
pub async fn migrate(binary: &Path, database_url: &str) -> anyhow::Result<()> {
    let out = Command::new(binary)
        .arg("migrate")
        .env("WALHOOK_DATABASE_URL", database_url)
        .env("WALHOOK_LOG", "warn")
        .stdin(Stdio::null())
        .output()
        .await?;
    anyhow::ensure!(
        out.status.success(),
        "{} migrate failed: {}",
        binary.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

/// A `/proc/<pid>/status` figure in KiB (0 when unreadable).
fn status_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix(field))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
        })
        .unwrap_or(0)
}
