//! Metric names and registration, in one place.
//!
//! Every metric walhook exports is defined here, registered once in
//! [`REGISTRY`] (with process metrics), and updated by the stage that owns the
//! figure. `/metrics` renders the registry.

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};
use std::sync::LazyLock;

pub static REGISTRY: LazyLock<Registry> = LazyLock::new(|| {
    let registry = Registry::new_custom(Some("walhook".into()), None).expect("valid prefix");
    #[cfg(target_os = "linux")]
    registry
        .register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ))
        .expect("process collector registers once");
    registry
});

fn register<C: prometheus::core::Collector + Clone + 'static>(c: C) -> C {
    REGISTRY
        .register(Box::new(c.clone()))
        .expect("metric registers once");
    c
}

fn counter(name: &str, help: &str) -> IntCounter {
    register(IntCounter::new(name, help).unwrap())
}

fn counter_vec(name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    register(IntCounterVec::new(Opts::new(name, help), labels).unwrap())
}

fn gauge(name: &str, help: &str) -> IntGauge {
    register(IntGauge::new(name, help).unwrap())
}

fn gauge_vec(name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    register(IntGaugeVec::new(Opts::new(name, help), labels).unwrap())
}

fn histogram(name: &str, help: &str, buckets: &[f64]) -> Histogram {
    register(
        Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets.to_vec())).unwrap(),
    )
}

/// Row changes decoded from the slot, by table and operation.
pub static CHANGES_RECEIVED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter_vec(
        "changes_received_total",
        "Row changes decoded from the replication slot",
        &["table", "op"],
    )
});

/// Events stored, by type.
pub static EVENTS: LazyLock<IntCounterVec> =
    LazyLock::new(|| counter_vec("events_total", "Events built and stored", &["type"]));

/// Events that could not be built (stored with their error).
pub static EVENT_ERRORS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter_vec(
        "event_errors_total",
        "Events stored with a build error instead of a body",
        &["reason"],
    )
});

/// Delivery attempts by subscription and outcome (`success`, `retry`, `failed`).
pub static DELIVERIES: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter_vec(
        "deliveries_total",
        "Delivery attempts by outcome: success, retry, failed",
        &["subscription", "outcome"],
    )
});

/// Duration of one HTTP delivery attempt.
pub static DELIVERY_DURATION: LazyLock<Histogram> = LazyLock::new(|| {
    register(
        Histogram::with_opts(HistogramOpts::new(
            "delivery_duration_seconds",
            "Duration of one HTTP delivery attempt",
        ))
        .unwrap(),
    )
});

/// Buckets of the latencies measured from a change's commit.
const END_TO_END_BUCKETS: [f64; 16] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
];

/// Commit time of the change to the receiver's 2xx.
pub static END_TO_END_LATENCY: LazyLock<Histogram> = LazyLock::new(|| {
    histogram(
        "end_to_end_latency_seconds",
        "Time from the change's commit to the receiver's 2xx",
        &END_TO_END_BUCKETS,
    )
});

/// Buckets of the stages between a commit and its request: from a tenth
/// of a millisecond (an idle machine) to seconds (a saturated one).
const STAGE_BUCKETS: [f64; 16] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

/// Commit time of the change to its event stored (the writer's batch
/// committed): the replication stream, decoding and mapping, and the batch.
/// Events stored again by a replay are not counted; a backfill's snapshot
/// events count from their window's low watermark.
pub static STORED_LATENCY: LazyLock<Histogram> = LazyLock::new(|| {
    histogram(
        "stored_latency_seconds",
        "Time from the change's commit to its event stored in walhook.events",
        &END_TO_END_BUCKETS,
    )
});

/// One batch of the event writer stored: its statement and commit.
pub static WRITE_BATCH_DURATION: LazyLock<Histogram> = LazyLock::new(|| {
    histogram(
        "write_batch_duration_seconds",
        "Duration of storing one batch of events (statement and commit)",
        &STAGE_BUCKETS,
    )
});

/// From a delivery's hand-over to the dispatcher (a first attempt once its
/// batch committed, or a claimed delivery) to its attempt's start: waiting
/// for a request slot, and for a runtime thread.
pub static DISPATCH_WAIT: LazyLock<Histogram> = LazyLock::new(|| {
    histogram(
        "dispatch_wait_seconds",
        "Time from a delivery handed to the dispatcher to its attempt's start",
        &STAGE_BUCKETS,
    )
});

