//! Delivery state: claiming due deliveries and recording attempts.
//!
//! A claim is a lease: `lease_owner` + `lease_until` set in the same statement
//! that selects due rows `FOR UPDATE SKIP LOCKED`, so two instances never claim
//! one delivery. The lease outlives the request timeout; a lease that expires
//! (its owner died) makes the delivery claimable again — that is the sweeper.
//! Recording an attempt only updates a delivery whose lease this instance
//! still holds, and attempts are unique per (delivery, attempt number).

use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio_postgres::Client;
use uuid::Uuid;

/// A claimed delivery with what its attempt needs.
#[derive(Debug, Clone)]
pub struct Claimed {
    pub delivery_id: i64,
    /// Attempts made before this one.
    pub attempts: i32,
    pub retry_base: i32,
    pub event_id: Uuid,
    pub event_type: String,
    pub body: String,
    pub commit_time: DateTime<Utc>,
    pub subscription: SubscriptionTarget,
}

/// The subscription's delivery settings.
#[derive(Debug, Clone)]
pub struct SubscriptionTarget {
    pub id: Uuid,
    pub url: String,
    pub headers: serde_json::Map<String, serde_json::Value>,
    pub query_params: serde_json::Map<String, serde_json::Value>,
    pub auth_type: String,
    pub auth_token: Option<String>,
    pub auth_username: Option<String>,
    pub auth_password: Option<String>,
    /// Current secret first; the previous one while its grace period lasts.
    pub secrets: Vec<String>,
    pub timeout: Duration,
    pub retry_schedule: Vec<Duration>,
    pub standard_envelope: bool,
}

