//! What the benchmark writes and how it prepares each scenario's database: the
//! example directory with its routes, 1,000 seeded organisations, and a
//! server-side procedure writing a mix of software-statement inserts and
//! organisation updates (events of about 500-700 bytes of JSON) in transactions
//! of a chosen size; plus paced single-row writers for the live scenarios.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio_postgres::Client;
use walhook::local_cluster::LocalCluster;

const SETUP: &str = r#"
CREATE TABLE IF NOT EXISTS bench_orgs (n int PRIMARY KEY, organisation_id uuid NOT NULL);
INSERT INTO directory.organisations (organisation_name, legal_entity_name, country_of_registration,
                                     registration_number, city, country)
SELECT 'participant ' || n, 'participant ' || n || ' ltda', 'br', lpad(n::text, 8, '0'), 'rio de janeiro', 'br'
  FROM generate_series(0, 999) n;
INSERT INTO bench_orgs SELECT row_number() OVER (ORDER BY organisation_name) - 1, organisation_id
  FROM directory.organisations;

CREATE OR REPLACE PROCEDURE bench_write(total int, per_txn int) LANGUAGE plpgsql AS $$
DECLARE
    org uuid;
BEGIN
    FOR i IN 0 .. total - 1 LOOP
        SELECT organisation_id INTO org FROM bench_orgs WHERE n = i % 1000;
        IF i % 2 = 0 THEN
            INSERT INTO directory.software_statements
                (organisation_id, client_name, description, environment, mode, client_uri,
                 policy_uri, redirect_uri, version)
            VALUES (org, 'bench client ' || i, 'a software statement written by the walhook benchmark',
                    'sandbox', 'live', 'https://client.example/' || i, 'https://client.example/policy',
                    '{https://client.example/cb}', 1.0);
        ELSE
            UPDATE directory.organisations SET city = 'city ' || i, postcode = lpad(i::text, 8, '0')
             WHERE organisation_id = org;
        END IF;
        IF (i + 1) % per_txn = 0 THEN
            COMMIT;
        END IF;
    END LOOP;
    COMMIT;
END
$$;
"#;

/// Statements a live writer alternates between (one row, one commit each).
const LIVE_INSERT: &str = "INSERT INTO directory.software_statements
        (organisation_id, client_name, description, environment, mode, client_uri, policy_uri, redirect_uri, version)
    SELECT organisation_id, 'live client', 'a software statement written by the walhook benchmark',
           'sandbox', 'live', 'https://client.example/live', 'https://client.example/policy',
           '{https://client.example/cb}', 1.0
      FROM bench_orgs WHERE n = $1";
const LIVE_UPDATE: &str =
    "UPDATE directory.organisations SET city = 'live city', postcode = $2::text
     WHERE organisation_id = (SELECT organisation_id FROM bench_orgs WHERE n = $1)";

/// One scenario's database, ready for walhook.
pub struct Database {
    pub url: String,
    pub client: Client,
}

/// Create database `name` with the walhook schema (`walhook migrate` of the
/// binary under test), the example directory, the seed rows and `subscriptions`
/// subscriptions to `receiver_url` (`/<i>` appended when more than one) using
/// `retry_schedule` when given.
pub async fn prepare(
    cluster: &LocalCluster,
    name: &str,
    walhook: &Path,
    receiver_url: Option<&str>,
    subscriptions: usize,
    retry_schedule: Option<&str>,
) -> anyhow::Result<Database> {
    let admin = connect(&cluster.url("postgres")).await?;
    admin
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await?;
    let url = cluster.url(name);
    crate::walhook_process::migrate(walhook, &url).await?;
    let client = connect(&url).await?;
    client
        .batch_execute(include_str!("../../../sql/examples/directory.sql"))
        .await?;
    client.batch_execute(SETUP).await?;
    client
        .batch_execute("INSERT INTO walhook.settings VALUES ('allow_insecure_targets', 'true')")
        .await?;
    if let Some(receiver) = receiver_url {
        for i in 0..subscriptions {
            let url = if subscriptions > 1 {
                format!("{receiver}/{i}")
            } else {
                receiver.to_owned()
            };
            client
                .execute(
                    "INSERT INTO walhook.subscriptions (url, retry_schedule)
                     VALUES ($1, coalesce($2::text, '{5s,5min,30min,2h,5h,10h,10h}')::interval[])",
                    &[&url, &retry_schedule],
                )
                .await?;
        }
    }
    Ok(Database { url, client })
}

/// A plain loopback connection (the bench's own; walhook makes its own).
pub async fn connect(url: &str) -> anyhow::Result<Client> {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
    tokio::spawn(connection);
    Ok(client)
}

/// Write `total` changes in transactions of `per_txn` rows (server-side);
/// returns the rate PostgreSQL wrote them at, in changes/s.
pub async fn write_backlog(db: &Database, total: usize, per_txn: usize) -> anyhow::Result<f64> {
    let started = Instant::now();
    db.client
        .batch_execute(&format!("CALL bench_write({total}, {per_txn})"))
        .await?;
    Ok(total as f64 / started.elapsed().as_secs_f64())
}

