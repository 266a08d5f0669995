//! A throwaway local PostgreSQL cluster, for `walhook dev`, the benchmark and
//! the integration tests (`tests/it/support/cluster.rs` is a thin layer on it).
//!
//! Built from the PostgreSQL binaries installed on the machine ([`bin_path`]:
//! `$PG_BIN`, the newest `/usr/lib/postgresql/*/bin`, or `pg_config --bindir`;
//! a client tool that folder lacks, such as `psql` or `pg_isready` beside a
//! server-only build, is taken from the other installations or `PATH`):
//! `initdb` into a folder of its own, `wal_level=logical` (or what
//! [`LocalClusterOptions::wal_level`] says), loopback only on a free port, trust
//! authentication. PostgreSQL refuses to run as root, so when walhook runs as uid
//! 0 the folder is given to the `postgres` OS user and the server runs as that
//! user (`runuser`).
//!
//! The postmaster is started under a small watchdog shell that stops it and
//! removes the folder if this process disappears without cleaning up (SIGKILL,
//! abort, or a normal exit with the cluster in a `static` that is never
//! dropped, as the tests' shared cluster is), so nothing outlives the process
//! that started it. [`LocalCluster::restart`] stops and starts the server on
//! the same port and data; [`LocalCluster::stop`] (or drop) stops it and removes
//! the folder. [`LocalCluster::start_standby`] starts a physical standby of a
//! cluster (a base backup without `pg_basebackup`) and
//! [`LocalCluster::promote`] promotes it.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::{Duration, Instant};

mod binaries;
mod standby;

pub use binaries::bin_path;
use binaries::{bin_dir, tool_in};
pub use standby::StandbyOptions;

/// Why the local cluster could not be started.
#[derive(Debug, thiserror::Error)]
pub enum LocalClusterError {
    #[error(
        "no PostgreSQL server binaries found (looked for initdb in $PG_BIN, \
         /usr/lib/postgresql/*/bin and `pg_config --bindir`): install them \
         (Debian/Ubuntu: `apt-get install postgresql-15`; macOS: `brew install postgresql@16`), \
         set PG_BIN to their folder, or use `docker compose up` from the repository"
    )]
    NoBinaries,
    #[error(
        "walhook runs as root and PostgreSQL refuses to: create a `postgres` OS user \
         (the Debian package does) or run walhook as an ordinary user"
    )]
    NoServerUser,
    #[error("{step} failed: {detail}")]
    Step { step: &'static str, detail: String },
    #[error("cannot prepare {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Settings of a local cluster beyond the defaults.
#[derive(Debug, Clone, Default)]
pub struct LocalClusterOptions {
    /// Folder name prefix under the temp dir (`walhook` when empty).
    pub prefix: &'static str,
    /// Overrides `wal_level` (default `logical`).
    pub wal_level: Option<String>,
    /// Extra `postgresql.conf` lines (after the defaults, so they win).
    pub extra_conf: Vec<String>,
    /// `pg_hba.conf` lines placed before initdb's (the first match wins).
    pub hba_first: Vec<String>,
}

/// A running cluster; stopped and removed on [`LocalCluster::stop`] or drop.
#[derive(Debug)]
pub struct LocalCluster {
    dir: PathBuf,
    bin: PathBuf,
    port: u16,
    as_postgres: bool,
    stopped: AtomicBool,
}

fn running_as_root() -> bool {
    // /proc/self belongs to the process's effective uid
    std::fs::metadata("/proc/self")
        .map(|m| m.uid() == 0)
        .unwrap_or(false)
}

fn postgres_user_exists() -> bool {
    Command::new("id")
        .args(["-u", "postgres"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// Give `path` to the `postgres` OS user when this process runs as root (the
/// server runs as that user then, and must read its folder, keys and
/// certificates); nothing otherwise.
pub fn give_to_server_user(path: &Path) -> Result<(), LocalClusterError> {
    if running_as_root() {
        run("chown", Command::new("chown").arg("postgres:").arg(path))?;
    }
    Ok(())
}

/// A loopback port nobody listens on right now.
pub fn free_port() -> Result<u16, LocalClusterError> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|source| LocalClusterError::Io {
            path: "127.0.0.1:0".into(),
            source,
        })
}

/// A folder name of its own: `<prefix>-<pid>`, then `<prefix>-<pid>-<n>`.
fn folder_name(prefix: &str) -> String {
    static STARTED: AtomicU32 = AtomicU32::new(0);
    match STARTED.fetch_add(1, Ordering::Relaxed) {
        0 => format!("{prefix}-{}", std::process::id()),
        n => format!("{prefix}-{}-{n}", std::process::id()),
    }
}

/// Single-quote `s` for sh.
fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// Run a tool to completion; its stderr is the error's detail.
fn run(step: &'static str, cmd: &mut Command) -> Result<(), LocalClusterError> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| LocalClusterError::Step {
            step,
            detail: e.to_string(),
        })?;
    if out.status.success() {
        Ok(())
    } else {
        Err(LocalClusterError::Step {
            step,
            detail: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        })
    }
}

