//! Subscriptions as delivery needs them: where to send, how to sign, how to
//! retry, and the limits the dispatcher enforces.
//!
//! Loaded whole (a few hundred subscriptions at most is the expected shape) and
//! cached by the delivery stage, which reloads when the stream shows a
//! subscription change, when it meets an id it does not know, and every few
//! seconds; so a change made with SQL reaches every attempt within seconds,
//! without a restart.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio_postgres::Client;
use uuid::Uuid;

/// The subscription's delivery settings.
#[derive(Debug, Clone)]
pub struct SubscriptionTarget {
    pub id: Uuid,
    /// `url` parsed, with `query_params` appended: parsed once per load, not
    /// per request (an error says why the url cannot be used).
    pub request_url: Result<url::Url, String>,
    pub headers: serde_json::Map<String, serde_json::Value>,
    pub auth_type: String,
    pub auth_token: Option<String>,
    pub auth_username: Option<String>,
    pub auth_password: Option<String>,
    /// The current secret.
    pub secret: String,
    /// The previous secret and until when it keeps signing (rotation grace).
    pub previous_secret: Option<(String, DateTime<Utc>)>,
    pub timeout: Duration,
    pub retry_schedule: Vec<Duration>,
    pub standard_envelope: bool,
    /// `signature_schemes`: `v1`, `v1a`, `rfc9421`.
    pub signature_schemes: Vec<String>,
    pub ordered: bool,
    pub disabled: bool,
    /// Requests in flight to this receiver, per walhook instance.
    pub max_in_flight: usize,
}

impl SubscriptionTarget {
    /// Secrets that sign at `now`: current first, then the previous one while
    /// its grace period lasts.
    pub fn secrets(&self, now: DateTime<Utc>) -> Vec<&str> {
        let mut secrets = vec![self.secret.as_str()];
        if let Some((previous, until)) = &self.previous_secret
            && *until > now
        {
            secrets.push(previous);
        }
        secrets
    }
}

/// The url a request goes to: `url` with `query_params` appended.
pub fn request_url(
    url: &str,
    query_params: &serde_json::Map<String, serde_json::Value>,
) -> Result<url::Url, String> {
    let mut url = url::Url::parse(url).map_err(|e| e.to_string())?;
    if !query_params.is_empty() {
        let mut pairs = url.query_pairs_mut();
        for (k, v) in query_params {
            pairs.append_pair(k, v.as_str().unwrap_or_default());
        }
    }
    Ok(url)
}

const TARGETS: &str = "
SELECT id, url, headers::text, query_params::text, auth_type, auth_token, auth_username,
       auth_password, secret, previous_secret, previous_secret_expires_at, timeout_ms,
       (SELECT array_agg(extract(epoch FROM x)::float8 ORDER BY n)
          FROM unnest(retry_schedule) WITH ORDINALITY AS t(x, n)),
       envelope, signature_schemes, ordered, disabled, max_in_flight
  FROM walhook.subscriptions";

/// Every subscription, by id.
pub async fn load(
    client: &Client,
) -> Result<HashMap<Uuid, SubscriptionTarget>, tokio_postgres::Error> {
    let object = |text: Option<String>| -> serde_json::Map<String, serde_json::Value> {
        text.and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or_default()
    };
    let rows = client.query(TARGETS, &[]).await?;
    rows.iter()
        .map(|r| {
            let previous: Option<String> = r.try_get(9)?;
            let previous_until: Option<DateTime<Utc>> = r.try_get(10)?;
            let schedule: Option<Vec<f64>> = r.try_get(12)?;
            let url: String = r.try_get(1)?;
            let query_params = object(r.try_get(3)?);
            let target = SubscriptionTarget {
                id: r.try_get(0)?,
                request_url: request_url(&url, &query_params),
                headers: object(r.try_get(2)?),
                auth_type: r.try_get(4)?,
                auth_token: r.try_get(5)?,
                auth_username: r.try_get(6)?,
                auth_password: r.try_get(7)?,
                secret: r.try_get(8)?,
                previous_secret: previous.zip(previous_until),
                timeout: Duration::from_millis(r.try_get::<_, i32>(11)?.max(1) as u64),
                retry_schedule: schedule
                    .unwrap_or_default()
                    .into_iter()
                    // an infinite step (PostgreSQL 17, a row from before
                    // migration 0011) is the longest wait; delivery clamps it
                    .map(|s| Duration::try_from_secs_f64(s.max(0.0)).unwrap_or(Duration::MAX))
                    .collect(),
                standard_envelope: r.try_get::<_, String>(13)? == "standard",
                signature_schemes: r.try_get(14)?,
                ordered: r.try_get(15)?,
                disabled: r.try_get(16)?,
                max_in_flight: r.try_get::<_, i32>(17)?.max(1) as usize,
            };
            Ok((target.id, target))
        })
        .collect()
}
