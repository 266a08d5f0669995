//! One attempt of one delivery, start to finish: prepare (on a signing
//! thread, see [`super::signers`]) -> send -> decide -> hand the record to the
//! recorder. Runs as its own task on the dispatcher's behalf; the dispatcher
//! frees the request slot when it ends. A failed attempt marks its
//! subscription slow, so its next deliveries wait in PostgreSQL rather than
//! in memory ([`super::first_attempts::SlowSubscriptions`]); the recorder
//! counts every outcome for the subscription's endpoint health
//! ([`super::health`]). A probe's record says so: its failure leaves the
//! delivery where it was in its retry schedule.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use tracing::Instrument;

use tokio::sync::{mpsc, watch};

use super::KeyRing;
use super::attempt::{self, AttemptOutcome, Decision, PrepareError};
use super::client::Clients;
use super::client::check_literal_host;
use super::first_attempts::{Job, JobOrigin, SlowSubscriptions};
use super::recorder::Finished;
use super::signers::Signers;
use crate::config::RequestHeadersKept;
use crate::store::deliveries::{AttemptRecord, DeliveryStatus, RecordedDelivery};
use crate::store::settings::Settings;
use crate::telemetry;

/// What every attempt task shares.
pub(super) struct AttemptContext {
    pub clients: Clients,
    /// Where requests are built and signed.
    pub signers: Signers,
    pub keys: KeyRing,
    pub records: mpsc::Sender<Finished>,
    /// `walhook.settings` as the daemon's one reader last saw them.
    pub settings: watch::Receiver<Settings>,
    /// Where a failed attempt marks its subscription slow.
    pub slow: SlowSubscriptions,
}

pub(super) struct AttemptTask {
    job: Job,
    context: Arc<AttemptContext>,
}

impl AttemptTask {
    pub(super) fn new(job: Job, context: Arc<AttemptContext>) -> Self {
        AttemptTask { job, context }
    }

    pub(super) async fn run(self, now: DateTime<Utc>) {
        let span = tracing::info_span!(
            "deliver",
            subscription_id = %self.job.content.subscription_id,
            event_id = %self.job.content.event_id
        );
        self.attempt(now).instrument(span).await
    }

    /// prepare -> send -> decide -> record, each step in its own span.
    async fn attempt(self, now: DateTime<Utc>) {
        let AttemptTask { job, context } = self;
        telemetry::DISPATCH_WAIT.observe(job.handed_at.elapsed().as_secs_f64());
        if job.probe {
            telemetry::PROBES.inc();
        }
        let attempt = job.content.attempts + 1;
        let (allow_insecure_targets, headers_kept) = {
            let settings = context.settings.borrow();
            (
                settings.allow_insecure_targets,
                settings.attempt_request_headers,
            )
        };
        telemetry::IN_FLIGHT_REQUESTS.inc();
        let prepared = prepare(&job, &context, attempt, now)
            .instrument(tracing::debug_span!("prepare", attempt))
            .await;
        let keep_headers = headers_kept != RequestHeadersKept::None;
        let sent = send(prepared, &context, allow_insecure_targets, keep_headers)
            .instrument(tracing::debug_span!("send", attempt))
            .await;
        telemetry::IN_FLIGHT_REQUESTS.dec();
        telemetry::DELIVERY_DURATION.observe(sent.elapsed.as_secs_f64());
        let decided = tracing::debug_span!("decide", attempt)
            .in_scope(|| decide(&job, &context, attempt, sent.outcome, sent.unprepared));
        let succeeded = decided.new_status == DeliveryStatus::Succeeded;
        let headers = sent.headers.filter(|_| headers_kept.keeps(succeeded));
        let finished = finish(job, attempt, now, sent.elapsed, headers, decided);
        // a closed channel means the recorder stopped: a first attempt's
        // obligation, dropped, gets its pending row elsewhere or is swept
        let _ = context
            .records
            .send(finished)
            .instrument(tracing::debug_span!("record", attempt))
            .await;
    }
}

/// Build and sign the request on a signing thread; a panic there is recorded
/// as this attempt's failure, so the delivery is retried and its batch's
/// position moves on.
async fn prepare(
    job: &Job,
    context: &AttemptContext,
    attempt: i32,
    now: DateTime<Utc>,
) -> Result<attempt::PreparedRequest, PrepareError> {
    let keys = context
        .keys
        .read()
        .map(|k| Arc::clone(&k))
        .unwrap_or_default();
    let (content, target) = (job.content.clone(), job.target.clone());
    let signing = Instant::now();
    let prepared = context
        .signers
        .run(job.content.event_id, move |memo| {
            attempt::prepare(&content, &target, attempt, &keys, now, memo)
        })
        .await
        .unwrap_or_else(|panicked| Err(PrepareError::Panicked(panicked)));
    telemetry::SIGNING_DURATION.observe(signing.elapsed().as_secs_f64());
    tracing::debug!(signed = prepared.is_ok(), "request prepared");
    prepared
}

/// What sending produced: the outcome, how long the request took, the
/// headers to store with the attempt (when `attempt_request_headers` may
/// keep them), and the error when no request could be built.
struct Sent {
    outcome: AttemptOutcome,
    elapsed: Duration,
    headers: Option<String>,
    unprepared: Option<PrepareError>,
}

