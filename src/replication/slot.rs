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

use super::conn::ConnError;
use super::lsn::Lsn;

/// What the SQL connection told us about the slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SlotState {
    /// The slot does not exist yet: create it.
    Missing,
    /// The slot exists and is usable; its confirmed position.
    Ready { confirmed_flush: Lsn },
    /// The slot exists but was invalidated (`wal_status = 'lost'`): the WAL
    /// after its confirmed position is gone.
    Lost { confirmed_flush: Lsn },
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
        "replication slot '{slot}' was invalidated ({what}): the WAL it kept was removed \
         (max_slot_wal_keep_size), so the changes after its last confirmed position {} \
         cannot be streamed and are lost to walhook. walhook stops instead of reconnecting. \
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
                    coalesce(wal_status, ''), confirmed_flush_lsn::text
               FROM pg_replication_slots WHERE slot_name = $1",
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
        return Ok(SlotState::Lost { confirmed_flush });
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

/// What the server said, when a replication error says the slot was
/// invalidated ("can no longer get changes from replication slot", with a
/// detail such as "This slot has been invalidated because it exceeded the
/// maximum reserved size."). Retrying cannot help.
pub fn invalidation(error: &ConnError) -> Option<String> {
    let ConnError::Server {
        message, detail, ..
    } = error
    else {
        return None;
    };
    let invalidated = message.contains("can no longer get changes from replication slot")
        || detail
            .as_deref()
            .is_some_and(|d| d.contains("has been invalidated"));
    invalidated.then(|| match detail {
        Some(detail) => format!("{message}: {detail}"),
        None => message.clone(),
    })
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
