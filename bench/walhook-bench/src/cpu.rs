//! Where the CPU goes during a measured interval, from `/proc/<pid>/stat`
//! (utime + stime, all threads): walhook's processes, PostgreSQL summed over the
//! postmaster and every child (backends, walsenders, autovacuum, background
//! workers; a child that exits is counted through the postmaster's cutime +
//! cstime), and this process (the receiver and the bench's own polling).

use std::sync::OnceLock;
use std::time::Instant;

/// CPU seconds of each side over one interval, and its wall-clock length.
#[derive(Debug, Clone, Copy, Default)]
pub struct CpuUse {
    pub walhook: f64,
    pub postgres: f64,
    pub bench: f64,
    pub wall: f64,
}

/// A started measurement: totals at the start of the interval.
pub struct CpuMeter {
    postmaster: u32,
    walhook: Vec<u32>,
    start: CpuUse,
    started: Instant,
}

impl CpuMeter {
    /// Start measuring walhook processes `walhook` and the PostgreSQL whose
    /// postmaster is `postmaster`.
    pub fn start(postmaster: u32, walhook: Vec<u32>) -> CpuMeter {
        let mut meter = CpuMeter {
            postmaster,
            walhook,
            start: CpuUse::default(),
            started: Instant::now(),
        };
        meter.start = meter.totals();
        meter
    }

    /// CPU used since [`CpuMeter::start`]; call while walhook still runs.
    pub fn stop(&self) -> CpuUse {
        let end = self.totals();
        CpuUse {
            walhook: end.walhook - self.start.walhook,
            postgres: end.postgres - self.start.postgres,
            bench: end.bench - self.start.bench,
            wall: self.started.elapsed().as_secs_f64(),
        }
    }

    fn totals(&self) -> CpuUse {
        CpuUse {
            walhook: self.walhook.iter().map(|&p| own_seconds(p)).sum(),
            postgres: tree_seconds(self.postmaster),
            bench: own_seconds(std::process::id()),
            wall: 0.0,
        }
    }
}

/// The postmaster's pid: the parent of the backend serving `backend_pid`.
pub fn postmaster_of(backend_pid: u32) -> anyhow::Result<u32> {
    stat_fields(backend_pid)
        .and_then(|f| f.get(1)?.parse().ok())
        .ok_or_else(|| anyhow::anyhow!("cannot read /proc/{backend_pid}/stat"))
}

/// utime + stime of `pid` in seconds (0 when gone).
fn own_seconds(pid: u32) -> f64 {
    ticks(pid, &[11, 12]) as f64 / clock_ticks()
}

/// The postmaster's own and reaped children's time plus every live child's.
fn tree_seconds(postmaster: u32) -> f64 {
    let mut total = ticks(postmaster, &[11, 12, 13, 14]);
    if let Ok(entries) = std::fs::read_dir("/proc") {
        for pid in entries.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok()) {
            if let Some(fields) = stat_fields(pid)
                && fields.get(1).and_then(|p| p.parse::<u32>().ok()) == Some(postmaster)
            {
                total += sum(&fields, &[11, 12]);
            }
        }
    }
    total as f64 / clock_ticks()
}

fn ticks(pid: u32, at: &[usize]) -> u64 {
    stat_fields(pid).map_or(0, |f| sum(&f, at))
}

fn sum(fields: &[String], at: &[usize]) -> u64 {
    at.iter()
        .filter_map(|&i| fields.get(i)?.parse::<u64>().ok())
        .sum()
}

/// The fields of `/proc/<pid>/stat` after the command name: index 0 is the
/// state, 1 the ppid, 11/12 utime/stime, 13/14 cutime/cstime (proc(5) numbers
/// minus 3).
fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // the command name is in parentheses and may hold spaces
    let rest = &stat[stat.rfind(')')? + 1..];
    Some(rest.split_whitespace().map(str::to_owned).collect())
}

/// USER_HZ (`getconf CLK_TCK`; 100 on Linux when getconf is missing).
fn clock_ticks() -> f64 {
    static HZ: OnceLock<f64> = OnceLock::new();
    *HZ.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok()?.trim().parse().ok())
            .filter(|hz: &f64| *hz > 0.0)
            .unwrap_or(100.0)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_measured() {
        let fields = stat_fields(std::process::id()).unwrap();
        assert_eq!(
            fields[1].parse::<u32>().unwrap(),
            std::os::unix::process::parent_id()
        );
        let meter = CpuMeter::start(std::os::unix::process::parent_id(), vec![]);
        let spin = Instant::now();
        let mut x = 0u64;
        while spin.elapsed().as_millis() < 100 {
            x = x.wrapping_add(std::hint::black_box(1));
        }
        let used = meter.stop();
        assert!(x > 0);
        assert!(used.bench > 0.0, "{used:?}");
        assert!(used.wall >= 0.1, "{used:?}");
    }
}