/// Send the request, unless it could not be built or its literal address is
/// refused.
async fn send(
    prepared: Result<attempt::PreparedRequest, PrepareError>,
    context: &AttemptContext,
    allow_insecure_targets: bool,
    keep_headers: bool,
) -> Sent {
    let request = match prepared {
        Err(error) => {
            return Sent {
                outcome: failure(error.to_string()),
                elapsed: Duration::ZERO,
                headers: None,
                unprepared: Some(error),
            };
        }
        Ok(request) => request,
    };
    if !allow_insecure_targets && let Err(error) = check_literal_host(&request.url) {
        return Sent {
            outcome: failure(error),
            elapsed: Duration::ZERO,
            headers: None,
            unprepared: None,
        };
    }
    // made here, on the runtime's threads that store and free it, rather
    // than on a signing thread
    let headers = keep_headers.then(|| attempt::recorded_headers(&request.headers));
    let (outcome, elapsed) =
        attempt::send(context.clients.get(allow_insecure_targets), request).await;
    tracing::debug!(
        ?elapsed,
        succeeded = matches!(outcome, AttemptOutcome::Succeeded { .. }),
        "request sent"
    );
    Sent {
        outcome,
        elapsed,
        headers,
        unprepared: None,
    }
}

/// The attempt's verdict and what is stored of it.
struct Decided {
    new_status: DeliveryStatus,
    next_attempt_at: DateTime<Utc>,
    status_code: Option<i32>,
    error: Option<String>,
    body: Option<String>,
}

/// Succeeded, retry at a time, or failed: from the outcome and the retry
/// schedule (a request that cannot be built is parked unless the operator
/// can fix it in time; a failed probe keeps its delivery pending where it
/// was). Counts and logs the outcome; a failure marks the subscription slow.
fn decide(
    job: &Job,
    context: &AttemptContext,
    attempt: i32,
    outcome: AttemptOutcome,
    unprepared: Option<PrepareError>,
) -> Decided {
    let c = &job.content;
    let target = &job.target;
    let since_redelivery = (attempt - c.retry_base).max(1) as usize;
    let decided_at = Utc::now();
    let decision = match &unprepared {
        Some(error) => attempt::decide_unprepared(
            error,
            &target.retry_schedule,
            since_redelivery,
            decided_at,
            &mut rand::thread_rng(),
        ),
        None => attempt::decide(
            &outcome,
            &target.retry_schedule,
            since_redelivery,
            decided_at,
            &mut rand::thread_rng(),
        ),
    };
    let (status_code, error, body) = match outcome {
        AttemptOutcome::Succeeded { status, body } => (Some(i32::from(status)), None, Some(body)),
        AttemptOutcome::Failed {
            status,
            error,
            body,
            ..
        } => (status.map(i32::from), Some(error), body),
    };
    let (new_status, next_attempt_at, label) = match decision {
        Decision::Succeeded => {
            let latency = (decided_at - c.commit_time).num_microseconds().unwrap_or(0) as f64 / 1e6;
            telemetry::END_TO_END_LATENCY.observe(latency.max(0.0));
            (DeliveryStatus::Succeeded, decided_at, "success")
        }
        Decision::RetryAt(at) => (DeliveryStatus::Pending, at, "retry"),
        Decision::Failed if job.probe => (DeliveryStatus::Pending, decided_at, "retry"),
        Decision::Failed => (DeliveryStatus::Failed, decided_at, "failed"),
    };
    if new_status != DeliveryStatus::Succeeded {
        context.slow.slowed(target.id);
    }
    telemetry::DELIVERIES
        .with_label_values(&[&target.id.to_string(), label])
        .inc();
    match &error {
        Some(error) => {
            tracing::info!(attempt, outcome = label, status = ?status_code, %error, "delivery attempt failed")
        }
        None => tracing::debug!(attempt, status = ?status_code, "delivered"),
    }
    Decided {
        new_status,
        next_attempt_at,
        status_code,
        error,
        body,
    }
}

/// The record the recorder stores, with the first attempt's obligation
/// (met once the row is written).
fn finish(
    job: Job,
    attempt: i32,
    now: DateTime<Utc>,
    elapsed: Duration,
    request_headers: Option<String>,
    decided: Decided,
) -> Finished {
    let (delivery, obligation) = match job.origin {
        JobOrigin::First(obligation) => (
            RecordedDelivery::First(obligation.delivery().clone()),
            Some(obligation),
        ),
        JobOrigin::Claimed { lease, .. } => (RecordedDelivery::Claimed(lease), None),
    };
    let record = AttemptRecord {
        delivery,
        attempt,
        attempted_at: now,
        duration_ms: elapsed.as_millis().min(i32::MAX as u128) as i32,
        status_code: decided.status_code,
        error: decided.error,
        response_body: decided.body.filter(|b| !b.is_empty()),
        request_headers,
        new_status: decided.new_status,
        next_attempt_at: decided.next_attempt_at,
        ordered: job.target.ordered,
        probe: job.probe,
    };
    Finished {
        record,
        obligation,
        subscription: job.target.id,
    }
}

fn failure(error: String) -> AttemptOutcome {
    AttemptOutcome::Failed {
        status: None,
        error,
        body: None,
        retry_after: None,
    }
}
