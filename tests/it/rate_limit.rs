//! `rate_limit`: a subscription's deliveries reach its receiver at most at
//! its rate (per instance), measured at the receiver; the excess waits, is
//! not failed and uses no retries.

use std::collections::HashSet;
use std::time::Duration;

use crate::support::{Cluster, Receiver, subscribe, wait_until, walhook_streaming};

/// 600 events at once to a subscription limited to 40 deliveries per
/// second: the receiver counts them per second, and the limit holds within
/// 10% overall and in every second (the first may carry the bucket's burst
/// of a tenth of a second); a second subscription without a limit gets them at once; each
/// limited delivery took one attempt.
#[tokio::test(flavor = "multi_thread")]
async fn a_rate_limit_holds_at_the_receiver() {
    let db = Cluster::shared().new_database();
    crate::health::prepare(&db);
    let limited = Receiver::start().await;
    let free = Receiver::start().await;
    let rate = 40.0;
    let id = subscribe(&db, &limited.url(), ", rate_limit", &format!(", {rate}"));
    subscribe(&db, &free.url(), "", "");
    let _daemon = walhook_streaming(&db);
    let total = 600;
    db.psql(&format!(
        "INSERT INTO accounts (id) SELECT generate_series(1, {total})"
    ));
    wait_until(
        Duration::from_secs(30),
        "the unlimited receiver got everything",
        || async { (free.count() >= total).then_some(()) },
    )
    .await;
    assert!(
        limited.count() < total / 2,
        "the limited receiver got {} already",
        limited.count()
    );
    wait_until(
        Duration::from_secs(60),
        "the limited receiver got everything",
        || async { (limited.count() >= total).then_some(()) },
    )
    .await;
    let received: Vec<_> = limited
        .received()
        .into_iter()
        .filter(|r| {
            r.header("webhook-event-type")
                .is_some_and(|t| t.starts_with("account."))
        })
        .collect();
    let ids: HashSet<_> = received
        .iter()
        .filter_map(|r| r.header("webhook-id"))
        .collect();
    assert_eq!(ids.len(), total, "every event once");
    assert_eq!(received.len(), total, "no request beyond one per event");
    let start = received[0].at;
    let mut per_second = vec![0usize; 64];
    for r in &received {
        per_second[(r.at - start).as_secs() as usize] += 1;
    }
    let seconds = (received[total - 1].at - start).as_secs_f64();
    let overall = (total - 1) as f64 / seconds;
    // at most the limit (within 10%); and not far under it, though a loaded
    // machine may leave gaps between claims
    assert!(
        overall <= rate * 1.1 && overall >= rate * 0.7,
        "{overall:.1}/s over {seconds:.1} s for a limit of {rate}/s; per second: {per_second:?}"
    );
    let full_seconds = seconds.floor() as usize;
    for (second, n) in per_second[..full_seconds].iter().enumerate() {
        let burst = if second == 0 { rate * 0.1 + 1.0 } else { 0.0 };
        assert!(
            *n as f64 <= rate * 1.1 + burst,
            "{n} requests in second {second}: {per_second:?}"
        );
    }
    assert_eq!(
        db.psql(&format!(
            "SELECT count(*) FROM walhook.deliveries
              WHERE subscription_id = '{id}' AND (status <> 'succeeded' OR attempts <> 1)"
        )),
        "0",
        "waiting for the rate is neither a failure nor a retry"
    );
}
