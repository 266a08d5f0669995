//! Unit tests of an attempt's steps: building and signing the request,
//! reading the response, deciding what comes next.

use super::*;

#[test]
fn a_request_that_cannot_be_built_is_parked_not_retried() {
    let now = Utc::now();
    let mut rng = rand::thread_rng();
    let schedule = [Duration::from_secs(10), Duration::from_secs(100)];
    for error in [
        PrepareError::Signing(signing::SigningError::BadSecret),
        PrepareError::Url("relative URL without a base".into()),
        PrepareError::Header("x\n".into()),
    ] {
        assert_eq!(
            decide_unprepared(&error, &schedule, 1, now, &mut rng),
            Decision::Failed,
            "{error}"
        );
    }
    for retryable in [
        PrepareError::Signing(signing::SigningError::NoSigningKey),
        PrepareError::Panicked(super::super::signers::Panicked),
    ] {
        assert!(
            matches!(
                decide_unprepared(&retryable, &schedule, 1, now, &mut rng),
                Decision::RetryAt(_)
            ),
            "{retryable}"
        );
        assert_eq!(
            decide_unprepared(&retryable, &schedule, 3, now, &mut rng),
            Decision::Failed,
            "{retryable}: the schedule ends"
        );
    }
}

fn failed(retry_after: Option<Duration>) -> AttemptOutcome {
    AttemptOutcome::Failed {
        status: Some(500),
        error: "x".into(),
        body: None,
        retry_after,
    }
}

#[test]
fn decisions_follow_the_schedule() {
    let now = Utc::now();
    let mut rng = rand::thread_rng();
    let schedule = [Duration::from_secs(10), Duration::from_secs(100)];
    let ok = AttemptOutcome::Succeeded {
        status: 204,
        body: String::new(),
    };
    assert_eq!(
        decide(&ok, &schedule, 1, now, &mut rng),
        Decision::Succeeded
    );
    match decide(&failed(None), &schedule, 1, now, &mut rng) {
        Decision::RetryAt(t) => {
            let d = (t - now).num_milliseconds();
            assert!((8_000..=12_000).contains(&d), "{d}");
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        decide(&failed(None), &schedule, 2, now, &mut rng),
        Decision::RetryAt(_)
    ));
    assert_eq!(
        decide(&failed(None), &schedule, 3, now, &mut rng),
        Decision::Failed
    );
    match decide(
        &failed(Some(Duration::from_secs(3))),
        &schedule,
        1,
        now,
        &mut rng,
    ) {
        Decision::RetryAt(t) => assert_eq!((t - now).num_seconds(), 3),
        other => panic!("{other:?}"),
    }
}

#[test]
fn no_schedule_or_retry_after_panics_or_waits_past_the_maximum() {
    let now = Utc::now();
    let mut rng = rand::thread_rng();
    let years_300000 = Duration::from_secs(300_000 * 365 * 24 * 3600);
    let huge_retry_after = retry::parse_retry_after(&u64::MAX.to_string(), now);
    assert_eq!(huge_retry_after, Some(Duration::from_secs(u64::MAX)));
    let latest = now + chrono::Duration::days(365);
    for (step, retry_after) in [
        (years_300000, None),
        (years_300000, huge_retry_after),
        (Duration::from_secs(60), huge_retry_after),
        (Duration::MAX, None),
        (Duration::MAX, Some(Duration::MAX)),
    ] {
        match decide(&failed(retry_after), &[step], 1, now, &mut rng) {
            Decision::RetryAt(t) => {
                assert!(t > now && t <= latest, "{step:?} {retry_after:?}: {t}")
            }
            other => panic!("{other:?}"),
        }
    }
    // a step of 300000 years waits the maximum (less jitter), not zero
    match decide(&failed(None), &[years_300000], 1, now, &mut rng) {
        Decision::RetryAt(t) => assert!((t - now).num_days() >= 292, "{t}"),
        other => panic!("{other:?}"),
    }
}
