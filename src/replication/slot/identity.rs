//! Which slot walhook consumed, and the highest position it may have
//! confirmed on it (`walhook.slot_identity`).
//!
//! PostgreSQL gives a slot no identity beyond its name: a slot dropped and
//! created again, or brought back by a restore or a failover, looks like the
//! old one. What walhook can know is its own past: the slot it created (or
//! first found), on which server, and every position before it is sent to
//! the server ([`advance`], from the daemon's position recorder). So the
//! server's confirmed position of the slot walhook consumed is never past
//! the recorded one, and at each start [`judge`] decides:
//!
//! - no record: adopt the slot (or create it) and record it;
//! - a record, and the slot is missing: it was dropped or lost; stop;
//! - a record, and the slot's confirmed position is past the recorded one:
//!   it was re-created or advanced by someone else; stop;
//! - otherwise it is the same slot (its position may be behind the record
//!   after a server crash: the changes are streamed again, and the store
//!   ignores events it has).

use tokio_postgres::Client;

use super::super::lsn::Lsn;
use super::{PreflightError, SlotState};

/// The recorded slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub system_identifier: String,
    pub created_lsn: Lsn,
    /// The highest position walhook may have confirmed.
    pub confirmed_lsn: Lsn,
    pub lost_wal_bytes: i64,
    pub recreations: i32,
}

/// What to do with the slot at the start of a streaming session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The recorded slot: stream from its confirmed position.
    Same { confirmed: Lsn },
    /// No record and a slot: record it, then stream from its position.
    Adopt { confirmed: Lsn },
    /// No record and no slot: create it and record it.
    Create,
}

/// Decide from the slot's state and the record; an error is fatal.
pub fn judge(
    slot: &str,
    state: &SlotState,
    recorded: Option<&Identity>,
) -> Result<Verdict, PreflightError> {
    let recorded_at = recorded.map(|r| r.confirmed_lsn);
    match (state, recorded) {
        (
            SlotState::Lost {
                confirmed_flush,
                reason,
            },
            _,
        ) => Err(PreflightError::SlotInvalidated {
            slot: slot.to_owned(),
            confirmed: recorded_at.or(Some(*confirmed_flush)),
            what: super::lost_because(reason.as_deref()),
        }),
        (SlotState::Missing, None) => Ok(Verdict::Create),
        (SlotState::Missing, Some(r)) => Err(PreflightError::SlotMissing {
            slot: slot.to_owned(),
            confirmed: r.confirmed_lsn,
        }),
        (SlotState::Ready { confirmed_flush }, None) => Ok(Verdict::Adopt {
            confirmed: *confirmed_flush,
        }),
        (SlotState::Ready { confirmed_flush }, Some(r)) if *confirmed_flush > r.confirmed_lsn => {
            Err(PreflightError::SlotReplaced {
                slot: slot.to_owned(),
                confirmed: r.confirmed_lsn,
                found: *confirmed_flush,
            })
        }
        (SlotState::Ready { confirmed_flush }, Some(_)) => Ok(Verdict::Same {
            confirmed: *confirmed_flush,
        }),
    }
}

/// The record of `slot`, if walhook has one.
pub async fn load(client: &Client, slot: &str) -> Result<Option<Identity>, tokio_postgres::Error> {
    let row = client
        .query_opt(
            "SELECT system_identifier, created_lsn::text, confirmed_lsn::text,
                    lost_wal_bytes, recreations
               FROM walhook.slot_identity WHERE slot_name = $1",
            &[&slot],
        )
        .await?;
    let Some(row) = row else { return Ok(None) };
    let lsn = |i: usize| -> Result<Lsn, tokio_postgres::Error> {
        Ok(row.try_get::<_, &str>(i)?.parse().unwrap_or_default())
    };
    Ok(Some(Identity {
        system_identifier: row.try_get(0)?,
        created_lsn: lsn(1)?,
        confirmed_lsn: lsn(2)?,
        lost_wal_bytes: row.try_get(3)?,
        recreations: row.try_get(4)?,
    }))
}

