//! Pre-flight checks of the server and the slot, over the SQL connection.
//!
//! Before streaming, walhook makes sure logical decoding can work at all and that
//! its slot is usable, so that misconfiguration ends in one clear message naming
//! the fix rather than in a reconnect loop.

use tokio_postgres::Client;

use super::lsn::Lsn;

/// What the SQL connection told us about the slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SlotState {
    /// The slot does not exist yet: create it.
    Missing,
    /// The slot exists and is usable; its confirmed position.
    Ready { confirmed_flush: Lsn },
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
        "replication slot '{slot}' was invalidated (wal_status = lost: the WAL it needed \
         was removed, see max_slot_wal_keep_size). Changes in the lost WAL cannot be \
         streamed: drop the slot with SELECT pg_drop_replication_slot('{slot}') and \
         restart walhook"
    )]
    SlotInvalidated { slot: String },
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
    if wal_status == "lost" {
        return Err(PreflightError::SlotInvalidated {
            slot: slot.to_owned(),
        });
    }
    if plugin != "pgoutput" || database != current {
        return Err(PreflightError::SlotMismatch {
            slot: slot.to_owned(),
            plugin,
            database,
        });
    }
    let confirmed_flush = confirmed
        .and_then(|s| s.parse::<Lsn>().ok())
        .unwrap_or_default();
    Ok(SlotState::Ready { confirmed_flush })
}