/// Single-row commits from `writers` connections for `duration` at `rate`
/// changes/s in total (`None`: as fast as they go). Returns changes written.
pub async fn write_live(
    url: &str,
    writers: usize,
    rate: Option<f64>,
    duration: Duration,
) -> anyhow::Result<u64> {
    // every call writes values of its own: an update that changes nothing
    // yields no event, and a database may see more than one call
    static CALLS: AtomicU64 = AtomicU64::new(0);
    let call = CALLS.fetch_add(1, Ordering::Relaxed);
    let written = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..writers {
        let client = connect(url).await?;
        let written = written.clone();
        tasks.push(tokio::spawn(async move {
            let insert = client.prepare(LIVE_INSERT).await?;
            let update = client.prepare(LIVE_UPDATE).await?;
            let interval = rate.map(|r| Duration::from_secs_f64(writers as f64 / r));
            let mut k: u64 = 0;
            while start.elapsed() < duration {
                if let Some(interval) = interval {
                    let due = start
                        + interval.mul_f64(k as f64)
                        + interval.mul_f64(w as f64 / writers as f64);
                    tokio::time::sleep_until(due.into()).await;
                }
                let n = ((k * writers as u64 + w as u64) % 1000) as i32;
                if k.is_multiple_of(2) {
                    client.execute(&insert, &[&n]).await?;
                } else {
                    client
                        .execute(&update, &[&n, &format!("{call}-{k}")])
                        .await?;
                }
                written.fetch_add(1, Ordering::Relaxed);
                k += 1;
            }
            anyhow::Ok(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    Ok(written.load(Ordering::Relaxed))
}

/// The server's current WAL position.
pub async fn current_lsn(client: &Client) -> anyhow::Result<String> {
    Ok(client
        .query_one("SELECT pg_current_wal_lsn()::text", &[])
        .await?
        .get(0))
}

/// Subscribe `url` to every event with a request timeout of `timeout_ms`.
pub async fn subscribe(db: &Database, url: &str, timeout_ms: i32) -> anyhow::Result<()> {
    db.client
        .execute(
            "INSERT INTO walhook.subscriptions (url, timeout_ms) VALUES ($1, $2)",
            &[&url, &timeout_ms],
        )
        .await?;
    Ok(())
}

/// The server's current WAL position and how far slot `slot`'s confirmed
/// position is behind it, in bytes.
pub async fn slot_behind_now(client: &Client, slot: &str) -> anyhow::Result<(String, f64)> {
    let row = client
        .query_one(
            "SELECT pg_current_wal_lsn()::text,
                    (pg_current_wal_lsn() - confirmed_flush_lsn)::float8
               FROM pg_replication_slots WHERE slot_name = $1",
            &[&slot],
        )
        .await?;
    Ok((row.get(0), row.get(1)))
}

/// Whether slot `slot` has confirmed WAL position `lsn`.
pub async fn slot_confirmed(client: &Client, slot: &str, lsn: &str) -> anyhow::Result<bool> {
    Ok(client
        .query_one(
            "SELECT confirmed_flush_lsn >= $2::text::pg_lsn
               FROM pg_replication_slots WHERE slot_name = $1",
            &[&slot, &lsn],
        )
        .await?
        .get(0))
}

/// When the last event was stored: the start of the transaction of walhook's
/// last batch (`walhook.events.created_at` defaults to `now()`), in seconds
/// since the Unix epoch.
pub async fn last_stored(client: &Client) -> anyhow::Result<f64> {
    Ok(client
        .query_one(
            "SELECT coalesce(extract(epoch FROM max(created_at))::float8, 0) FROM walhook.events",
            &[],
        )
        .await?
        .get(0))
}

/// Deliveries recorded `succeeded`.
pub async fn succeeded(client: &Client) -> anyhow::Result<i64> {
    Ok(client
        .query_one(
            "SELECT count(*) FROM walhook.deliveries WHERE status = 'succeeded'",
            &[],
        )
        .await?
        .get(0))
}

/// Events stored.
pub async fn events(client: &Client) -> anyhow::Result<i64> {
    Ok(client
        .query_one("SELECT count(*) FROM walhook.events", &[])
        .await?
        .get(0))
}

/// The pid of the PostgreSQL process serving `client`.
pub async fn backend_pid(client: &Client) -> anyhow::Result<u32> {
    let pid: i32 = client
        .query_one("SELECT pg_backend_pid()", &[])
        .await?
        .get(0);
    Ok(u32::try_from(pid)?)
}

/// Delivery attempts recorded per walhook instance, largest first.
pub async fn attempts_per_instance(client: &Client) -> anyhow::Result<Vec<i64>> {
    Ok(client
        .query(
            "SELECT count(*) FROM walhook.delivery_attempts GROUP BY instance_id ORDER BY 1 DESC",
            &[],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect())
}
