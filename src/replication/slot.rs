//! Pre-flight checks of the server and the slot, over the SQL connection.
//!
//! Before streaming, walhook makes sure logical decoding can work at all and that
//! its slot is usable, so that misconfiguration ends in one clear message naming
//! the fix rather than in a reconnect loop.
//!
//! A slot is never lost silently (docs/slot-safety.md): an invalidated slot
//! (`wal_status = 'lost'`, or the server's "can no longer get changes" on
//! `START_REPLICATION`), a slot that disappeared, and one re-created or moved
//! behind walhook's back ([`identity`]) each stop walhook with a
//! [`PreflightError`] naming the slot, the last position walhook confirmed on
//! it and the way forward: `walhook slot recreate`, which re-creates the slot
//! and backfills every routed table to every subscription.

pub mod identity;

use tokio_postgres::Client;

use super::conn::{ConnError, ReplicationConnection};
use super::lsn::Lsn;

/// What the SQL connection told us about the slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SlotState {
    /// The slot does not exist yet: create it.
    Missing,
    /// The slot exists and is usable; its confirmed position.
    Ready { confirmed_flush: Lsn },
    /// The slot exists but was invalidated (`wal_status = 'lost'`): what it
    /// needs to decode the changes after its confirmed position is gone.
    Lost {
        confirmed_flush: Lsn,
        /// `invalidation_reason` (PostgreSQL 17+), e.g. `wal_removed`.
        reason: Option<String>,
    },
}

/// The command that re-creates the slot and starts the backfills.
pub fn recover_command(slot: &str) -> String {
    format!("walhook slot recreate --slot {slot} --yes")
}

/// A position for a message: `-` when unknown.
fn position(lsn: &Option<Lsn>) -> String {
    lsn.map_or_else(|| "unknown".to_owned(), |l| l.to_string())
}

/// The server or slot cannot be used; the message says what to change.
#[derive(Debug, thiserror::Error)]
pub enum PreflightError {
    #[error(
        "wal_level is '{0}', but walhook needs logical decoding: set wal_level = logical \
         in postgresql.conf (or ALTER SYSTEM SET wal_level = logical) and restart PostgreSQL"
    )]
    WalLevel(String),
    #[error(
        "replication slot '{slot}' was invalidated ({what}): the server no longer keeps what \
         the slot needs, so the changes after its last confirmed position {} cannot be \
         streamed and are lost to walhook. walhook stops instead of reconnecting. \
         The way forward: `{}` re-creates the slot and backfills every routed table to every \
         enabled subscription, so receivers converge (see docs/slot-safety.md)",
        position(.confirmed),
        recover_command(.slot)
    )]
    SlotInvalidated {
        slot: String,
        confirmed: Option<Lsn>,
        what: String,
    },
    #[error(
        "replication slot '{slot}' is gone: walhook last confirmed {confirmed} on it \
         (walhook.slot_identity) and no slot of that name exists on this server any more \
         (dropped, a restored backup, or a failover without slot synchronisation). A new \
         slot would silently skip the changes made since, so walhook stops. The way forward: \
         `{}` creates the slot and backfills every routed table to every enabled \
         subscription, so receivers converge (see docs/slot-safety.md)",
        recover_command(.slot)
    )]
    SlotMissing { slot: String, confirmed: Lsn },
    #[error(
        "replication slot '{slot}' is not the slot walhook consumed: its confirmed position \
         {found} is past {confirmed}, the last position walhook confirmed on it \
         (walhook.slot_identity), so it was re-created or advanced behind walhook's back \
         and the changes in between are lost to walhook. walhook stops instead of streaming \
         from it. The way forward: `{}` re-creates the slot and backfills every routed table \
         to every enabled subscription, so receivers converge (see docs/slot-safety.md)",
        recover_command(.slot)
    )]
    SlotReplaced {
        slot: String,
        confirmed: Lsn,
        found: Lsn,
    },
    #[error(
        "replication slot '{slot}' uses plugin '{plugin}' on database '{database}', not \
         pgoutput on this database: choose another --slot, or drop that slot"
    )]
    SlotMismatch {
        slot: String,
        plugin: String,
        database: String,
    },
    #[error(
        "--slot-failover needs PostgreSQL 17 or later (this server is {0}): failover slots \
         are synchronised to standbys from 17 on; drop the option, or upgrade"
    )]
    FailoverUnsupported(String),
    #[error("database error during pre-flight checks: {}", crate::error::describe(.0))]
    Database(#[from] tokio_postgres::Error),
}