impl LocalCluster {
    /// initdb, configure and start a cluster; returns once it accepts connections.
    pub fn start(options: &LocalClusterOptions) -> Result<LocalCluster, LocalClusterError> {
        let cluster = LocalCluster::new_folder(options.prefix, "walhook")?;
        let data = cluster.data_dir();
        let mut initdb = cluster.server_command("initdb");
        initdb.arg("-D").arg(&data).args([
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
            "--locale=C",
        ]);
        run("initdb", &mut initdb)?;
        let mut conf = format!(
            "\n# walhook local cluster\nlisten_addresses = '127.0.0.1'\nport = {}\n\
             unix_socket_directories = '{}'\nwal_level = {}\n\
             max_replication_slots = 16\nmax_wal_senders = 16\n",
            cluster.port,
            cluster.dir.display(),
            options.wal_level.as_deref().unwrap_or("logical"),
        );
        for line in &options.extra_conf {
            conf.push_str(line);
            conf.push('\n');
        }
        append(&data.join("postgresql.conf"), &conf)?;
        let hba = data.join("pg_hba.conf");
        append(
            &hba,
            "host replication all 127.0.0.1/32 trust\nlocal replication all trust\n",
        )?;
        if !options.hba_first.is_empty() {
            let io = |source| LocalClusterError::Io {
                path: hba.clone(),
                source,
            };
            let rest = std::fs::read_to_string(&hba).map_err(io)?;
            std::fs::write(&hba, options.hba_first.join("\n") + "\n" + &rest).map_err(io)?;
        }
        cluster.start_server()?;
        Ok(cluster)
    }

