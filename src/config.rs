//! Bootstrap options: the command line and its environment variables.
//!
//! Only what is needed to reach the database and serve HTTP lives here; runtime
//! configuration (routes, subscriptions, settings) lives in SQL tables so that it
//! travels in the replication stream and changes without a restart.

use std::net::SocketAddr;

use clap::{Args, Parser, Subcommand, ValueEnum};
use uuid::Uuid;

use crate::tls::ConnectConfig;

/// walhook: committed PostgreSQL row changes in, signed webhooks out.
#[derive(Debug, Parser)]
#[command(name = "walhook", version, about, long_about = None)]
pub struct Cli {
    #[command(flatten)]
    pub common: CommonOptions,
    #[command(subcommand)]
    pub command: Command,
}

/// Options shared by every command.
#[derive(Debug, Clone, Args)]
pub struct CommonOptions {
    /// PostgreSQL connection: a libpq URL (postgres://user:pass@host:port/db?sslmode=...)
    /// or a key=value string.
    #[arg(long, env = "WALHOOK_DATABASE_URL", global = true)]
    pub database_url: Option<String>,

    /// Connection for the replication stream when it must differ from
    /// --database-url (e.g. to bypass a connection pooler). Defaults to
    /// --database-url.
    #[arg(long, env = "WALHOOK_REPLICATION_URL", global = true)]
    pub replication_url: Option<String>,

    /// Name of the logical replication slot walhook reads.
    #[arg(long, env = "WALHOOK_SLOT", default_value = "walhook", global = true)]
    pub slot: String,

    /// Make the slot a failover slot (PostgreSQL 17+): a standby with
    /// sync_replication_slots = on keeps a copy of it, which walhook continues
    /// from after a promotion. A slot walhook finds is switched to failover.
    /// See docs/slot-safety.md for the primary's and standby's settings.
    #[arg(long, env = "WALHOOK_SLOT_FAILOVER", global = true)]
    pub slot_failover: bool,

    /// Name of the publication walhook keeps in step with its routes.
    #[arg(
        long,
        env = "WALHOOK_PUBLICATION",
        default_value = "walhook",
        global = true
    )]
    pub publication: String,

    /// Address of the HTTP server (/metrics, /.well-known/jwks.json, /healthz, /readyz, /v1 API).
    #[arg(
        long,
        env = "WALHOOK_HTTP_ADDR",
        default_value = "127.0.0.1:9750",
        global = true
    )]
    pub http_addr: SocketAddr,

    /// Log format.
    #[arg(long, env = "WALHOOK_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create or upgrade the walhook schema (idempotent).
    Migrate,
    /// Run the daemon: stream changes, store events, deliver webhooks.
    Run,
    /// Embedded quickstart: a throwaway cluster, the example directory, a demo
    /// receiver that verifies signatures, and sample changes.
    Dev(DevArgs),
    /// Summary of the slot, lag, recent events and deliveries, failing subscriptions.
    Status(StatusArgs),
    /// Manage the Ed25519 signing keys.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Queue stored events again for one subscription (same event ids).
    Replay(ReplayArgs),
    /// Manage the bearer tokens of the /v1 management API.
    #[command(subcommand, name = "api-tokens")]
    ApiTokens(ApiTokensCommand),
    /// Send a table's current rows to one subscription as `<resource>.snapshot`
    /// events, consistent with the stream; prints the backfill's id, then its
    /// progress (`walhook run` does the work).
    Backfill(BackfillArgs),
    /// The replication slot: the way forward when it was invalidated, dropped
    /// or re-created behind walhook's back (docs/slot-safety.md).
    #[command(subcommand)]
    Slot(SlotCommand),
}

#[derive(Debug, Subcommand)]
pub enum SlotCommand {
    /// Drop (if it exists) and create the slot again, reset walhook's record
    /// of it, declare the changes between the last confirmed position and the
    /// new slot's start lost (log, walhook.audit_log, metric), and start a
    /// backfill of every enabled routed table for every enabled subscription
    /// so receivers converge. Stop every walhook on the slot first. Without
    /// --yes, prints what it would do and exits 2.
    Recreate {
        /// Do it (without: print the plan, change nothing).
        #[arg(long)]
        yes: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum ApiTokensCommand {
    /// Create a token; it is printed once, alone on the last line of stdout.
    Create {
        /// A unique name; API changes made with the token are audited as api:<name>.
        #[arg(long)]
        name: String,
    },
    /// List the tokens (names and creation times; tokens are stored hashed).
    List,
    /// Revoke (delete) a token: requests with it get 401.
    Revoke {
        /// The token's name.
        name: String,
    },
}

#[derive(Debug, Args)]
pub struct DevArgs {
    /// Exit 0 once every sample event was delivered and verified (non-zero otherwise).
    #[arg(long)]
    pub once: bool,
    /// Which example to run on: the ecosystem directory
    /// (sql/examples/directory.sql) or the IAM server (sql/examples/iam.sql).
    #[arg(long, value_enum, default_value_t = Example::Directory)]
    pub example: Example,
}

/// The example schemas and routes `walhook dev` can load.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Example {
    Directory,
    Iam,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Make a new signing key current; the previous one stays in the JWKS until retired.
    Rotate,
    /// Retire a key: it leaves the JWKS and signs nothing more.
    Retire {
        /// The key's kid (see walhook.signing_keys). A kid is base64url and may
        /// start with '-', so it is never taken for an option.
        #[arg(allow_hyphen_values = true)]
        kid: String,
    },
}

#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// Subscription id.
    #[arg(long)]
    pub subscription: Uuid,
    /// First revision to replay (inclusive).
    #[arg(long)]
    pub from_revision: i64,
    /// Last revision to replay (inclusive); all later events when omitted.
    #[arg(long)]
    pub to_revision: Option<i64>,
}