impl PreflightError {
    /// Only a database error [`crate::error`] calls transient (a lost
    /// connection, a server shutting down) is worth retrying.
    pub fn is_transient(&self) -> bool {
        match self {
            PreflightError::Database(error) => {
                crate::error::classify(error) == crate::error::Disposition::Transient
            }
            _ => false,
        }
    }
}

/// Check `wal_level` and the slot.
pub async fn preflight(client: &Client, slot: &str) -> Result<SlotState, PreflightError> {
    let wal_level: String = client
        .query_one("SELECT current_setting('wal_level')", &[])
        .await?
        .try_get(0)?;
    if wal_level != "logical" {
        return Err(PreflightError::WalLevel(wal_level));
    }
    let row = client
        .query_opt(
            "SELECT coalesce(plugin, ''), coalesce(database, ''), current_database(),
                    coalesce(wal_status, ''), confirmed_flush_lsn::text,
                    to_jsonb(s) ->> 'invalidation_reason'
               FROM pg_replication_slots s WHERE slot_name = $1",
            &[&slot],
        )
        .await?;
    let Some(row) = row else {
        return Ok(SlotState::Missing);
    };
    let plugin: String = row.try_get(0)?;
    let database: String = row.try_get(1)?;
    let current: String = row.try_get(2)?;
    let wal_status: String = row.try_get(3)?;
    let confirmed: Option<String> = row.try_get(4)?;
    let confirmed_flush = confirmed
        .and_then(|s| s.parse::<Lsn>().ok())
        .unwrap_or_default();
    if wal_status == "lost" {
        return Ok(SlotState::Lost {
            confirmed_flush,
            reason: row.try_get(5)?,
        });
    }
    if plugin != "pgoutput" || database != current {
        return Err(PreflightError::SlotMismatch {
            slot: slot.to_owned(),
            plugin,
            database,
        });
    }
    Ok(SlotState::Ready { confirmed_flush })
}

/// Why a slot is `lost`, for people: its `invalidation_reason` (17+)
/// explained, or the usual cause when the server does not say.
pub fn lost_because(reason: Option<&str>) -> String {
    let why = match reason {
        None => "most often its WAL was removed because it passed max_slot_wal_keep_size",
        Some("wal_removed") => "its WAL was removed: it passed max_slot_wal_keep_size",
        Some("idle_timeout") => "nobody streamed it for longer than idle_replication_slot_timeout",
        Some("rows_removed") => {
            "catalog rows it needed were removed (on a standby: hot_standby_feedback)"
        }
        Some("wal_level_insufficient") => "wal_level was lowered below logical",
        Some(_) => "see PostgreSQL's documentation of invalidation_reason",
    };
    match reason {
        Some(reason) => format!("wal_status = lost, invalidation_reason = {reason}: {why}"),
        None => format!("wal_status = lost; {why}"),
    }
}

/// What the server said, when a replication error says the slot was
/// invalidated ("can no longer get changes from replication slot", with a
/// detail such as "This slot has been invalidated because it exceeded the
/// maximum reserved size."; "can no longer access replication slot" on 18).
/// Retrying cannot help.
pub fn invalidation(error: &ConnError) -> Option<String> {
    let ConnError::Server {
        message, detail, ..
    } = error
    else {
        return None;
    };
    // 15 to 17 say "get changes", 18 "access"
    let invalidated = message.contains("can no longer get changes from replication slot")
        || message.contains("can no longer access replication slot")
        || detail
            .as_deref()
            .is_some_and(|d| d.contains("has been invalidated"));
    invalidated.then(|| match detail {
        Some(detail) => format!("{message}: {detail}"),
        None => message.clone(),
    })
}

