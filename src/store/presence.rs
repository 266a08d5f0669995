//! Which walhook instances can claim deliveries on this database.
//!
//! Every dispatcher holds a shared advisory lock on its SQL session for as
//! long as it runs; the lock ends with the session, so the holders are the
//! live dispatchers, standbys included. The instance that streams asks how
//! many others there are: with none, work a receiver cannot take yet is best
//! left in the WAL; with some, it goes to PostgreSQL, where they claim it.

use tokio_postgres::Client;

/// The advisory lock key: "walhook\0" in ASCII.
const PRESENCE_KEY: i64 = 0x7761_6c68_6f6f_6b00;

/// Hold this session's share of the presence lock (idempotent per session:
/// each call adds one more share, released with the session).
pub async fn announce(client: &Client) -> Result<(), tokio_postgres::Error> {
    client
        .execute("SELECT pg_advisory_lock_shared($1)", &[&PRESENCE_KEY])
        .await
        .map(|_| ())
}

/// Sessions other than this one holding the presence lock in this database.
pub async fn others(client: &Client) -> Result<i64, tokio_postgres::Error> {
    client
        .query_one(
            "SELECT count(DISTINCT l.pid)
               FROM pg_locks l
               JOIN pg_database d ON d.oid = l.database
              WHERE d.datname = current_database()
                AND l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
                AND l.classid = oid($1 >> 32) AND l.objid = oid($1 & 4294967295)
                AND l.pid <> pg_backend_pid()",
            &[&PRESENCE_KEY],
        )
        .await?
        .try_get(0)
}
