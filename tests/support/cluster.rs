//! Throwaway PostgreSQL clusters for tests.
//!
//! `initdb` into a temp dir with `wal_level=logical` on a free loopback port.
//! PostgreSQL refuses to run as root, so when the tests run as uid 0 the data
//! dir is given to the `postgres` OS user and the server runs as that user.
//! One shared cluster per test binary ([`Cluster::shared`]) is stopped at process
//! exit; dedicated clusters ([`Cluster::start`]) stop when dropped. Each
//! postmaster is started under a watchdog shell that stops it if the test
//! process disappears (killed, aborted), so no server outlives its tests.

use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};

/// PostgreSQL server binaries.
pub fn pg_bin(name: &str) -> PathBuf {
    let dir = std::env::var("PG_BIN").unwrap_or_else(|_| "/usr/lib/postgresql/15/bin".into());
    Path::new(&dir).join(name)
}

/// `(uid, gid)` to run PostgreSQL as, when we are root.
fn server_user() -> Option<(u32, u32)> {
    if unsafe { libc::geteuid() } != 0 {
        return None;
    }
    let id = |flag: &str| -> u32 {
        let out = Command::new("id")
            .args([flag, "postgres"])
            .output()
            .expect("run id");
        assert!(
            out.status.success(),
            "running as root needs a `postgres` OS user"
        );
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .expect("numeric id")
    };
    Some((id("-u"), id("-g")))
}

fn as_server_user(cmd: &mut Command) -> &mut Command {
    if let Some((uid, gid)) = server_user() {
        cmd.uid(uid).gid(gid);
    }
    cmd
}

/// Give `path` to the server's OS user when we run as root.
pub fn chown_to_server_user(path: &Path) {
    if let Some((uid, gid)) = server_user() {
        std::os::unix::fs::chown(path, Some(uid), Some(gid)).expect("chown data dir");
    }
}

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Run SQL through psql against a URL: its output, or psql's stderr on failure.
pub fn try_psql_url(url: &str, sql: &str) -> Result<String, String> {
    let out = Command::new(pg_bin("psql"))
        .args([
            "-X",
            "-q",
            "-At",
            "-v",
            "ON_ERROR_STOP=1",
            "-d",
            url,
            "-c",
            sql,
        ])
        .output()
        .expect("run psql");
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// Run SQL through psql against a URL, panicking on error.
pub fn psql_url(url: &str, sql: &str) -> String {
    try_psql_url(url, sql).unwrap_or_else(|err| panic!("psql failed: {err}\nSQL: {sql}"))
}

/// Options of a dedicated cluster.
#[derive(Debug, Clone, Default)]
pub struct ClusterOptions {
    /// Overrides `wal_level` (default `logical`).
    pub wal_level: Option<String>,
    /// Extra `postgresql.conf` lines.
    pub extra_conf: Vec<String>,
    /// `pg_hba.conf` lines placed before initdb's (the first match wins).
    pub hba_first: Vec<String>,
}

pub struct Cluster {
    root: tempfile::TempDir,
    pub port: u16,
}

static SHARED: OnceLock<Cluster> = OnceLock::new();
static DB_COUNTER: AtomicU32 = AtomicU32::new(0);

extern "C" fn stop_shared_cluster() {
    if let Some(cluster) = SHARED.get() {
        cluster.stop();
        let _ = std::fs::remove_dir_all(cluster.root.path());
    }
}

impl Cluster {
    /// The test binary's shared cluster, started on first use.
    pub fn shared() -> &'static Cluster {
        SHARED.get_or_init(|| {
            let cluster = Cluster::start(ClusterOptions::default());
            unsafe { libc::atexit(stop_shared_cluster) };
            cluster
        })
    }

    /// A cluster of its own, stopped and removed on drop.
    pub fn start(options: ClusterOptions) -> Cluster {
        let root = tempfile::Builder::new()
            .prefix("walhook-test-")
            .tempdir()
            .unwrap();
        let data = root.path().join("data");
        std::fs::create_dir(&data).unwrap();
        chown_to_server_user(root.path());
        chown_to_server_user(&data);
        let status = as_server_user(
            Command::new(pg_bin("initdb"))
                .args(["-D"])
                .arg(&data)
                .args(["-U", "postgres", "--auth=trust", "-E", "UTF8", "--locale=C"])
                .stdout(Stdio::null())
                .stderr(Stdio::inherit()),
        )
        .status()
        .expect("run initdb (is postgresql-15 installed?)");
        assert!(status.success(), "initdb failed");
        let port = free_port();
        let mut conf = format!(
            "listen_addresses = '127.0.0.1'\nport = {port}\nunix_socket_directories = '{}'\n\
             wal_level = {}\nmax_replication_slots = 64\nmax_wal_senders = 64\n\
             max_connections = 300\nfsync = off\nshared_buffers = 128MB\n\
             wal_sender_timeout = 60s\nlogging_collector = off\n",
            root.path().display(),
            options.wal_level.as_deref().unwrap_or("logical"),
        );
        for line in &options.extra_conf {
            conf.push_str(line);
            conf.push('\n');
        }
        append(&data.join("postgresql.conf"), &conf);
        append(
            &data.join("pg_hba.conf"),
            "host replication all 127.0.0.1/32 trust\nlocal replication all trust\n",
        );
        if !options.hba_first.is_empty() {
            let hba = data.join("pg_hba.conf");
            let rest = std::fs::read_to_string(&hba).unwrap();
            std::fs::write(&hba, options.hba_first.join("\n") + "\n" + &rest).unwrap();
        }
        let cluster = Cluster { root, port };
        cluster.start_server();
        cluster
    }

    pub fn data_dir(&self) -> PathBuf {
        self.root.path().join("data")
    }

    pub fn log_file(&self) -> PathBuf {
        self.root.path().join("server.log")
    }

    /// Start the postmaster under a watchdog that stops it when this process dies.
    fn start_server(&self) {
        let postgres = pg_bin("postgres");
        let pg_ctl = pg_bin("pg_ctl");
        let data = self.data_dir();
        let log = self.log_file();
        // The watchdog runs as us (it must see our pid); the server as its user.
        let run_as = if server_user().is_some() {
            "runuser -u postgres -- "
        } else {
            ""
        };
        let script = format!(
            "{run_as}'{postgres}' -D '{data}' >>'{log}' 2>&1 & pm=$!; \
             while kill -0 {parent} 2>/dev/null && kill -0 $pm 2>/dev/null; do sleep 0.5; done; \
             kill -0 $pm 2>/dev/null && {run_as}'{pg_ctl}' -D '{data}' -m immediate stop >/dev/null 2>&1; exit 0",
            postgres = postgres.display(),
            data = data.display(),
            log = log.display(),
            parent = std::process::id(),
            pg_ctl = pg_ctl.display(),
        );
        let mut cmd = Command::new("sh");
        cmd.args(["-c", &script])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let mut watchdog = cmd.spawn().expect("start postgres");
        std::thread::spawn(move || watchdog.wait());
        self.wait_ready();
    }

    fn wait_ready(&self) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            let ok = Command::new(pg_bin("pg_isready"))
                .args([
                    "-h",
                    "127.0.0.1",
                    "-p",
                    &self.port.to_string(),
                    "-U",
                    "postgres",
                    "-q",
                ])
                .status()
                .map(|s| s.success())
                .unwrap_or(false);
            if ok {
                return;
            }
            if std::time::Instant::now() > deadline {
                let log = std::fs::read_to_string(self.log_file()).unwrap_or_default();
                panic!("postgres did not start on port {}:\n{log}", self.port);
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }

    /// Stop the server (fast shutdown).
    pub fn stop(&self) {
        let _ = as_server_user(
            Command::new(pg_bin("pg_ctl"))
                .arg("-D")
                .arg(self.data_dir())
                .args(["-m", "fast", "-w", "stop"])
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
        )
        .status();
    }

    /// Stop and start again on the same port with the same data.
    pub fn restart(&self) {
        self.stop();
        // the old watchdog exits once its postmaster is gone
        self.start_server();
    }

    /// URL of database `db`.
    pub fn url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }

    /// Run SQL through psql against `db`, panicking with psql's output on error.
    pub fn psql(&self, db: &str, sql: &str) -> String {
        psql_url(&self.url(db), sql)
    }

    /// Like [`Cluster::psql`] but returns psql's stderr on failure.
    pub fn try_psql(&self, db: &str, sql: &str) -> Result<String, String> {
        try_psql_url(&self.url(db), sql)
    }

    /// A fresh database (with its own slot and publication names).
    pub fn new_database(&'static self) -> TestDb<'static> {
        self.database()
    }

    /// A fresh database on this cluster.
    pub fn database(&self) -> TestDb<'_> {
        let n = DB_COUNTER.fetch_add(1, Ordering::Relaxed);
        let name = format!("t{}_{n}", std::process::id());
        self.psql("postgres", &format!("CREATE DATABASE {name}"));
        TestDb {
            cluster: self,
            slot: format!("slot_{name}"),
            publication: format!("pub_{name}"),
            name,
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.stop();
    }
}