/// From an attempt's start to its request built and signed on a signing
/// thread: the signing threads' queue, and their wait for a CPU, plus the
/// work itself (two Ed25519 signatures by default, tens of microseconds).
pub static SIGNING_DURATION: LazyLock<Histogram> = LazyLock::new(|| {
    histogram(
        "signing_duration_seconds",
        "Time to build and sign one request on a signing thread, queueing included",
        &STAGE_BUCKETS,
    )
});

/// Bytes of WAL between the server's current position and what walhook confirmed.
pub static REPLICATION_LAG_BYTES: LazyLock<IntGauge> = LazyLock::new(|| {
    gauge(
        "replication_lag_bytes",
        "WAL bytes between the server's current position and walhook's confirmed position",
    )
});

/// Seconds between now and the commit time of the last stored event.
pub static REPLICATION_LAG_SECONDS: LazyLock<prometheus::Gauge> = LazyLock::new(|| {
    register(
        prometheus::Gauge::new(
            "replication_lag_seconds",
            "Seconds between the last decoded commit and its arrival at walhook",
        )
        .unwrap(),
    )
});

/// Deliveries waiting in PostgreSQL: rows with status pending, and
/// deferred deliveries without a row yet.
pub static PENDING_DELIVERIES: LazyLock<IntGauge> = LazyLock::new(|| {
    gauge(
        "pending_deliveries",
        "Deliveries not attempted yet or waiting for a retry: rows with status pending, plus deferred deliveries without a row yet",
    )
});

/// Deliveries of slow or failing subscriptions that wait in their events
/// without a row yet (`walhook.events.deferred`); `pending_deliveries`
/// counts them too.
pub static DEFERRED_DELIVERIES: LazyLock<IntGauge> = LazyLock::new(|| {
    gauge(
        "deferred_deliveries",
        "Deliveries of slow or failing subscriptions waiting in their events without a row yet (walhook.deferrals)",
    )
});

/// First attempts held in this instance's memory (waiting or running), with
/// no delivery row yet: `pending_deliveries` does not count them.
pub static DELIVERIES_IN_MEMORY: LazyLock<IntGauge> = LazyLock::new(|| {
    gauge(
        "deliveries_in_memory",
        "First attempts held in memory (waiting or running) without a delivery row yet",
    )
});

/// Deliveries owed by stored events that have no row yet, as of the last
/// mark (held in memory, or left by an instance that stopped: the next to
/// stream writes their pending rows).
pub static DELIVERY_MARK_LAG_BYTES: LazyLock<IntGauge> = LazyLock::new(|| {
    gauge(
        "delivery_mark_lag_bytes",
        "WAL bytes between the slot's durable position and the mark up to which every delivery has its row",
    )
});

/// Delivery outcomes given up on because PostgreSQL refused the record
/// itself (not the connection); the delivery gets a pending row or its lease
/// lapses, so it is attempted again.
pub static OUTCOMES_REFUSED: LazyLock<prometheus::IntCounter> = LazyLock::new(|| {
    counter(
        "outcomes_refused_total",
        "Delivery outcomes PostgreSQL refused to store (the delivery is attempted again)",
    )
});

/// Pending rows written for deliveries that left memory without an outcome.
pub static DELIVERIES_MATERIALISED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter_vec(
        "deliveries_materialised_total",
        "Pending delivery rows written for deliveries that had none: first attempts that left memory without an outcome (reason: held, disabled, dropped, sweep) and deferred deliveries (deferred)",
        &["reason"],
    )
});

/// HTTP requests to receivers currently in flight.
pub static IN_FLIGHT_REQUESTS: LazyLock<IntGauge> =
    LazyLock::new(|| gauge("in_flight_requests", "HTTP requests to receivers in flight"));

/// 1 while this instance streams the slot, 0 otherwise (standby, connecting).
pub static SLOT_STREAMING: LazyLock<IntGauge> = LazyLock::new(|| {
    gauge(
        "slot_streaming",
        "1 while this instance streams the replication slot; 0 on a standby or while connecting",
    )
});

/// Replication stream errors and reconnects, by kind.
pub static REPLICATION_ERRORS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter_vec(
        "replication_errors_total",
        "Replication stream errors, by kind",
        &["kind"],
    )
});

