//! A physical standby of a local cluster, and its promotion: what a failover
//! test needs (tests/it/promotion.rs).
//!
//! The standby starts from a base backup taken with the server's own
//! functions, so no `pg_basebackup` of the same major is needed (the server
//! builds of `.ci/postgres-versions.sh` have none, and an older one refuses a
//! newer server): `pg_backup_start` in a session of its own, a file copy of
//! the data directory without what `pg_basebackup` leaves out (the
//! postmaster's files, WAL, replication slots, temporary state), then
//! `pg_backup_stop`, whose label becomes the copy's `backup_label`. The
//! standby streams the WAL from the backup's start through a physical slot
//! of the primary, created before the backup so that the WAL stays until the
//! standby has it.

use std::path::Path;
use std::process::Command;

use super::{LocalCluster, LocalClusterError, append, run};

/// How a standby follows its primary ([`LocalCluster::start_standby`]).
#[derive(Debug, Clone, Default)]
pub struct StandbyOptions {
    /// Folder name prefix under the temp dir (`walhook-standby` when empty).
    pub prefix: &'static str,
    /// The primary's physical slot the standby streams through
    /// (`primary_slot_name`); created on the primary when missing.
    pub physical_slot: String,
    /// The database named in `primary_conninfo` (the slot sync worker of 17+
    /// connects to it).
    pub dbname: String,
    /// Extra `postgresql.conf` lines of the standby (after the primary's and
    /// the standby's own, so they win), e.g. `sync_replication_slots = on`.
    pub extra_conf: Vec<String>,
}

/// Entries of the data directory a base backup leaves out entirely.
const NOT_COPIED: &[&str] = &[
    "postmaster.pid",
    "postmaster.opts",
    "backup_label",
    "tablespace_map",
    "standby.signal",
    "recovery.signal",
];

/// Folders a base backup copies empty.
const COPIED_EMPTY: &[&str] = &[
    "pg_wal",
    "pg_replslot",
    "pg_stat_tmp",
    "pg_dynshmem",
    "pg_notify",
    "pg_serial",
    "pg_snapshots",
    "pg_subtrans",
];

impl LocalCluster {
    /// Start a physical standby of this cluster on a port and folder of its
    /// own: base backup, `standby.signal`, `primary_conninfo` (with
    /// `dbname`), `primary_slot_name`, `hot_standby_feedback = on`, then the
    /// options' lines. Returns once it accepts (read-only) connections.
    pub fn start_standby(
        &self,
        options: &StandbyOptions,
    ) -> Result<LocalCluster, LocalClusterError> {
        let standby = LocalCluster::new_folder(options.prefix, "walhook-standby")?;
        let data = standby.data_dir();
        self.base_backup(&options.physical_slot, &data)?;
        let mut conf = format!(
            "\n# walhook local standby\nport = {}\nunix_socket_directories = '{}'\n\
             primary_conninfo = 'host=127.0.0.1 port={} user=postgres dbname={} application_name={}'\n\
             primary_slot_name = '{}'\nhot_standby_feedback = on\n",
            standby.port,
            standby.dir.display(),
            self.port,
            options.dbname,
            options.physical_slot,
            options.physical_slot,
        );
        for line in &options.extra_conf {
            conf.push_str(line);
            conf.push('\n');
        }
        append(&data.join("postgresql.conf"), &conf)?;
        write(&data.join("standby.signal"), "")?;
        if standby.as_postgres {
            run(
                "chown",
                Command::new("chown").args(["-R", "postgres:"]).arg(&data),
            )?;
        }
        standby.start_server()?;
        Ok(standby)
    }

    /// Promote this standby (`pg_ctl promote`); returns once it accepts writes.
    pub fn promote(&self) -> Result<(), LocalClusterError> {
        let mut promote = self.server_command("pg_ctl");
        promote
            .arg("-D")
            .arg(self.data_dir())
            .args(["-w", "-t", "60", "promote"]);
        run("pg_ctl promote", &mut promote)
    }