fn append(path: &Path, text: &str) {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new().append(true).open(path).unwrap();
    f.write_all(text.as_bytes()).unwrap();
}

/// A database of its own; dropped (with its slots) at the end of the test.
pub struct TestDb<'a> {
    pub cluster: &'a Cluster,
    pub name: String,
    pub slot: String,
    pub publication: String,
}

impl TestDb<'_> {
    pub fn url(&self) -> String {
        self.cluster.url(&self.name)
    }

    pub fn psql(&self, sql: &str) -> String {
        self.cluster.psql(&self.name, sql)
    }

    pub fn try_psql(&self, sql: &str) -> Result<String, String> {
        self.cluster.try_psql(&self.name, sql)
    }

    /// Run a SQL file of the repository (e.g. `sql/examples/iam.sql`),
    /// stopping at its first error.
    pub fn psql_file(&self, path: &str) -> String {
        self.psql(&format!("\\i {}/{path}", env!("CARGO_MANIFEST_DIR")))
    }

    /// A tokio-postgres client.
    pub async fn client(&self) -> tokio_postgres::Client {
        let (client, conn) = tokio_postgres::connect(&self.url(), tokio_postgres::NoTls)
            .await
            .expect("connect to test database");
        tokio::spawn(conn);
        client
    }
}

impl Drop for TestDb<'_> {
    fn drop(&mut self) {
        let name = &self.name;
        let _ = self.cluster.try_psql(
            "postgres",
            &format!(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}';
                 SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE database = '{name}' AND active_pid IS NOT NULL;"
            ),
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
        let _ = self.cluster.try_psql(
            "postgres",
            &format!("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE database = '{name}'"),
        );
        let _ = self.cluster.try_psql(
            "postgres",
            &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
        );
    }
}
