//! Throwaway PostgreSQL clusters for tests: a thin layer on
//! [`walhook::local_cluster`], which does initdb, configuration, the watchdog,
//! running as the `postgres` OS user under root, readiness and stop.
//!
//! One shared cluster per test binary ([`Cluster::shared`]) lives in a static;
//! the local cluster's watchdog stops it and removes its folder once the test
//! process has exited. Dedicated clusters ([`Cluster::start`]) stop when
//! dropped. Each test gets a database of its own ([`TestDb`]).

use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};

use walhook::local_cluster::{self, LocalCluster};

pub use walhook::local_cluster::LocalClusterOptions as ClusterOptions;

/// Settings every test cluster gets (before the test's own `extra_conf`).
const TEST_CONF: &[&str] = &[
    "max_replication_slots = 64",
    "max_wal_senders = 64",
    "max_connections = 300",
    "fsync = off",
    "shared_buffers = 128MB",
    "wal_sender_timeout = 60s",
    "logging_collector = off",
];

/// PostgreSQL binaries (the installation the clusters run).
pub fn pg_bin(name: &str) -> PathBuf {
    local_cluster::bin_path(name).unwrap_or_else(|e| panic!("{e}"))
}

/// Give `path` to the server's OS user when we run as root.
pub fn chown_to_server_user(path: &Path) {
    local_cluster::give_to_server_user(path).unwrap_or_else(|e| panic!("{e}"));
}

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    local_cluster::free_port().unwrap_or_else(|e| panic!("{e}"))
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

/// A test cluster: a [`LocalCluster`] with test settings and helpers.
pub struct Cluster(LocalCluster);

impl Deref for Cluster {
    type Target = LocalCluster;

    fn deref(&self) -> &LocalCluster {
        &self.0
    }
}

static SHARED: OnceLock<Cluster> = OnceLock::new();
static DB_COUNTER: AtomicU32 = AtomicU32::new(0);

impl Cluster {
    /// The test binary's shared cluster, started on first use.
    pub fn shared() -> &'static Cluster {
        SHARED.get_or_init(|| Cluster::start(ClusterOptions::default()))
    }

    /// A cluster of its own, stopped and removed on drop.
    pub fn start(options: ClusterOptions) -> Cluster {
        let mut extra_conf: Vec<String> = TEST_CONF.iter().map(|l| l.to_string()).collect();
        extra_conf.extend(options.extra_conf);
        let options = ClusterOptions {
            prefix: if options.prefix.is_empty() {
                "walhook-test"
            } else {
                options.prefix
            },
            extra_conf,
            ..options
        };
        Cluster(LocalCluster::start(&options).unwrap_or_else(|e| panic!("{e}")))
    }

    /// Stop and start again on the same port with the same data.
    pub fn restart(&self) {
        self.0.restart().unwrap_or_else(|e| panic!("{e}"));
    }

    /// Run SQL through psql against `db`, panicking with psql's output on error.
    pub fn psql(&self, db: &str, sql: &str) -> String {
        psql_url(&self.url(db), sql)
    }

    /// Like [`Cluster::psql`] but returns psql's stderr on failure.
    pub fn try_psql(&self, db: &str, sql: &str) -> Result<String, String> {
        try_psql_url(&self.url(db), sql)
    }

    /// The server's major version (15, 16, 17, 18, ...), for what differs by
    /// version (docs/postgres-versions.md); `PG_BIN` chooses the server.
    pub fn major(&self) -> u32 {
        let num: u32 = self
            .psql("postgres", "SHOW server_version_num")
            .parse()
            .expect("server_version_num is a number");
        num / 10_000
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