/// Record `slot` as created (or first found) at `at` on server `system_id`,
/// unless a record exists (another instance recorded it first).
pub async fn record(
    client: &Client,
    slot: &str,
    system_id: &str,
    at: Lsn,
) -> Result<(), tokio_postgres::Error> {
    client
        .execute(
            "INSERT INTO walhook.slot_identity (slot_name, system_identifier, created_lsn, confirmed_lsn)
             VALUES ($1, $2, $3::text::pg_lsn, $3::text::pg_lsn)
             ON CONFLICT (slot_name) DO NOTHING",
            &[&slot, &system_id, &at.to_string()],
        )
        .await
        .map(drop)
}

/// Whether a slot of this name is visible over the SQL connection (false when
/// the replication connection reaches another server than `--database-url`:
/// walhook then cannot check that slot and keeps no record of it).
pub async fn visible(client: &Client, slot: &str) -> Result<bool, tokio_postgres::Error> {
    client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = $1)",
            &[&slot],
        )
        .await?
        .try_get(0)
}

/// Walhook may confirm up to `to` from now on: record it first. Never moves
/// the record back.
pub async fn advance(client: &Client, slot: &str, to: Lsn) -> Result<(), tokio_postgres::Error> {
    client
        .execute(
            "UPDATE walhook.slot_identity
                SET confirmed_lsn = $2::text::pg_lsn, confirmed_at = now()
              WHERE slot_name = $1 AND confirmed_lsn < $2::text::pg_lsn",
            &[&slot, &to.to_string()],
        )
        .await
        .map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recorded(at: u64) -> Identity {
        Identity {
            system_identifier: "7".into(),
            created_lsn: Lsn(1),
            confirmed_lsn: Lsn(at),
            lost_wal_bytes: 0,
            recreations: 0,
        }
    }

    #[test]
    fn a_slot_is_adopted_or_created_when_walhook_has_no_record() {
        let ready = SlotState::Ready {
            confirmed_flush: Lsn(50),
        };
        assert_eq!(
            judge("s", &ready, None).unwrap(),
            Verdict::Adopt { confirmed: Lsn(50) }
        );
        assert_eq!(
            judge("s", &SlotState::Missing, None).unwrap(),
            Verdict::Create
        );
    }

    #[test]
    fn the_recorded_slot_streams_even_behind_the_record() {
        for at in [40, 100] {
            let state = SlotState::Ready {
                confirmed_flush: Lsn(at),
            };
            assert_eq!(
                judge("s", &state, Some(&recorded(100))).unwrap(),
                Verdict::Same { confirmed: Lsn(at) }
            );
        }
    }

    #[test]
    fn a_missing_replaced_or_lost_slot_stops_walhook() {
        let missing = judge("s", &SlotState::Missing, Some(&recorded(100))).unwrap_err();
        assert!(matches!(
            missing,
            PreflightError::SlotMissing {
                confirmed: Lsn(100),
                ..
            }
        ));
        let ahead = SlotState::Ready {
            confirmed_flush: Lsn(101),
        };
        let replaced = judge("s", &ahead, Some(&recorded(100))).unwrap_err();
        assert!(matches!(
            replaced,
            PreflightError::SlotReplaced {
                confirmed: Lsn(100),
                found: Lsn(101),
                ..
            }
        ));
        let lost = SlotState::Lost {
            confirmed_flush: Lsn(90),
            reason: Some("wal_removed".into()),
        };
        let error = judge("s", &lost, Some(&recorded(100))).unwrap_err();
        assert!(
            error.to_string().contains("passed max_slot_wal_keep_size"),
            "{error}"
        );
        assert!(matches!(
            error,
            PreflightError::SlotInvalidated {
                confirmed: Some(Lsn(100)),
                ..
            }
        ));
    }
}
