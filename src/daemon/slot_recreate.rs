//! `walhook slot recreate`: the way forward when the slot was invalidated,
//! dropped, or re-created behind walhook's back (docs/slot-safety.md).
//!
//! Without `--yes` it prints what it would do and changes nothing. With it:
//! 1. refuses while a process streams the slot (stop every walhook first);
//! 2. makes sure walhook has a record of the slot, so a crash from here on
//!    leaves `walhook run` refusing to stream and this command to be run again;
//! 3. drops the slot if it exists, and creates it again (pgoutput, on the
//!    replication connection, as `walhook run` does);
//! 4. in one transaction: resets the record to the new slot, adds the gap
//!    (from the last position walhook confirmed to the new slot's start) to
//!    the WAL declared lost, starts a backfill of every enabled routed table
//!    (with a primary key) for every enabled subscription, and writes an
//!    `audit_log` row (`action = 'slot_recreate'`) naming the gap and the
//!    backfills.
//!
//! The backfills send every row's current state as `<resource>.snapshot`
//! events once `walhook run` streams the new slot, so receivers converge.
//! What they cannot say is what was deleted in the gap: that is in the log
//! and the audit row, as the gap's positions.

use std::fmt::Write;

use serde_json::json;
use tokio_postgres::Client;
use uuid::Uuid;

use crate::config::CommonOptions;
use crate::replication::conn::ReplicationConnection;
use crate::replication::lsn::Lsn;
use crate::replication::slot::identity;

/// Exit code of a run without `--yes`: nothing was changed.
pub const NOT_CONFIRMED: u8 = 2;

