//! `walhook dev`: the embedded quickstart (coming with the operations issue).

use std::process::ExitCode;

use crate::config::{CommonOptions, DevArgs};

/// Not built yet: say so and point at the manual steps in the README.
pub async fn run(_common: CommonOptions, _args: DevArgs) -> Result<ExitCode, std::io::Error> {
    eprintln!(
        "walhook dev is coming: until then, start PostgreSQL with wal_level=logical, \
         then run `walhook migrate` and `walhook run` (see README.md)"
    );
    Ok(ExitCode::from(2))
}