const CLAIM: &str = "
WITH candidates AS (
    -- per enabled subscription, its earliest due deliveries up to its free
    -- in-flight slots ($3/$4: this instance's deliveries in flight per subscription)
    SELECT c.id, c.next_attempt_at
      FROM walhook.subscriptions s
      LEFT JOIN unnest($3::uuid[], $4::int8[]) AS busy(subscription_id, n)
             ON busy.subscription_id = s.id
      CROSS JOIN LATERAL (
            SELECT d.id, d.next_attempt_at
              FROM walhook.deliveries d
             WHERE d.subscription_id = s.id
               AND d.status = 'pending'
               AND d.next_attempt_at <= now()
               AND (d.lease_until IS NULL OR d.lease_until < now())
               AND (NOT s.ordered OR NOT EXISTS (
                     SELECT 1 FROM walhook.deliveries e
                      WHERE e.subscription_id = d.subscription_id AND e.apiresource = d.apiresource
                        AND e.status = 'pending' AND (e.commit_lsn, e.seq) < (d.commit_lsn, d.seq)))
             ORDER BY d.next_attempt_at, d.id
             LIMIT greatest(0, least($2::int8, s.max_in_flight - coalesce(busy.n, 0)))
             FOR UPDATE OF d SKIP LOCKED
      ) c
     WHERE NOT s.disabled
), chosen AS (
    SELECT id FROM candidates ORDER BY next_attempt_at, id LIMIT $2::int8
)
UPDATE walhook.deliveries d
   SET lease_owner = $1,
       lease_until = now() + make_interval(secs => s.timeout_ms / 1000.0 + 30)
  FROM chosen, walhook.subscriptions s, walhook.events ev
 WHERE d.id = chosen.id AND s.id = d.subscription_id AND ev.id = d.event_id
RETURNING d.id, d.attempts, d.retry_base, ev.id, ev.type, ev.body::text, ev.commit_time,
          s.id, s.url, s.headers::text, s.query_params::text, s.auth_type, s.auth_token,
          s.auth_username, s.auth_password, s.secret,
          CASE WHEN s.previous_secret_expires_at > now() THEN s.previous_secret END,
          s.timeout_ms,
          (SELECT array_agg(extract(epoch FROM x)::float8 ORDER BY n)
             FROM unnest(s.retry_schedule) WITH ORDINALITY AS t(x, n)),
          s.envelope";

/// Claim up to `limit` due deliveries for `instance`, which has `busy[i].1`
/// deliveries of subscription `busy[i].0` in flight already.
pub async fn claim(
    client: &Client,
    instance: Uuid,
    limit: i64,
    busy: &[(Uuid, i64)],
) -> Result<Vec<Claimed>, tokio_postgres::Error> {
    let busy_ids: Vec<Uuid> = busy.iter().map(|b| b.0).collect();
    let busy_counts: Vec<i64> = busy.iter().map(|b| b.1).collect();
    let rows = client
        .query(CLAIM, &[&instance, &limit, &busy_ids, &busy_counts])
        .await?;
    let object = |text: Option<String>| -> serde_json::Map<String, serde_json::Value> {
        text.and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or_default()
    };
    rows.iter()
        .map(|r| {
            let mut secrets: Vec<String> = vec![r.try_get(15)?];
            if let Some(previous) = r.try_get::<_, Option<String>>(16)? {
                secrets.push(previous);
            }
            let schedule: Option<Vec<f64>> = r.try_get(18)?;
            Ok(Claimed {
                delivery_id: r.try_get(0)?,
                attempts: r.try_get(1)?,
                retry_base: r.try_get(2)?,
                event_id: r.try_get(3)?,
                event_type: r.try_get(4)?,
                body: r.try_get::<_, Option<String>>(5)?.unwrap_or_default(),
                commit_time: r.try_get(6)?,
                subscription: SubscriptionTarget {
                    id: r.try_get(7)?,
                    url: r.try_get(8)?,
                    headers: object(r.try_get(9)?),
                    query_params: object(r.try_get(10)?),
                    auth_type: r.try_get(11)?,
                    auth_token: r.try_get(12)?,
                    auth_username: r.try_get(13)?,
                    auth_password: r.try_get(14)?,
                    secrets,
                    timeout: Duration::from_millis(r.try_get::<_, i32>(17)?.max(1) as u64),
                    retry_schedule: schedule
                        .unwrap_or_default()
                        .into_iter()
                        .map(|s| Duration::from_secs_f64(s.max(0.0)))
                        .collect(),
                    standard_envelope: r.try_get::<_, String>(19)? == "standard",
                },
            })
        })
        .collect()
}

/// The result of one attempt, ready to record.
#[derive(Debug, Clone)]
pub struct AttemptRecord {
    pub delivery_id: i64,
    pub attempt: i32,
    pub attempted_at: DateTime<Utc>,
    pub duration_ms: i32,
    pub status_code: Option<i32>,
    pub error: Option<String>,
    pub response_body: Option<String>,
    /// `pending` (retry at `next_attempt_at`), `succeeded` or `failed`.
    pub new_status: &'static str,
    pub next_attempt_at: DateTime<Utc>,
}

/// Record finished attempts in one transaction. Deliveries whose lease this
/// instance lost are left alone (another instance owns them now).
pub async fn record(
    client: &mut Client,
    instance: Uuid,
    records: &[AttemptRecord],
) -> Result<(), tokio_postgres::Error> {
    if records.is_empty() {
        return Ok(());
    }
    let ids: Vec<i64> = records.iter().map(|r| r.delivery_id).collect();
    let attempts: Vec<i32> = records.iter().map(|r| r.attempt).collect();
    let at: Vec<DateTime<Utc>> = records.iter().map(|r| r.attempted_at).collect();
    let durations: Vec<i32> = records.iter().map(|r| r.duration_ms).collect();
    let codes: Vec<Option<i32>> = records.iter().map(|r| r.status_code).collect();
    let errors: Vec<Option<&str>> = records.iter().map(|r| r.error.as_deref()).collect();
    let bodies: Vec<Option<&str>> = records.iter().map(|r| r.response_body.as_deref()).collect();
    let statuses: Vec<&str> = records.iter().map(|r| r.new_status).collect();
    let next: Vec<DateTime<Utc>> = records.iter().map(|r| r.next_attempt_at).collect();
    let tx = client.transaction().await?;
    tx.execute(
        "WITH owned AS (
             UPDATE walhook.deliveries d
                SET status = u.status, attempts = u.attempt, next_attempt_at = u.next,
                    last_status_code = u.code, last_error = u.error, last_attempt_at = u.at,
                    lease_owner = NULL, lease_until = NULL
               FROM unnest($1::int8[], $2::int4[], $3::timestamptz[], $5::int4[], $6::text[],
                           $8::text[], $9::timestamptz[])
                    AS u(id, attempt, at, code, error, status, next)
              WHERE d.id = u.id AND d.lease_owner = $10
             RETURNING d.id)
         INSERT INTO walhook.delivery_attempts
                (delivery_id, attempt, attempted_at, duration_ms, status_code, error, response_body, instance_id)
         SELECT a.id, a.attempt, a.at, a.duration, a.code, a.error, a.body, $10
           FROM unnest($1::int8[], $2::int4[], $3::timestamptz[], $4::int4[], $5::int4[],
                       $6::text[], $7::text[]) AS a(id, attempt, at, duration, code, error, body)
          WHERE a.id IN (SELECT id FROM owned)
         ON CONFLICT (delivery_id, attempt) DO NOTHING",
        &[&ids, &attempts, &at, &durations, &codes, &errors, &bodies, &statuses, &next, &instance],
    )
    .await?;
    tx.commit().await
}

/// Give back leases of deliveries this instance claimed but did not attempt.
pub async fn release(
    client: &Client,
    instance: Uuid,
    ids: &[i64],
) -> Result<u64, tokio_postgres::Error> {
    client
        .execute(
            "UPDATE walhook.deliveries SET lease_owner = NULL, lease_until = NULL
              WHERE id = ANY($1) AND lease_owner = $2",
            &[&ids, &instance],
        )
        .await
}

/// Deliveries waiting (status pending).
pub async fn pending_count(client: &Client) -> Result<i64, tokio_postgres::Error> {
    client
        .query_one(
            "SELECT count(*) FROM walhook.deliveries WHERE status = 'pending'",
            &[],
        )
        .await?
        .try_get(0)
}