/// Why the slot could not be re-created; the message says what to do.
#[derive(Debug, thiserror::Error)]
pub enum RecreateError {
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error(transparent)]
    Connect(#[from] crate::store::ConnectError),
    #[error(transparent)]
    Migrate(#[from] crate::store::migrate::MigrateError),
    #[error(
        "replication slot '{slot}' is in use by process {pid} (a running walhook?): stop \
         every walhook on this slot, then run this command again"
    )]
    Active { slot: String, pid: i32 },
    #[error(
        "replication slot '{slot}' uses plugin '{plugin}' on database '{database}': it is \
         not walhook's slot on this database; choose the right --slot"
    )]
    NotOurs {
        slot: String,
        plugin: String,
        database: String,
    },
    #[error("the replication connection failed: {0}")]
    Replication(#[from] crate::replication::conn::ConnError),
    #[error(transparent)]
    Failover(#[from] crate::replication::slot::FailoverError),
    #[error("{what} failed: {}", crate::error::describe(.source))]
    Statement {
        what: &'static str,
        source: tokio_postgres::Error,
    },
}

fn during(what: &'static str) -> impl FnOnce(tokio_postgres::Error) -> RecreateError {
    move |source| RecreateError::Statement { what, source }
}

/// The slot as the server shows it.
#[derive(Debug)]
struct Found {
    active_pid: Option<i32>,
    wal_status: String,
    confirmed: Option<Lsn>,
    plugin: String,
    database: String,
    current_database: String,
}

/// A backfill to start: subscription and routed table.
#[derive(Debug)]
struct Target {
    subscription: Uuid,
    name: Option<String>,
    table: String,
    has_primary_key: bool,
}

/// What the command found and will do.
#[derive(Debug)]
struct Plan {
    slot: String,
    found: Option<Found>,
    recorded: Option<identity::Identity>,
    targets: Vec<Target>,
}

impl Plan {
    /// Where the gap begins: the last position walhook confirmed (its
    /// record), else the slot's own, else nowhere (`None`: nothing known).
    fn gap_start(&self) -> Option<Lsn> {
        self.recorded
            .as_ref()
            .map(|r| r.confirmed_lsn)
            .or_else(|| self.found.as_ref().and_then(|f| f.confirmed))
    }

    fn describe(&self) -> String {
        let mut out = String::new();
        let slot = &self.slot;
        let _ = match &self.found {
            None => writeln!(out, "replication slot '{slot}' does not exist"),
            Some(f) => writeln!(
                out,
                "replication slot '{slot}': wal_status {}, confirmed at {}",
                if f.wal_status.is_empty() {
                    "-"
                } else {
                    &f.wal_status
                },
                f.confirmed.map_or("-".into(), |l| l.to_string())
            ),
        };
        let _ = match &self.recorded {
            None => writeln!(out, "walhook has no record of the slot it consumed"),
            Some(r) => writeln!(
                out,
                "walhook last confirmed {} on the slot it consumed (created or found at {})",
                r.confirmed_lsn, r.created_lsn
            ),
        };
        let _ = writeln!(
            out,
            "re-creating it drops it (if it exists) and creates it again: the changes after {} up to the new slot's start are lost to walhook",
            self.gap_start().map_or("-".into(), |l| l.to_string())
        );
        let backfilled: Vec<&Target> = self.targets.iter().filter(|t| t.has_primary_key).collect();
        let _ = writeln!(
            out,
            "backfills to start, so receivers converge ({}):",
            backfilled.len()
        );
        for t in &backfilled {
            let _ = writeln!(
                out,
                "  {} -> subscription {}{}",
                t.table,
                t.subscription,
                t.name
                    .as_deref()
                    .map_or(String::new(), |n| format!(" ({n})"))
            );
        }
        for t in self.targets.iter().filter(|t| !t.has_primary_key) {
            let _ = writeln!(
                out,
                "  skipped: {} -> subscription {}: the table has no primary key (backfills read in key order)",
                t.table, t.subscription
            );
        }
        out
    }
}

async fn plan(client: &Client, slot: &str) -> Result<Plan, RecreateError> {
    let found = client
        .query_opt(
            "SELECT active_pid, coalesce(wal_status, ''), confirmed_flush_lsn::text,
                    coalesce(plugin, ''), coalesce(database, ''), current_database()
               FROM pg_replication_slots WHERE slot_name = $1",
            &[&slot],
        )
        .await
        .map_err(during("reading the replication slot"))?
        .map(|row| Found {
            active_pid: row.get(0),
            wal_status: row.get(1),
            confirmed: row.get::<_, Option<String>>(2).and_then(|l| l.parse().ok()),
            plugin: row.get(3),
            database: row.get(4),
            current_database: row.get(5),
        });
    let recorded = identity::load(client, slot)
        .await
        .map_err(during("reading walhook.slot_identity"))?;
    let targets = client
        .query(
            "SELECT s.id, s.name, r.source_table::text,
                    EXISTS (SELECT 1 FROM pg_index i
                             WHERE i.indrelid = r.source_table AND i.indisprimary)
               FROM walhook.subscriptions s CROSS JOIN walhook.routes r
              WHERE NOT s.disabled AND r.enabled
              ORDER BY s.created_at, s.id, r.source_table::text",
            &[],
        )
        .await
        .map_err(during("reading subscriptions and routes"))?
        .iter()
        .map(|row| Target {
            subscription: row.get(0),
            name: row.get(1),
            table: row.get(2),
            has_primary_key: row.get(3),
        })
        .collect();
    Ok(Plan {
        slot: slot.to_owned(),
        found,
        recorded,
        targets,
    })
}

/// `walhook slot recreate [--yes]`: the process's exit code.
pub async fn run(options: &CommonOptions, yes: bool) -> Result<u8, RecreateError> {
    let mut client = crate::store::connect(&options.database()?).await?;
    crate::store::migrate::check_version(&client).await?;
    let slot = options.slot.as_str();
    let plan = plan(&client, slot).await?;
    print!("{}", plan.describe());
    if let Some(found) = &plan.found {
        if found.plugin != "pgoutput" || found.database != found.current_database {
            return Err(RecreateError::NotOurs {
                slot: slot.to_owned(),
                plugin: found.plugin.clone(),
                database: found.database.clone(),
            });
        }
        if let Some(pid) = found.active_pid {
            return Err(RecreateError::Active {
                slot: slot.to_owned(),
                pid,
            });
        }
    }
    if !yes {
        println!("nothing changed: run again with --yes to do it");
        return Ok(NOT_CONFIRMED);
    }

    let mut conn = ReplicationConnection::connect(&options.replication()?).await?;
    let system = conn.identify_system().await?;
    // from here on a crash leaves a record, so `walhook run` refuses the
    // new slot and this command is run again
    if let Some(start) = plan.gap_start() {
        identity::record(&client, slot, &system.system_id, start)
            .await
            .map_err(during("recording the slot"))?;
    }
    if plan.found.is_some() {
        client
            .execute("SELECT pg_drop_replication_slot($1)", &[&slot])
            .await
            .map_err(during("dropping the replication slot"))?;
        tracing::info!(slot, "dropped replication slot");
    }
    let start = conn.create_slot(slot).await?;
    if options.slot_failover {
        crate::replication::slot::ensure_failover(&client, &mut conn, slot).await?;
    }
    drop(conn);
    tracing::info!(slot, %start, "created replication slot");

    let from = plan.gap_start().unwrap_or(start).min(start);
    let lost = i64::try_from(start.0 - from.0).unwrap_or(i64::MAX);
    let tx = client
        .transaction()
        .await
        .map_err(during("starting the transaction"))?;
    tx.execute(
        "INSERT INTO walhook.slot_identity
                (slot_name, system_identifier, created_lsn, confirmed_lsn, lost_wal_bytes, recreations)
         VALUES ($1, $2, $3::text::pg_lsn, $3::text::pg_lsn, $4, 1)
         ON CONFLICT (slot_name) DO UPDATE
            SET system_identifier = EXCLUDED.system_identifier,
                created_lsn = EXCLUDED.created_lsn, created_at = now(),
                confirmed_lsn = EXCLUDED.confirmed_lsn, confirmed_at = now(),
                lost_wal_bytes = walhook.slot_identity.lost_wal_bytes + EXCLUDED.lost_wal_bytes,
                recreations = walhook.slot_identity.recreations + 1",
        &[&slot, &system.system_id, &start.to_string(), &lost],
    )
    .await
    .map_err(during("recording the new slot"))?;
    let mut backfills = Vec::new();
    for target in plan.targets.iter().filter(|t| t.has_primary_key) {
        let id: Uuid = tx
            .query_one(
                "INSERT INTO walhook.backfills (subscription_id, source_table)
                 VALUES ($1, $2::text::regclass) RETURNING id",
                &[&target.subscription, &target.table],
            )
            .await
            .map_err(during("starting a backfill"))?
            .get(0);
        backfills.push(json!({
            "id": id,
            "subscription_id": target.subscription,
            "source_table": target.table,
        }));
    }
    let skipped: Vec<_> = plan
        .targets
        .iter()
        .filter(|t| !t.has_primary_key)
        .map(|t| json!({"subscription_id": t.subscription, "source_table": t.table}))
        .collect();
    let before = json!({
        "slot": slot,
        "wal_status": plan.found.as_ref().map(|f| f.wal_status.clone()),
        "exists": plan.found.is_some(),
        "slot_confirmed_lsn": plan.found.as_ref().and_then(|f| f.confirmed).map(|l| l.to_string()),
        "recorded_confirmed_lsn": plan.recorded.as_ref().map(|r| r.confirmed_lsn.to_string()),
    });
    let after = json!({
        "slot": slot,
        "system_identifier": system.system_id,
        "start_lsn": start.to_string(),
        "lost_from_lsn": from.to_string(),
        "lost_to_lsn": start.to_string(),
        "lost_wal_bytes": lost,
        "backfills": backfills,
        "skipped_without_primary_key": skipped,
    });
    tx.execute(
        "INSERT INTO walhook.audit_log (actor, action, object, object_id, before, after)
         VALUES (walhook.audit_actor(), 'slot_recreate', 'replication_slot', $1, $2, $3)",
        &[&slot, &before, &after],
    )
    .await
    .map_err(during("writing the audit log"))?;
    tx.commit()
        .await
        .map_err(during("committing the new slot's record"))?;
    tracing::warn!(
        slot,
        lost_from = %from,
        lost_to = %start,
        lost_wal_bytes = lost,
        "the changes between {from} and {start} are lost to walhook: no event was built from them (deletions among them reach no receiver); backfills of every routed table send the current rows"
    );
    println!(
        "re-created replication slot '{slot}' at {start}; the changes between {from} and {start} \
         ({lost} bytes of WAL) are lost to walhook (in walhook.audit_log, and the \
         walhook_slot_lost_wal_bytes metric)"
    );
    println!(
        "started {} backfills; start walhook run: it streams the new slot and the backfills send \
         every routed table's current rows (walhook status shows their progress)",
        backfills.len()
    );
    Ok(0)
}
