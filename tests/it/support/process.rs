//! The walhook binary as a child process: start it, read its log, signal it.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub fn walhook_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_walhook"))
}

/// Run `walhook <args>` to completion; (status, stdout, stderr).
pub fn walhook(args: &[&str]) -> (ExitStatus, String, String) {
    let out = Command::new(walhook_bin())
        .args(args)
        .env("WALHOOK_LOG", "info")
        .output()
        .expect("run walhook");
    (
        out.status,
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `walhook migrate` against `url`, asserting success.
pub fn migrate(url: &str) {
    let (status, out, err) = walhook(&["migrate", "--database-url", url]);
    assert!(status.success(), "walhook migrate failed:\n{out}\n{err}");
}

/// A running child process whose output is collected for assertions.
pub struct ChildProcess {
    child: Child,
    log: Arc<Mutex<String>>,
    /// `--http-addr` of a `walhook run` child.
    pub http_addr: Option<String>,
}

impl ChildProcess {
    pub fn spawn(mut cmd: Command) -> ChildProcess {
        cmd.stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .stdin(Stdio::null());
        let mut child = cmd.spawn().expect("spawn child process");
        let log = Arc::new(Mutex::new(String::new()));
        for reader in [
            child
                .stdout
                .take()
                .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
            child
                .stderr
                .take()
                .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
        ]
        .into_iter()
        .flatten()
        {
            let log = log.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(reader).lines().map_while(Result::ok) {
                    if std::env::var_os("WALHOOK_TEST_ECHO").is_some() {
                        eprintln!("[child] {line}");
                    }
                    let mut log = log.lock().unwrap();
                    log.push_str(&line);
                    log.push('\n');
                }
            });
        }
        ChildProcess {
            child,
            log,
            http_addr: None,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// The `/metrics` text of a `walhook run` child (at its `http_addr`).
    pub async fn metrics(&self) -> String {
        let addr = self.http_addr.as_ref().expect("a walhook run child");
        reqwest::get(format!("http://{addr}/metrics"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// Wait until the output contains `needle`; panics with the log otherwise.
    pub fn wait_for_log(&self, needle: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.log().contains(needle) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "{needle:?} not in output within {timeout:?}:\n{}",
            self.log()
        );
    }

    // kill(2) has no safe wrapper in std; the pid is our own child's
    #[allow(unsafe_code)]
    pub fn signal(&self, signal: i32) {
        unsafe { libc::kill(self.child.id() as i32, signal) };
    }

    pub fn kill_9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Wait for the exit; None on timeout.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }
}

impl Drop for ChildProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `walhook run` for a test database.
pub fn walhook_run(url: &str, slot: &str, publication: &str, extra: &[&str]) -> ChildProcess {
    let http_addr = format!("127.0.0.1:{}", super::cluster::free_port());
    let mut cmd = Command::new(walhook_bin());
    cmd.args([
        "run",
        "--database-url",
        url,
        "--slot",
        slot,
        "--publication",
        publication,
        "--http-addr",
        &http_addr,
    ])
    .args(extra)
    .env("WALHOOK_LOG", "info,walhook=debug");
    let mut child = ChildProcess::spawn(cmd);
    child.http_addr = Some(http_addr);
    child
}

/// `walhook run` for a test database, once it streams.
pub fn walhook_streaming(db: &super::TestDb<'_>) -> ChildProcess {
    let walhook = walhook_run(&db.url(), &db.slot, &db.publication, &[]);
    walhook.wait_for_log("streaming", std::time::Duration::from_secs(60));
    walhook
}
