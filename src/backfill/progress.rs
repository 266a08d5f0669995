//! `walhook backfill`: start a backfill, print its id, follow its progress.
//!
//! The daemon (`walhook run`) does the work; this command inserts the row and
//! watches it: a progress bar on a terminal, a plain line every few seconds
//! otherwise (logs, CI). `--detach` returns right after the id.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use tokio_postgres::Client;
use uuid::Uuid;

use crate::store::backfills::{self, BackfillStatus};

/// How often the row is read.
const POLL: Duration = Duration::from_millis(500);
/// How often a line is printed when stdout is not a terminal.
const LINE_EVERY: Duration = Duration::from_secs(5);
/// A backfill still pending after this long gets a hint.
const PENDING_HINT_AFTER: Duration = Duration::from_secs(15);

/// The backfill could not be started or followed.
#[derive(Debug, thiserror::Error)]
pub enum BackfillError {
    #[error("cannot start the backfill: {0}")]
    Refused(String),
    #[error("database error while following the backfill: {0}")]
    Database(#[from] tokio_postgres::Error),
}

/// Start the backfill and, unless `detach`, follow it to its end. Exit code 0
/// when it is done, 1 when it failed, was cancelled or disappeared.
pub async fn run(
    client: &Client,
    subscription: Uuid,
    table: &str,
    where_clause: Option<&str>,
    rows_per_second: Option<i32>,
    detach: bool,
) -> Result<ExitCode, BackfillError> {
    let id = backfills::create(client, subscription, table, where_clause, rows_per_second)
        .await
        .map_err(|e| {
            BackfillError::Refused(
                e.as_db_error()
                    .map_or_else(|| e.to_string(), |d| d.message().to_owned()),
            )
        })?;
    println!("{id}");
    let _ = std::io::stdout().flush();
    if detach {
        return Ok(ExitCode::SUCCESS);
    }
    let mut view = View::new(std::io::stdout().is_terminal());
    let started = Instant::now();
    let mut hinted = false;
    loop {
        let Some(status) = backfills::progress(client, id).await? else {
            view.finish(&format!(
                "backfill {id} disappeared (its subscription was deleted)"
            ));
            return Ok(ExitCode::FAILURE);
        };
        match status.status.as_str() {
            "done" => {
                view.finish(&format!(
                    "backfill {id} done: {} rows sent",
                    status.rows_sent
                ));
                return Ok(ExitCode::SUCCESS);
            }
            "failed" => {
                view.finish(&format!(
                    "backfill {id} failed after {} rows: {}",
                    status.rows_sent,
                    status.error.as_deref().unwrap_or("no error recorded")
                ));
                return Ok(ExitCode::FAILURE);
            }
            "cancelled" => {
                view.finish(&format!(
                    "backfill {id} cancelled after {} rows",
                    status.rows_sent
                ));
                return Ok(ExitCode::FAILURE);
            }
            "pending" if !hinted && started.elapsed() > PENDING_HINT_AFTER => {
                hinted = true;
                view.note("still pending: is `walhook run` streaming this database?");
            }
            _ => {}
        }
        view.update(&status);
        tokio::time::sleep(POLL).await;
    }
}

/// Where progress goes: an indicatif bar, or plain lines.
struct View {
    bar: Option<indicatif::ProgressBar>,
    last_line: Option<Instant>,
}

impl View {
    fn new(terminal: bool) -> View {
        let bar = terminal.then(|| {
            let bar = indicatif::ProgressBar::new(0);
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{spinner} {msg} [{elapsed_precise}] {wide_bar} {pos}/{len} rows ({per_sec})",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            bar.enable_steady_tick(Duration::from_millis(200));
            bar
        });
        View {
            bar,
            last_line: None,
        }
    }

    fn update(&mut self, status: &BackfillStatus) {
        let rows = status.rows_sent.max(0).unsigned_abs();
        match &self.bar {
            Some(bar) => {
                let estimate = status.estimated_rows.unwrap_or(0).max(0).unsigned_abs();
                bar.set_length(estimate.max(rows));
                bar.set_position(rows);
                bar.set_message(status.status.clone());
            }
            None => {
                if self.last_line.is_some_and(|at| at.elapsed() < LINE_EVERY) {
                    return;
                }
                self.last_line = Some(Instant::now());
                println!("{}", progress_line(status));
                let _ = std::io::stdout().flush();
            }
        }
    }

    fn note(&self, text: &str) {
        match &self.bar {
            Some(bar) => bar.println(text),
            None => eprintln!("{text}"),
        }
    }

    fn finish(&mut self, text: &str) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
        println!("{text}");
    }
}

/// `<status>: <rows> rows sent[ of ~<estimate>]`
pub fn progress_line(status: &BackfillStatus) -> String {
    let of = status
        .estimated_rows
        .filter(|&n| n > 0)
        .map_or(String::new(), |n| format!(" of ~{n}"));
    format!(
        "{} {}: {} rows sent{of}",
        status.source_table, status.status, status.rows_sent
    )
}