/// `--slot-failover`: make the slot a failover slot (PostgreSQL 17+), with
/// `ALTER_REPLICATION_SLOT` on the replication connection (the slot must not
/// be streamed by another process). True when it was switched now.
pub async fn ensure_failover(
    client: &Client,
    conn: &mut ReplicationConnection,
    slot: &str,
) -> Result<bool, FailoverError> {
    let row = client
        .query_one(
            "SELECT current_setting('server_version_num')::int, current_setting('server_version'),
                    (SELECT (to_jsonb(s) ->> 'failover')::boolean
                       FROM pg_replication_slots s WHERE slot_name = $1)",
            &[&slot],
        )
        .await
        .map_err(PreflightError::from)?;
    let number: i32 = row.try_get(0).map_err(PreflightError::from)?;
    if number < 170_000 {
        let version: String = row.try_get(1).map_err(PreflightError::from)?;
        return Err(PreflightError::FailoverUnsupported(version).into());
    }
    let failover: Option<bool> = row.try_get(2).map_err(PreflightError::from)?;
    if failover == Some(true) {
        return Ok(false);
    }
    conn.simple_query(&format!(
        "ALTER_REPLICATION_SLOT {} (FAILOVER true)",
        super::conn::quote_ident(slot)
    ))
    .await?;
    Ok(true)
}

/// Why the slot could not be made a failover slot.
#[derive(Debug, thiserror::Error)]
pub enum FailoverError {
    #[error(transparent)]
    Preflight(#[from] PreflightError),
    #[error(transparent)]
    Replication(#[from] ConnError),
}

/// The start-up warning when `max_slot_wal_keep_size` is -1 (unlimited):
/// what it risks and what to set. None when a limit is set.
pub async fn wal_keep_warning(client: &Client) -> Result<Option<String>, tokio_postgres::Error> {
    let setting: String = client
        .query_one("SELECT current_setting('max_slot_wal_keep_size')", &[])
        .await?
        .try_get(0)?;
    Ok(unlimited_keep_warning(&setting))
}

fn unlimited_keep_warning(setting: &str) -> Option<String> {
    (setting.trim() == "-1").then(|| {
        "max_slot_wal_keep_size is -1 (unlimited): while walhook is stopped or behind, its slot \
         keeps every WAL segment from its restart_lsn, and the primary's disk can fill until \
         PostgreSQL stops. Set a limit your disk can hold beside the database, e.g. \
         ALTER SYSTEM SET max_slot_wal_keep_size = '50GB'; SELECT pg_reload_conf(); \
         a slot that passes it is invalidated instead, and walhook stops naming the way \
         forward (walhook slot recreate; see docs/slot-safety.md). Watch \
         walhook_slot_retained_wal_bytes meanwhile"
            .to_owned()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_server_error_of_an_invalidated_slot_is_recognised() {
        let error = ConnError::Server {
            code: "55000".into(),
            message: "can no longer get changes from replication slot \"s\"".into(),
            detail: Some(
                "This slot has been invalidated because it exceeded the maximum reserved size."
                    .into(),
            ),
            hint: None,
        };
        let what = invalidation(&error).expect("recognised");
        assert!(
            what.contains("exceeded the maximum reserved size"),
            "{what}"
        );
        let other = ConnError::Server {
            code: "55000".into(),
            message: "replication slot \"s\" is active for PID 1".into(),
            detail: None,
            hint: None,
        };
        assert!(invalidation(&other).is_none());
        assert!(invalidation(&ConnError::Protocol("x".into())).is_none());
    }

    #[test]
    fn an_unlimited_keep_size_is_warned_about_with_what_to_set() {
        let warning = unlimited_keep_warning("-1").expect("warned");
        assert!(warning.contains("max_slot_wal_keep_size"), "{warning}");
        assert!(warning.contains("ALTER SYSTEM SET"), "{warning}");
        assert!(unlimited_keep_warning("50GB").is_none());
        assert!(unlimited_keep_warning("1MB").is_none());
    }

    #[test]
    fn messages_name_the_slot_the_position_and_the_command() {
        let error = PreflightError::SlotMissing {
            slot: "walhook".into(),
            confirmed: Lsn(0x16_B374_D848),
        };
        let text = error.to_string();
        assert!(text.contains("'walhook'"), "{text}");
        assert!(text.contains("16/B374D848"), "{text}");
        assert!(
            text.contains("walhook slot recreate --slot walhook"),
            "{text}"
        );
    }
}