#[derive(Debug, Args)]
pub struct BackfillArgs {
    /// Subscription id: the only receiver of the snapshot events.
    #[arg(long)]
    pub subscription: Uuid,
    /// The routed table to read (e.g. directory.organisations).
    #[arg(long)]
    pub table: String,
    /// Only rows matching this SQL boolean expression over the table's columns.
    #[arg(long = "where", value_name = "SQL")]
    pub where_clause: Option<String>,
    /// Read at most this many rows per second (the `rows_per_second` column).
    #[arg(long, value_parser = clap::value_parser!(i32).range(1..))]
    pub rows_per_second: Option<i32>,
    /// Return right after printing the backfill's id.
    #[arg(long)]
    pub detach: bool,
}

/// The option is missing or malformed.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(
        "no database given: pass --database-url or set WALHOOK_DATABASE_URL \
         (e.g. postgres://walhook@127.0.0.1:5432/app)"
    )]
    MissingDatabaseUrl,
    #[error("invalid database URL: {0}; use a libpq URL or key=value string")]
    BadDatabaseUrl(String),
}

impl CommonOptions {
    /// The SQL connection configuration.
    pub fn database(&self) -> Result<ConnectConfig, ConfigError> {
        let url = self
            .database_url
            .as_deref()
            .ok_or(ConfigError::MissingDatabaseUrl)?;
        parse_database_url(url)
    }

    /// The replication connection configuration.
    pub fn replication(&self) -> Result<ConnectConfig, ConfigError> {
        match &self.replication_url {
            Some(url) => parse_database_url(url),
            None => self.database(),
        }
    }
}

fn parse_database_url(url: &str) -> Result<ConnectConfig, ConfigError> {
    let mut database =
        ConnectConfig::parse(url).map_err(|e| ConfigError::BadDatabaseUrl(e.to_string()))?;
    if database.config.get_application_name().is_none() {
        database.config.application_name("walhook");
    }
    Ok(database)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kid_starting_with_a_hyphen_is_a_kid_not_an_option() {
        let cli = Cli::try_parse_from(["walhook", "keys", "retire", "-4bV0x", "--slot", "s"])
            .expect("parses");
        match cli.command {
            Command::Keys(KeysCommand::Retire { kid }) => assert_eq!(kid, "-4bV0x"),
            other => panic!("parsed as {other:?}"),
        }
        assert_eq!(cli.common.slot, "s");
    }
}

/// Runtime settings (`walhook.settings`), as values. The store
/// reads them (`store::settings`) and publishes changes on a watch channel;
/// every stage reads this type from that channel, so it lives here, below all
/// of them.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub allow_insecure_targets: bool,
    pub event_retention: std::time::Duration,
    pub attempt_retention: std::time::Duration,
    pub max_payload_bytes: usize,
    /// How long a first attempt may wait in memory before it gets its
    /// pending row (`first_attempt_hold`, default 1 s).
    pub first_attempt_hold: std::time::Duration,
    /// Which attempts keep the headers they sent
    /// (`attempt_request_headers`, default `failed`).
    pub attempt_request_headers: RequestHeadersKept,
    /// The pending rows a slow or failing subscription is given at once;
    /// its further deliveries wait in their events (`max_pending_rows`,
    /// default 10000; see `delivery::deferrals`).
    pub max_pending_rows: i64,
}

/// Which attempts store the headers they sent
/// (`walhook.delivery_attempts.request_headers`): about 600 bytes a row,
/// which costs PostgreSQL about 7 µs of CPU per attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RequestHeadersKept {
    /// Every attempt's.
    All,
    /// Those of attempts that did not succeed, the ones a receiver's
    /// operator asks about.
    #[default]
    Failed,
    /// None.
    None,
}

impl RequestHeadersKept {
    /// The setting's value as stored (`all`, `failed`, `none`); an
    /// unknown one (the database refuses them) is the default.
    pub fn parse(value: &str) -> Self {
        match value {
            "all" => RequestHeadersKept::All,
            "none" => RequestHeadersKept::None,
            _ => RequestHeadersKept::Failed,
        }
    }

    /// Whether an attempt with this outcome keeps its headers.
    pub fn keeps(self, succeeded: bool) -> bool {
        match self {
            RequestHeadersKept::All => true,
            RequestHeadersKept::Failed => !succeeded,
            RequestHeadersKept::None => false,
        }
    }
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            allow_insecure_targets: false,
            event_retention: std::time::Duration::from_secs(7 * 86_400),
            attempt_retention: std::time::Duration::from_secs(30 * 86_400),
            max_payload_bytes: 1_048_576,
            first_attempt_hold: std::time::Duration::from_secs(1),
            attempt_request_headers: RequestHeadersKept::default(),
            max_pending_rows: 10_000,
        }
    }
}