    /// A cluster not started yet: a free port and an empty folder of its own
    /// named after `prefix` (`default` when empty), given to the server's OS
    /// user (removed again on drop).
    fn new_folder(prefix: &str, default: &str) -> Result<LocalCluster, LocalClusterError> {
        let prefix = if prefix.is_empty() { default } else { prefix };
        let bin = bin_dir()?.to_owned();
        let as_postgres = running_as_root();
        if as_postgres && !postgres_user_exists() {
            return Err(LocalClusterError::NoServerUser);
        }
        let port = free_port()?;
        let dir = std::env::temp_dir().join(folder_name(prefix));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).map_err(|source| LocalClusterError::Io {
            path: dir.clone(),
            source,
        })?;
        let cluster = LocalCluster {
            dir,
            bin,
            port,
            as_postgres,
            stopped: AtomicBool::new(false),
        };
        // from here on, drop removes the folder if a step fails
        give_to_server_user(&cluster.dir)?;
        Ok(cluster)
    }

    /// The folder holding the data directory, socket and server log.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// URL of database `db` as the `postgres` superuser.
    pub fn url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }

    /// Path of a client or server binary (`psql`, `pg_recvlogical`, ...); a
    /// client tool the server's folder lacks comes from another installation.
    pub fn bin(&self, name: &str) -> PathBuf {
        tool_in(&self.bin, name)
    }

    pub fn log_file(&self) -> PathBuf {
        self.dir.join("server.log")
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    fn server_command(&self, tool: &str) -> Command {
        if self.as_postgres {
            let mut cmd = Command::new("runuser");
            cmd.args(["-u", "postgres", "--"]).arg(self.bin(tool));
            cmd
        } else {
            Command::new(self.bin(tool))
        }
    }

    /// Start the postmaster under the watchdog and wait until it accepts
    /// connections.
    fn start_server(&self) -> Result<(), LocalClusterError> {
        self.spawn_under_watchdog()?;
        self.wait_ready()
    }

    /// Start the postmaster under a shell that watches this process: if we die
    /// without stopping the cluster, it stops the server and removes the folder.
    /// The watchdog itself ends when its postmaster does.
    fn spawn_under_watchdog(&self) -> Result<(), LocalClusterError> {
        let run_as = if self.as_postgres {
            "runuser -u postgres -- "
        } else {
            ""
        };
        let script = format!(
            "{run_as}{postgres} -D {data} >>{log} 2>&1 & pm=$!; \
             while kill -0 {parent} 2>/dev/null && kill -0 $pm 2>/dev/null; do sleep 0.5; done; \
             if kill -0 $pm 2>/dev/null; then {run_as}{pg_ctl} -D {data} -m immediate -w stop >/dev/null 2>&1; \
             rm -rf {dir}; fi; exit 0",
            postgres = sh_quote(&self.bin("postgres").to_string_lossy()),
            pg_ctl = sh_quote(&self.bin("pg_ctl").to_string_lossy()),
            data = sh_quote(&self.data_dir().to_string_lossy()),
            log = sh_quote(&self.log_file().to_string_lossy()),
            dir = sh_quote(&self.dir.to_string_lossy()),
            parent = std::process::id(),
        );
        let mut watchdog = Command::new("sh")
            .args(["-c", &script])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| LocalClusterError::Step {
                step: "starting postgres",
                detail: e.to_string(),
            })?;
        std::thread::spawn(move || watchdog.wait());
        Ok(())
    }

    fn wait_ready(&self) -> Result<(), LocalClusterError> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ready = Command::new(self.bin("pg_isready"))
                .args(["-q", "-h", "127.0.0.1", "-U", "postgres", "-p"])
                .arg(self.port.to_string())
                .status()
                .map(|s| s.success())
                .unwrap_or(false);
            if ready {
                return Ok(());
            }
            if Instant::now() > deadline {
                let log = std::fs::read_to_string(self.log_file()).unwrap_or_default();
                return Err(LocalClusterError::Step {
                    step: "starting postgres",
                    detail: format!(
                        "not ready on port {} after 30 s; server log:\n{log}",
                        self.port
                    ),
                });
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Stop the server (fast shutdown), keeping its data.
    fn stop_server(&self) {
        let _ = self
            .server_command("pg_ctl")
            .arg("-D")
            .arg(self.data_dir())
            .args(["-m", "fast", "-w", "stop"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }

    /// Stop the server (fast shutdown) and start it again on the same port with
    /// the same data; returns once it accepts connections.
    pub fn restart(&self) -> Result<(), LocalClusterError> {
        self.stop_server();
        // the old watchdog exits once its postmaster is gone
        self.start_server()
    }

    /// Stop the server (fast shutdown) and remove the folder; once.
    pub fn stop(&self) {
        if self.stopped.swap(true, Ordering::SeqCst) {
            return;
        }
        self.stop_server();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        self.stop();
    }
}

fn append(path: &Path, text: &str) -> Result<(), LocalClusterError> {
    use std::io::Write;
    std::fs::OpenOptions::new()
        .append(true)
        .open(path)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .map_err(|source| LocalClusterError::Io {
            path: path.to_owned(),
            source,
        })
}
