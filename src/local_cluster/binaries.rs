//! Where a local cluster's PostgreSQL binaries come from: `$PG_BIN`, else
//! the machine's newest installation; a client tool that folder lacks comes
//! from the other installations or `PATH`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use super::LocalClusterError;

/// The folder holding `initdb`, `postgres`, `pg_ctl` and `psql`, looked up once.
pub(super) fn bin_dir() -> Result<&'static Path, LocalClusterError> {
    static DIR: OnceLock<Option<PathBuf>> = OnceLock::new();
    DIR.get_or_init(find_binaries)
        .as_deref()
        .ok_or(LocalClusterError::NoBinaries)
}

fn find_binaries() -> Option<PathBuf> {
    let has_initdb = |dir: &Path| dir.join("initdb").is_file();
    if let Some(dir) = std::env::var_os("PG_BIN").map(PathBuf::from) {
        // absolute and without links, so that a relative PG_BIN holds in other
        // working folders and the server's OS user needs only the real folder
        let dir = std::fs::canonicalize(&dir).unwrap_or(dir);
        return has_initdb(&dir).then_some(dir);
    }
    installations().into_iter().find(|dir| has_initdb(dir))
}

/// The PostgreSQL installations of the machine, newest first:
/// `/usr/lib/postgresql/*/bin`, then `pg_config --bindir`.
fn installations() -> Vec<PathBuf> {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| Some((e.file_name().to_str()?.parse().ok()?, e.path().join("bin"))))
        .collect();
    versions.sort();
    let mut dirs: Vec<PathBuf> = versions.into_iter().rev().map(|(_, bin)| bin).collect();
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output() {
        let dir = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        if out.status.success() && !dir.is_empty() {
            dirs.push(PathBuf::from(dir));
        }
    }
    dirs
}

/// `name` in the server's folder `server`, or else (a client tool missing from
/// a server-only build, such as `psql` or `pg_isready` beside the binaries of
/// `.ci/postgres-versions.sh`) in the machine's other installations or `PATH`;
/// the server's folder when none has it, so that errors name the expected path.
/// Client tools talk to servers of later majors (psql 15 runs SQL on 18).
pub(super) fn tool_in(server: &Path, name: &str) -> PathBuf {
    static FALLBACK: OnceLock<Vec<PathBuf>> = OnceLock::new();
    let own = server.join(name);
    if own.is_file() {
        return own;
    }
    FALLBACK
        .get_or_init(|| {
            let mut dirs = installations();
            if let Some(path) = std::env::var_os("PATH") {
                dirs.extend(std::env::split_paths(&path));
            }
            dirs
        })
        .iter()
        .map(|dir| dir.join(name))
        .find(|path| path.is_file())
        .unwrap_or(own)
}

/// Path of a PostgreSQL client or server binary (`psql`, `pg_recvlogical`, ...)
/// of the installation clusters are started from (a client tool it lacks from
/// another installation).
pub fn bin_path(name: &str) -> Result<PathBuf, LocalClusterError> {
    Ok(tool_in(bin_dir()?, name))
}