    /// Copy this cluster's data directory to `to` as a base backup whose WAL
    /// a standby streams through `physical_slot`.
    fn base_backup(&self, physical_slot: &str, to: &Path) -> Result<(), LocalClusterError> {
        let url = self.url("postgres");
        let from = self.data_dir();
        let to = to.to_owned();
        let slot = physical_slot.to_owned();
        // a runtime of its own on a thread of its own: callers may be inside one
        let backup = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| step("base backup", e))?;
            let client = runtime.block_on(async {
                let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await?;
                tokio::spawn(conn);
                client
                    .execute(
                        "SELECT pg_create_physical_replication_slot($1, true)
                          WHERE NOT EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = $1)",
                        &[&slot],
                    )
                    .await?;
                client
                    .execute("SELECT pg_backup_start('walhook standby', true)", &[])
                    .await?;
                Ok::<_, tokio_postgres::Error>(client)
            });
            let client = client.map_err(|e| step("pg_backup_start", e))?;
            copy_data_dir(&from, &to)?;
            let label = runtime.block_on(async {
                let row = client
                    .query_one(
                        "SELECT labelfile, coalesce(spcmapfile, '') FROM pg_backup_stop(true)",
                        &[],
                    )
                    .await?;
                Ok::<_, tokio_postgres::Error>((
                    row.try_get::<_, String>(0)?,
                    row.try_get::<_, String>(1)?,
                ))
            });
            let (label, map) = label.map_err(|e| step("pg_backup_stop", e))?;
            write(&to.join("backup_label"), &label)?;
            if !map.is_empty() {
                write(&to.join("tablespace_map"), &map)?;
            }
            Ok(())
        });
        backup.join().unwrap_or_else(|_| {
            Err(LocalClusterError::Step {
                step: "base backup",
                detail: "the backup thread panicked".into(),
            })
        })
    }
}

fn step(step: &'static str, error: impl std::fmt::Display) -> LocalClusterError {
    LocalClusterError::Step {
        step,
        detail: error.to_string(),
    }
}

fn write(path: &Path, text: &str) -> Result<(), LocalClusterError> {
    std::fs::write(path, text).map_err(|source| LocalClusterError::Io {
        path: path.to_owned(),
        source,
    })
}

/// Copy a running server's data directory as `pg_basebackup` would: files
/// may change or vanish meanwhile (the WAL from the backup's start repairs
/// what changed; a vanished file was temporary).
fn copy_data_dir(from: &Path, to: &Path) -> Result<(), LocalClusterError> {
    create_dir(to)?;
    for entry in read_dir(from)? {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if NOT_COPIED.contains(&name.as_ref()) {
            continue;
        }
        let target = to.join(entry.file_name());
        if COPIED_EMPTY.contains(&name.as_ref()) {
            create_dir(&target)?;
            if name == "pg_wal" {
                create_dir(&target.join("archive_status"))?;
                create_dir(&target.join("summaries"))?;
            }
            continue;
        }
        copy_tree(&entry.path(), &target)?;
    }
    Ok(())
}

fn copy_tree(from: &Path, to: &Path) -> Result<(), LocalClusterError> {
    let io = |source| LocalClusterError::Io {
        path: from.to_owned(),
        source,
    };
    let meta = match std::fs::symlink_metadata(from) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        other => other.map_err(io)?,
    };
    if meta.is_dir() {
        create_dir(to)?;
        for entry in read_dir(from)? {
            copy_tree(&entry.path(), &to.join(entry.file_name()))?;
        }
        return Ok(());
    }
    match std::fs::copy(from, to) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        other => other.map(drop).map_err(io),
    }
}

fn read_dir(dir: &Path) -> Result<Vec<std::fs::DirEntry>, LocalClusterError> {
    std::fs::read_dir(dir)
        .and_then(|entries| entries.collect())
        .map_err(|source| LocalClusterError::Io {
            path: dir.to_owned(),
            source,
        })
}

fn create_dir(dir: &Path) -> Result<(), LocalClusterError> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(dir)
        .map_err(|source| LocalClusterError::Io {
            path: dir.to_owned(),
            source,
        })
}
