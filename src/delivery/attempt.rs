//! One delivery attempt in typed steps: prepare -> send -> decide.
//!
//! `prepare` builds the exact request (URL with query params, body in the
//! subscription's envelope, signatures, auth); `send` performs it and classifies
//! the result as an [`AttemptOutcome`]; `decide` turns the outcome and the retry
//! schedule into the delivery's next state. What the receiver says is kept
//! as text PostgreSQL accepts ([`text`]), and no schedule or `Retry-After`
//! can make `decide` panic ([`retry::retry_at`]).

mod recorded_headers;
pub use recorded_headers::recorded_headers;
mod text;

use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chrono::{DateTime, Utc};
use rand::Rng;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};

use super::retry;
use super::signing::{self, RequestToSign, Schemes, SignatureMemo, SigningKey};
use crate::store::deliveries::DeliveryContent;
use crate::store::targets::SubscriptionTarget;
use text::{ERROR_LIMIT, printable_body, text_for_postgres};

/// A request ready to send.
#[derive(Debug)]
pub struct PreparedRequest {
    pub url: url::Url,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
    pub timeout: Duration,
}

/// What the receiver (or the network) said.
#[derive(Debug, Clone, PartialEq)]
pub enum AttemptOutcome {
    Succeeded {
        status: u16,
        body: String,
    },
    Failed {
        status: Option<u16>,
        error: String,
        body: Option<String>,
        retry_after: Option<Duration>,
    },
}

/// The delivery's next state.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    Succeeded,
    RetryAt(DateTime<Utc>),
    Failed,
}

/// The request cannot be built (a bad URL or secret slipped past validation).
#[derive(Debug, thiserror::Error)]
pub enum PrepareError {
    #[error("subscription url is invalid: {0}")]
    Url(String),
    #[error(transparent)]
    Signing(#[from] signing::SigningError),
    #[error("header {0} is invalid")]
    Header(String),
    #[error(transparent)]
    Panicked(#[from] super::signers::Panicked),
}

impl PrepareError {
    /// Whether another attempt of this delivery can succeed without anyone
    /// touching it. A missing signing key can: keys are reloaded every few
    /// seconds, and `walhook keys rotate` fixes every delivery at once. So
    /// can a panic, which is a bug that may depend on the moment (it follows
    /// the schedule, each attempt recorded with the error). A bad URL, secret
    /// or header fails the same way on every attempt, so retrying on the
    /// schedule only hides it.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            PrepareError::Signing(signing::SigningError::NoSigningKey) | PrepareError::Panicked(_)
        )
    }
}

/// Set a subscription's own header (its name checked here).
fn header(map: &mut HeaderMap, name: &str, value: &str) -> Result<(), PrepareError> {
    let name =
        HeaderName::from_bytes(name.as_bytes()).map_err(|_| PrepareError::Header(name.into()))?;
    insert(map, name, value)
}

/// Set a header whose name walhook chooses (lowercase, known valid: no
/// parsing per request).
fn fixed(map: &mut HeaderMap, name: &'static str, value: &str) -> Result<(), PrepareError> {
    insert(map, HeaderName::from_static(name), value)
}

fn insert(map: &mut HeaderMap, name: HeaderName, value: &str) -> Result<(), PrepareError> {
    let value = HeaderValue::from_str(value).map_err(|_| PrepareError::Header(name.to_string()))?;
    map.insert(name, value);
    Ok(())
}

/// Build the request for attempt number `attempt` (1-based); Ed25519
/// signatures made recently over the same content come from `memo`.
pub fn prepare(
    claimed: &DeliveryContent,
    sub: &SubscriptionTarget,
    attempt: i32,
    keys: &[SigningKey],
    now: DateTime<Utc>,
    memo: &mut SignatureMemo,
) -> Result<PreparedRequest, PrepareError> {
    let url = sub.request_url.clone().map_err(PrepareError::Url)?;
    let body = if sub.standard_envelope {
        format!(
            r#"{{"type":{},"timestamp":"{}","data":{}}}"#,
            serde_json::Value::String(claimed.event_type.to_string()),
            claimed
                .commit_time
                .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            claimed.body
        )
        .into_bytes()
    } else {
        claimed.body.as_bytes().to_vec()
    };
    // an enveloped body is this subscription's own; the stored one is
    // hashed once for all the event's deliveries
    let body_sha256 = if sub.standard_envelope {
        signing::body_sha256(&body)
    } else {
        *claimed
            .body_sha256
            .get_or_init(|| signing::body_sha256(&body))
    };
    let webhook_id = claimed.event_id.to_string();
    let timestamp = now.timestamp();
    let mut headers = HeaderMap::with_capacity(16);
    for (k, v) in &sub.headers {
        header(&mut headers, k, v.as_str().unwrap_or_default())?;
    }
    let content_type = "application/json";
    let secrets = sub.secrets(now);
    let signed = signing::sign(
        &RequestToSign {
            method: "POST",
            target_uri: url.as_str(),
            content_type,
            webhook_id: &webhook_id,
            timestamp,
            body: &body,
            body_sha256,
        },
        &secrets,
        keys,
        Schemes::from_names(&sub.signature_schemes),
        memo,
    )?;
    fixed(&mut headers, "content-type", content_type)?;
    fixed(&mut headers, "webhook-id", &webhook_id)?;
    fixed(&mut headers, "webhook-timestamp", &timestamp.to_string())?;
    if let Some(value) = &signed.webhook_signature {
        fixed(&mut headers, "webhook-signature", value)?;
    }
    fixed(&mut headers, "webhook-event-type", &claimed.event_type)?;
    fixed(&mut headers, "webhook-attempt", &attempt.to_string())?;
    if let Some(http) = &signed.http_signature {
        fixed(&mut headers, "content-digest", &http.content_digest)?;
        fixed(&mut headers, "signature-input", &http.signature_input)?;
        fixed(&mut headers, "signature", &http.signature)?;
    }
    match sub.auth_type.as_str() {
        "bearer" => fixed(
            &mut headers,
            "authorization",
            &format!("Bearer {}", sub.auth_token.as_deref().unwrap_or_default()),
        )?,
        "basic" => {
            let credentials = format!(
                "{}:{}",
                sub.auth_username.as_deref().unwrap_or_default(),
                sub.auth_password.as_deref().unwrap_or_default()
            );
            fixed(
                &mut headers,
                "authorization",
                &format!("Basic {}", STANDARD.encode(credentials)),
            )?
        }
        _ => {}
    }
    Ok(PreparedRequest {
        url,
        headers,
        body,
        timeout: sub.timeout,
    })
}