/// Messages the stream failed on repeatedly, making walhook stop, by table.
pub static REPLICATION_POISON_MESSAGES: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter_vec(
        "replication_poison_messages_total",
        "Replication messages that failed every retry, stopping walhook, by table",
        &["table"],
    )
});

/// Per-subscription delivery duration, kept separate so the spec's histogram stays unlabelled.
pub static SUBSCRIPTION_DELIVERY_DURATION: LazyLock<HistogramVec> = LazyLock::new(|| {
    register(
        HistogramVec::new(
            HistogramOpts::new(
                "subscription_delivery_duration_seconds",
                "Duration of one HTTP delivery attempt, by subscription",
            ),
            &["subscription"],
        )
        .unwrap(),
    )
});

/// Attempt outcomes that could not be written to PostgreSQL (each is retried
/// until stored or the process exits; a delivery whose outcome is lost at exit
/// is attempted again when its lease ends).
pub static OUTCOME_STORE_FAILURES: LazyLock<prometheus::IntCounter> = LazyLock::new(|| {
    counter(
        "outcome_store_failures_total",
        "Failed writes of delivery attempt outcomes (retried until stored)",
    )
});

/// Deliveries whose first attempt was handed from the writer's batch in
/// memory (`first`), or claimed from PostgreSQL (`claimed`: retries, and work
/// beyond the memory bound).
pub static DISPATCHED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter_vec(
        "dispatched_total",
        "Deliveries started, by path: first (from the writer, in memory) or claimed",
        &["path"],
    )
});

/// Subscriptions by endpoint health state (`healthy`, `failing`,
/// `disabled`), as `walhook.subscription_health` says.
pub static SUBSCRIPTIONS_BY_STATE: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    gauge_vec(
        "subscriptions",
        "Subscriptions by endpoint health state: healthy, failing, disabled",
        &["state"],
    )
});

/// Endpoint health transitions this instance made, by the state reached.
pub static SUBSCRIPTION_TRANSITIONS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter_vec(
        "subscription_transitions_total",
        "Endpoint health transitions made by this instance, by the state reached",
        &["to"],
    )
});

/// Probes of failing subscriptions started by this instance.
pub static PROBES: LazyLock<IntCounter> = LazyLock::new(|| {
    counter(
        "probes_total",
        "Probes of failing subscriptions started by this instance",
    )
});

/// Endpoint health reports or transitions that could not be stored (retried).
pub static HEALTH_WRITE_FAILURES: LazyLock<IntCounter> = LazyLock::new(|| {
    counter(
        "health_write_failures_total",
        "Endpoint health writes that failed and are retried",
    )
});

/// Times a delivery waited for its subscription's `rate_limit`.
pub static RATE_LIMITED: LazyLock<IntCounter> = LazyLock::new(|| {
    counter(
        "rate_limited_total",
        "Times a subscription's deliveries waited for its rate_limit",
    )
});

/// Snapshot events stored by backfills (not counted as changes received).
pub static BACKFILL_ROWS: LazyLock<IntCounter> =
    LazyLock::new(|| counter("backfill_rows_total", "Snapshot events stored by backfills"));

/// Backfills this instance is running now.
pub static BACKFILLS_RUNNING: LazyLock<IntGauge> =
    LazyLock::new(|| gauge("backfills_running", "Backfills running in this instance"));

/// WAL the slot keeps on the server: from its `restart_lsn` to the current
/// position (what a stopped or slow walhook costs the primary's disk).
pub static SLOT_RETAINED_WAL_BYTES: LazyLock<IntGauge> = LazyLock::new(|| {
    gauge(
        "slot_retained_wal_bytes",
        "WAL bytes the replication slot keeps on the server (current position minus restart_lsn)",
    )
});

/// `safe_wal_size`: WAL that can be written before the slot is
/// invalidated; -1 when `max_slot_wal_keep_size` is unlimited (or the slot
/// is lost or missing).
pub static SLOT_SAFE_WAL_SIZE_BYTES: LazyLock<IntGauge> = LazyLock::new(|| {
    gauge(
        "slot_safe_wal_size_bytes",
        "WAL bytes that can be written before the slot is invalidated (safe_wal_size); -1 when unlimited or unknown",
    )
});

