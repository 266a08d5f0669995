//! Claiming: due deliveries leased to this instance (`FOR UPDATE SKIP
//! LOCKED`, per subscription up to its room), and the probes of failing
//! subscriptions. A lease outlives the request timeouts it covers.

use std::sync::Arc;

use tokio_postgres::Client;
use uuid::Uuid;

use super::{Claimed, DeliveryContent, Lease};

/// Seconds added to a lease beyond the request timeouts it covers, for
/// recording the outcome.
pub const LEASE_MARGIN_SECS: f64 = 30.0;

/// Per subscription, an instance holds at most this many times its
/// `max_in_flight` (running plus waiting in memory), so a freed request slot
/// finds its next job ready; a claimed delivery's lease covers this many
/// request timeouts (waiting for one round, then its own request).
pub const ROUNDS_HELD: i64 = 2;

/// The end of a claim: lease the deliveries of `$chosen` (a CTE of ids) to
/// `$1` for `$rounds` request timeouts plus `$margin` seconds, and return
/// what their attempts need ([`claimed_row`]).
macro_rules! lease {
    ($chosen:literal, $rounds:literal, $margin:literal) => {
        concat!(
            "
UPDATE walhook.deliveries d
   SET lease_owner = $1,
       lease_until = now() + make_interval(secs => ",
            $rounds,
            "::int8 * s.timeout_ms / 1000.0 + ",
            $margin,
            "::float8)
  FROM ",
            $chosen,
            " c, walhook.subscriptions s, walhook.events ev
 WHERE d.id = c.id AND s.id = d.subscription_id AND ev.id = d.event_id
RETURNING d.id, d.subscription_id, d.attempts, d.retry_base, ev.id, ev.type, ev.body::text,
          ev.commit_time, d.lease_until"
        )
    };
}

/// The condition that keeps an `ordered` subscription's deliveries in
/// order: when `$ordered` (the subscription's flag), no earlier delivery of
/// the same resource is pending (read through `deliveries_ordered_idx`,
/// which holds the pending rows of ordered subscriptions).
macro_rules! first_of_its_resource {
    ($ordered:literal) => {
        concat!(
            "               AND (NOT ",
            $ordered,
            " OR NOT EXISTS (
                     SELECT 1 FROM walhook.deliveries e
                      WHERE e.subscription_id = d.subscription_id AND e.apiresource = d.apiresource
                        AND e.status = 'pending' AND e.ordered
                        AND (e.commit_lsn, e.seq) < (d.commit_lsn, d.seq)))
"
        )
    };
}

const CLAIM: &str = concat!(
    "
WITH candidates AS (
    -- per enabled, healthy subscription, its earliest due deliveries up to its
    -- free in-flight slots ($3/$4: this instance's deliveries in flight per
    -- subscription); a failing one gets only probes (CLAIM_PROBE)
    SELECT c.id, c.next_attempt_at
      FROM walhook.subscriptions s
      LEFT JOIN walhook.subscription_health h ON h.subscription_id = s.id
      LEFT JOIN unnest($3::uuid[], $4::int8[]) AS busy(subscription_id, n)
             ON busy.subscription_id = s.id
      CROSS JOIN LATERAL (
            SELECT d.id, d.next_attempt_at
              FROM walhook.deliveries d
             WHERE d.subscription_id = s.id
               AND d.status = 'pending'
               AND d.next_attempt_at <= now()
               AND (d.lease_until IS NULL OR d.lease_until < now())
",
    first_of_its_resource!("s.ordered"),
    "             ORDER BY d.next_attempt_at, d.id
             LIMIT greatest(0, least($2::int8, $6::int8 * s.max_in_flight - coalesce(busy.n, 0)))
             FOR UPDATE OF d SKIP LOCKED
      ) c
     WHERE NOT s.disabled AND (h.state IS NULL OR h.state = 'healthy')
), chosen AS (
    SELECT id FROM candidates ORDER BY next_attempt_at, id LIMIT $2::int8
)
",
    lease!("chosen", "$6", "$5")
);