/// At most this much of a response body is kept.
pub const RESPONSE_BODY_LIMIT: usize = 256;

/// Send the request; 2xx within the timeout is success, anything else a failure.
pub async fn send(
    client: &reqwest::Client,
    request: PreparedRequest,
) -> (AttemptOutcome, Duration) {
    let started = Instant::now();
    let result = client
        .post(request.url)
        .headers(request.headers)
        .body(request.body)
        .timeout(request.timeout)
        .send()
        .await;
    let outcome = match result {
        Err(error) => AttemptOutcome::Failed {
            status: None,
            error: text_for_postgres(&describe(&error), ERROR_LIMIT),
            body: None,
            retry_after: None,
        },
        Ok(mut response) => {
            let status = response.status();
            let retry_after = if status.as_u16() == 429 || status.as_u16() == 503 {
                response
                    .headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| retry::parse_retry_after(v, Utc::now()))
            } else {
                None
            };
            let location = response
                .headers()
                .get("location")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            let body = read_prefix(&mut response).await;
            if status.is_success() {
                AttemptOutcome::Succeeded {
                    status: status.as_u16(),
                    body,
                }
            } else {
                let error = if status.is_redirection() {
                    text_for_postgres(
                        &format!(
                            "receiver answered {status} (redirect to {}); redirects are not followed: update the subscription url",
                            location.as_deref().unwrap_or("?")
                        ),
                        ERROR_LIMIT,
                    )
                } else {
                    format!("receiver answered {status}")
                };
                AttemptOutcome::Failed {
                    status: Some(status.as_u16()),
                    error,
                    body: Some(body),
                    retry_after,
                }
            }
        }
    };
    (outcome, started.elapsed())
}

/// The first [`RESPONSE_BODY_LIMIT`] bytes of the body, as text PostgreSQL
/// accepts ([`printable_body`]). It reads one byte past the limit (to see
/// whether the cut splits a character) and no more. A receiver that trickles
/// its body cannot hold the attempt past the subscription's timeout: the
/// request's `timeout` runs from connecting until the body is read (reqwest
/// wraps the response body in it), and a body that times out ends with what
/// came; the status, received in time, decides the outcome.
async fn read_prefix(response: &mut reqwest::Response) -> String {
    let wanted = RESPONSE_BODY_LIMIT + 1;
    let mut buf = Vec::with_capacity(wanted);
    while buf.len() < wanted {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                let room = wanted - buf.len();
                buf.extend_from_slice(&chunk[..chunk.len().min(room)]);
            }
            _ => break,
        }
    }
    printable_body(&buf, RESPONSE_BODY_LIMIT)
}

/// A transport error in words an operator can act on (with its causes).
fn describe(error: &reqwest::Error) -> String {
    let mut text = if error.is_timeout() {
        "timed out waiting for the receiver".to_owned()
    } else if error.is_connect() {
        "could not connect to the receiver".to_owned()
    } else {
        "request failed".to_owned()
    };
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Next state of a delivery after attempt number `attempts_done - retry_base`
/// of its current schedule.
pub fn decide(
    outcome: &AttemptOutcome,
    schedule: &[Duration],
    attempts_since_redelivery: usize,
    now: DateTime<Utc>,
    rng: &mut impl Rng,
) -> Decision {
    match outcome {
        AttemptOutcome::Succeeded { .. } => Decision::Succeeded,
        AttemptOutcome::Failed { retry_after, .. } => {
            match retry::next_delay(schedule, attempts_since_redelivery.saturating_sub(1)) {
                None => Decision::Failed,
                Some(scheduled) => {
                    let delay = retry::delay_for(scheduled, *retry_after, rng);
                    Decision::RetryAt(retry::retry_at(now, delay))
                }
            }
        }
    }
}

/// Next state of a delivery whose request could not be built
/// ([`prepare`] failed): a retryable error follows the schedule like a failed
/// attempt; any other parks the delivery as `failed` with the error, to be
/// replayed (`walhook.redeliver`) once the subscription or key is fixed.
pub fn decide_unprepared(
    error: &PrepareError,
    schedule: &[Duration],
    attempts_since_redelivery: usize,
    now: DateTime<Utc>,
    rng: &mut impl Rng,
) -> Decision {
    if !error.is_retryable() {
        return Decision::Failed;
    }
    let outcome = AttemptOutcome::Failed {
        status: None,
        error: error.to_string(),
        body: None,
        retry_after: None,
    };
    decide(&outcome, schedule, attempts_since_redelivery, now, rng)
}

#[cfg(test)]
mod tests;
