//! The walhook daemon under test: the `--release` binary started as a child
//! process with default settings, and its peak RSS (the kernel's `VmHWM`).

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub struct WalhookProcess {
    child: Child,
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
            .spawn()?;
        Ok(WalhookProcess { child })
    }

    /// Peak resident set size so far, in MiB.
    pub fn peak_rss_mib(&self) -> f64 {
        status_kib(self.child.id(), "VmHWM:") as f64 / 1024.0
    }

    /// Stop with SIGTERM (graceful), waiting up to 20 s.
    pub fn stop(mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        for _ in 0..200 {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for WalhookProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A `/proc/<pid>/status` figure in KiB (0 when unreadable).
pub fn status_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix(field))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
        })
        .unwrap_or(0)
}