/// Claim up to `limit` due deliveries for `instance`, which holds `busy[i].1`
/// deliveries of subscription `busy[i].0` already (running or waiting); each
/// subscription gets up to [`ROUNDS_HELD`] times its `max_in_flight` minus that.
pub async fn claim(
    client: &Client,
    instance: Uuid,
    limit: i64,
    busy: &[(Uuid, i64)],
) -> Result<Vec<Claimed>, tokio_postgres::Error> {
    let busy_ids: Vec<Uuid> = busy.iter().map(|b| b.0).collect();
    let busy_counts: Vec<i64> = busy.iter().map(|b| b.1).collect();
    let rows = client
        .query(
            CLAIM,
            &[
                &instance,
                &limit,
                &busy_ids,
                &busy_counts,
                &LEASE_MARGIN_SECS,
                &ROUNDS_HELD,
            ],
        )
        .await?;
    rows.iter().map(claimed_row).collect()
}

/// A row of [`CLAIM`] or [`CLAIM_PROBE`].
fn claimed_row(r: &tokio_postgres::Row) -> Result<Claimed, tokio_postgres::Error> {
    Ok(Claimed {
        lease: Lease {
            delivery_id: r.try_get(0)?,
            until: r.try_get(8)?,
        },
        content: DeliveryContent {
            subscription_id: r.try_get(1)?,
            attempts: r.try_get(2)?,
            retry_base: r.try_get(3)?,
            event_id: r.try_get(4)?,
            event_type: Arc::from(r.try_get::<_, &str>(5)?),
            body: Arc::from(r.try_get::<_, Option<&str>>(6)?.unwrap_or_default()),
            body_sha256: Arc::default(),
            commit_time: r.try_get(7)?,
        },
    })
}

/// One probe per failing subscription whose `next_probe_at` has passed: its
/// oldest pending delivery, due or not (for an `ordered` subscription, one
/// with no earlier pending delivery of its resource). The health row's
/// `next_probe_at` moves to the lease's end in the same statement, so one
/// instance probes at a time; the probe's outcome sets the next one
/// (`store::health`).
const CLAIM_PROBE: &str = concat!(
    "
WITH due AS (
    SELECT h.subscription_id, s.ordered, s.timeout_ms
      FROM walhook.subscription_health h
      JOIN walhook.subscriptions s ON s.id = h.subscription_id
     WHERE h.state = 'failing' AND h.next_probe_at <= now() AND NOT s.disabled
       FOR UPDATE OF h SKIP LOCKED
), probe AS (
    SELECT p.id, due.subscription_id, due.timeout_ms
      FROM due
     CROSS JOIN LATERAL (
            SELECT d.id
              FROM walhook.deliveries d
             WHERE d.subscription_id = due.subscription_id
               AND d.status = 'pending'
               AND (d.lease_until IS NULL OR d.lease_until < now())
",
    first_of_its_resource!("due.ordered"),
    "             ORDER BY d.id
             LIMIT 1
             FOR UPDATE OF d SKIP LOCKED
      ) p
), reserved AS (
    UPDATE walhook.subscription_health h
       SET next_probe_at = now() + make_interval(secs => $3::int8 * probe.timeout_ms / 1000.0 + $2::float8)
      FROM probe
     WHERE h.subscription_id = probe.subscription_id
)
",
    lease!("probe", "$3", "$2")
);

/// Claim the probes that are due ([`CLAIM_PROBE`]) for `instance`.
pub async fn claim_probes(
    client: &Client,
    instance: Uuid,
) -> Result<Vec<Claimed>, tokio_postgres::Error> {
    let rows = client
        .query(CLAIM_PROBE, &[&instance, &LEASE_MARGIN_SECS, &ROUNDS_HELD])
        .await?;
    rows.iter().map(claimed_row).collect()
}