/// The slot's `wal_status`: 1 for the current one (`reserved`, `extended`,
/// `unreserved`, `lost`, or `missing` when the slot does not exist).
pub static SLOT_WAL_STATUS: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    gauge_vec(
        "slot_wal_status",
        "1 for the replication slot's current wal_status (reserved, extended, unreserved, lost; missing when there is no slot)",
        &["status"],
    )
});

/// The `wal_status` values of [`SLOT_WAL_STATUS`].
pub const SLOT_WAL_STATUSES: [&str; 5] = ["reserved", "extended", "unreserved", "lost", "missing"];

/// WAL whose changes were declared lost by `walhook slot recreate` (summed
/// over re-creations, from `walhook.slot_identity`).
pub static SLOT_LOST_WAL_BYTES: LazyLock<IntGauge> = LazyLock::new(|| {
    gauge(
        "slot_lost_wal_bytes",
        "WAL bytes whose changes were declared lost when the slot was re-created (walhook slot recreate), summed",
    )
});

/// Times the slot was re-created by `walhook slot recreate`.
pub static SLOT_RECREATIONS: LazyLock<IntGauge> = LazyLock::new(|| {
    gauge(
        "slot_recreations",
        "Times the replication slot was re-created with walhook slot recreate",
    )
});

/// Touch every metric so each appears in `/metrics` from the start.
pub fn init() {
    LazyLock::force(&CHANGES_RECEIVED);
    LazyLock::force(&EVENTS);
    LazyLock::force(&EVENT_ERRORS);
    LazyLock::force(&DELIVERIES);
    LazyLock::force(&DELIVERY_DURATION);
    LazyLock::force(&END_TO_END_LATENCY);
    LazyLock::force(&STORED_LATENCY);
    LazyLock::force(&WRITE_BATCH_DURATION);
    LazyLock::force(&DISPATCH_WAIT);
    LazyLock::force(&SIGNING_DURATION);
    LazyLock::force(&REPLICATION_LAG_BYTES);
    LazyLock::force(&REPLICATION_LAG_SECONDS);
    LazyLock::force(&PENDING_DELIVERIES);
    LazyLock::force(&IN_FLIGHT_REQUESTS);
    LazyLock::force(&REPLICATION_ERRORS);
    LazyLock::force(&SLOT_STREAMING);
    LazyLock::force(&REPLICATION_POISON_MESSAGES);
    LazyLock::force(&SUBSCRIPTION_DELIVERY_DURATION);
    LazyLock::force(&OUTCOME_STORE_FAILURES);
    LazyLock::force(&DELIVERIES_IN_MEMORY);
    LazyLock::force(&DEFERRED_DELIVERIES);
    LazyLock::force(&DELIVERY_MARK_LAG_BYTES);
    LazyLock::force(&OUTCOMES_REFUSED);
    for state in ["healthy", "failing", "disabled"] {
        SUBSCRIPTIONS_BY_STATE.with_label_values(&[state]);
        SUBSCRIPTION_TRANSITIONS.with_label_values(&[state]);
    }
    LazyLock::force(&PROBES);
    LazyLock::force(&HEALTH_WRITE_FAILURES);
    LazyLock::force(&RATE_LIMITED);
    for reason in [
        "held", "disabled", "failing", "dropped", "sweep", "deferred",
    ] {
        DELIVERIES_MATERIALISED.with_label_values(&[reason]);
    }
    for path in ["first", "claimed"] {
        DISPATCHED.with_label_values(&[path]);
    }
    LazyLock::force(&BACKFILL_ROWS);
    LazyLock::force(&BACKFILLS_RUNNING);
    LazyLock::force(&SLOT_RETAINED_WAL_BYTES);
    LazyLock::force(&SLOT_SAFE_WAL_SIZE_BYTES);
    for status in SLOT_WAL_STATUSES {
        SLOT_WAL_STATUS.with_label_values(&[status]);
    }
    LazyLock::force(&SLOT_LOST_WAL_BYTES);
    LazyLock::force(&SLOT_RECREATIONS);
}

/// The registry in Prometheus text format.
pub fn render() -> String {
    let mut buf = Vec::new();
    TextEncoder::new()
        .encode(&REGISTRY.gather(), &mut buf)
        .expect("text encoding of gathered metrics");
    String::from_utf8(buf).expect("prometheus text is utf-8")
}
