//! `walhook migrate`: versioned schema files, embedded in the binary.
//!
//! Each file under `sql/migrations/` is applied once, in version order, inside
//! its own transaction, and recorded in `walhook.schema_migrations`. A
//! session-level advisory lock serialises concurrent migrators. A database whose
//! recorded version is newer than the newest file this binary knows is refused:
//! an older binary must not run against a schema it does not understand.

use tokio_postgres::Client;

/// `(version, name, sql)` of every migration, in order.
pub const MIGRATIONS: &[(i32, &str, &str)] = &[
    (
        1,
        "core",
        include_str!("../../sql/migrations/0001_core.sql"),
    ),
    (
        2,
        "config",
        include_str!("../../sql/migrations/0002_config.sql"),
    ),
    (
        3,
        "claim_index",
        include_str!("../../sql/migrations/0003_claim_index.sql"),
    ),
    (
        4,
        "first_attempts",
        include_str!("../../sql/migrations/0004_first_attempts.sql"),
    ),
    (
        5,
        "idna_and_replay",
        include_str!("../../sql/migrations/0005_idna_and_replay.sql"),
    ),
    (
        6,
        "api_audit",
        include_str!("../../sql/migrations/0006_api_audit.sql"),
    ),
    (
        7,
        "backfills",
        include_str!("../../sql/migrations/0007_backfills.sql"),
    ),
    (
        8,
        "event_names",
        include_str!("../../sql/migrations/0008_event_names.sql"),
    ),
    (
        9,
        "statement_level_references",
        include_str!("../../sql/migrations/0009_statement_level_references.sql"),
    ),
    (
        10,
        "obligations",
        include_str!("../../sql/migrations/0010_obligations.sql"),
    ),
    (
        11,
        "retry_limits",
        include_str!("../../sql/migrations/0011_retry_limits.sql"),
    ),
    (
        12,
        "slot_identity",
        include_str!("../../sql/migrations/0012_slot_identity.sql"),
    ),
    (
        13,
        "subscriber_control",
        include_str!("../../sql/migrations/0013_subscriber_control.sql"),
    ),
    (
        14,
        "row_filters",
        include_str!("../../sql/migrations/0014_row_filters.sql"),
    ),
    (
        15,
        "endpoint_health",
        include_str!("../../sql/migrations/0015_endpoint_health.sql"),
    ),
    (
        16,
        "deliveries_by_subscription",
        include_str!("../../sql/migrations/0016_deliveries_by_subscription.sql"),
    ),
    (
        17,
        "attempt_request_headers",
        include_str!("../../sql/migrations/0017_attempt_request_headers.sql"),
    ),
    (
        18,
        "rule_columns",
        include_str!("../../sql/migrations/0018_rule_columns.sql"),
    ),
    (
        19,
        "ordered_pending",
        include_str!("../../sql/migrations/0019_ordered_pending.sql"),
    ),
    (
        20,
        "deferred_deliveries",
        include_str!("../../sql/migrations/0020_deferred_deliveries.sql"),
    ),
];

/// The newest schema version this binary knows.
pub fn latest_version() -> i32 {
    MIGRATIONS.last().map(|m| m.0).unwrap_or(0)
}

/// Arbitrary constant for `pg_advisory_lock`: "walhook migrate".
const MIGRATE_LOCK_KEY: i64 = 0x7761_6c68_6f6f_6b01;

#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    #[error(
        "the database's walhook schema is at version {found}, newer than this binary \
         knows (up to {known}): upgrade walhook before running it against this database"
    )]
    SchemaTooNew { found: i32, known: i32 },
    #[error(
        "the walhook schema is not installed or not up to date (version {found}, this \
         binary needs {needed}): run `walhook migrate` first"
    )]
    NotMigrated { found: i32, needed: i32 },
    #[error("migration {version} ({name}) failed: {source}")]
    Apply {
        version: i32,
        name: &'static str,
        #[source]
        source: tokio_postgres::Error,
    },
    #[error("database error while migrating: {0}")]
    Database(#[from] tokio_postgres::Error),
}

/// What [`migrate`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrateReport {
    pub from_version: i32,
    pub to_version: i32,
}

/// Apply every migration the database lacks. Idempotent.
pub async fn migrate(client: &mut Client) -> Result<MigrateReport, MigrateError> {
    // a migration may build an index on a large table, and a second migrator
    // waits for the first: neither is bound by the sessions' statement timeout
    client.batch_execute("SET statement_timeout = 0").await?;
    client
        .execute("SELECT pg_advisory_lock($1)", &[&MIGRATE_LOCK_KEY])
        .await?;
    let result = migrate_locked(client).await;
    let unlock = client
        .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATE_LOCK_KEY])
        .await;
    let report = result?;
    unlock?;
    Ok(report)
}

async fn migrate_locked(client: &mut Client) -> Result<MigrateReport, MigrateError> {
    client
        .batch_execute(
            "CREATE SCHEMA IF NOT EXISTS walhook;
             CREATE TABLE IF NOT EXISTS walhook.schema_migrations (
                 version    integer PRIMARY KEY,
                 name       text NOT NULL,
                 applied_at timestamptz NOT NULL DEFAULT now()
             );",
        )
        .await?;
    let from_version = current_version(client).await?;
    let known = latest_version();
    if from_version > known {
        return Err(MigrateError::SchemaTooNew {
            found: from_version,
            known,
        });
    }
    for &(version, name, sql) in MIGRATIONS.iter().filter(|m| m.0 > from_version) {
        let tx = client.transaction().await?;
        let apply = async {
            tx.batch_execute(sql).await?;
            tx.execute(
                "INSERT INTO walhook.schema_migrations (version, name) VALUES ($1, $2)",
                &[&version, &name],
            )
            .await?;
            tx.commit().await
        };
        apply.await.map_err(|source| MigrateError::Apply {
            version,
            name,
            source,
        })?;
        tracing::info!(version, name, "applied migration");
    }
    Ok(MigrateReport {
        from_version,
        to_version: known.max(from_version),
    })
}

/// The recorded schema version, 0 when walhook was never migrated here.
pub async fn current_version(client: &Client) -> Result<i32, tokio_postgres::Error> {
    let installed: bool = client
        .query_one(
            "SELECT to_regclass('walhook.schema_migrations') IS NOT NULL",
            &[],
        )
        .await?
        .try_get(0)?;
    if !installed {
        return Ok(0);
    }
    client
        .query_one(
            "SELECT coalesce(max(version), 0) FROM walhook.schema_migrations",
            &[],
        )
        .await?
        .try_get(0)
}

/// Refuse to run against a schema that is missing, older or newer than this binary's.
pub async fn check_version(client: &Client) -> Result<(), MigrateError> {
    let found = current_version(client).await?;
    let known = latest_version();
    if found > known {
        return Err(MigrateError::SchemaTooNew { found, known });
    }
    if found < known {
        return Err(MigrateError::NotMigrated {
            found,
            needed: known,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_are_numbered_in_increasing_order_from_one() {
        // numbers are assigned per branch, so a gap is allowed; order is not
        assert_eq!(MIGRATIONS[0].0, 1);
        for pair in MIGRATIONS.windows(2) {
            assert!(
                pair[0].0 < pair[1].0,
                "migration {} out of order",
                pair[1].1
            );
        }
    }
}
