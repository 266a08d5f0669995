//! Unit tests of first-attempt admission: the memory bounds, who keeps up,
//! slow subscriptions, and an obligation dropped unmet.

use super::*;

fn target(ordered: bool) -> SubscriptionTarget {
    SubscriptionTarget {
        id: Uuid::new_v4(),
        request_url: Ok(url::Url::parse("https://receiver.example/hook").unwrap()),
        headers: serde_json::Map::new(),
        auth_type: "none".into(),
        auth_token: None,
        auth_username: None,
        auth_password: None,
        secret: "whsec_c2VjcmV0".into(),
        previous_secret: None,
        timeout: Duration::from_secs(5),
        retry_schedule: Vec::new(),
        standard_envelope: false,
        signature_schemes: vec!["v1".into()],
        ordered,
        disabled: false,
        max_in_flight: 1,
    }
}

#[test]
fn over_the_bound_a_receiver_that_keeps_up_is_waited_for_unless_others_claim() {
    let plain = target(false);
    let ordered = target(true);
    let (plain_id, ordered_id) = (plain.id, ordered.id);
    let (first, receiver) = FirstAttempts::new(Targets::of([plain, ordered]), 2);
    let mut admission = first.admission();
    assert_eq!(
        admission.admit(0, ordered_id, 1),
        Admit::No,
        "ordered: claimed"
    );
    assert_eq!(admission.admit(0, Uuid::new_v4(), 1), Admit::No, "unknown");
    assert_eq!(admission.admit(0, plain_id, 1), Admit::Yes);
    assert_eq!(admission.admit(1, plain_id, 1), Admit::Yes);
    assert_eq!(
        admission.admit(2, plain_id, 1),
        Admit::Full,
        "the oldest is fresh: wait for room"
    );
    assert!(admission.holds_before(2) && !admission.holds_before(0));
    receiver.peers.store(1, Ordering::Relaxed);
    assert_eq!(
        admission.admit(2, plain_id, 1),
        Admit::No,
        "another instance claims the overflow"
    );
    receiver.peers.store(0, Ordering::Relaxed);
    drop(admission);
    assert_eq!(
        first.admission().admit(0, plain_id, 1),
        Admit::Yes,
        "places are given back with the admission"
    );
}

#[test]
fn a_receiver_far_behind_the_others_is_left_to_claims() {
    let (slow, fast) = (target(false), target(false));
    let (slow_id, fast_id) = (slow.id, fast.id);
    let (first, _receiver) = FirstAttempts::new(Targets::of([slow, fast]), 2 * PER_SUBSCRIPTION);
    let mut admission = first.admission();
    for event in 0..PER_SUBSCRIPTION {
        assert_eq!(admission.admit(event, slow_id, 1), Admit::Yes);
    }
    std::thread::sleep(KEEPING_UP + Duration::from_millis(100));
    assert_eq!(
        admission.admit(PER_SUBSCRIPTION, slow_id, 1),
        Admit::Full,
        "past KEEPING_UP, but no receiver is less behind: the machine is the limit"
    );
    assert_eq!(admission.admit(0, fast_id, 1), Admit::Yes);
    assert_eq!(
        admission.admit(PER_SUBSCRIPTION, slow_id, 1),
        Admit::No,
        "over twice as far behind as the fast receiver: it does not keep up"
    );
}

#[test]
fn a_slow_subscription_and_work_over_the_byte_bound_stay_out_of_memory() {
    let plain = target(false);
    let id = plain.id;
    let (first, receiver) = FirstAttempts::new(Targets::of([plain]), 100);
    let mut admission = first.admission();
    assert_eq!(admission.admit(0, id, BYTES_IN_MEMORY - 1), Admit::Yes);
    assert_eq!(
        admission.admit(1, id, 2),
        Admit::Full,
        "over the byte bound: wait for room"
    );
    drop(admission);
    receiver.slow.slowed(id);
    assert_eq!(first.admission().admit(0, id, 1), Admit::No, "slow");
}

#[test]
fn an_obligation_dropped_unmet_goes_to_the_recorder_and_holds_nothing() {
    let (durable, _) = tokio::sync::watch::channel(crate::replication::lsn::Lsn(0));
    let (materialised, materialised_rx) =
        tokio::sync::watch::channel(crate::replication::lsn::Lsn(0));
    let positions = super::super::positions::Positions::new(durable, materialised);
    let ticket = positions.committed(Some(crate::replication::lsn::Lsn(7)), 1);
    let (unmet_tx, mut unmet_rx) = mpsc::unbounded_channel();
    let obligation = Obligation {
        owed: Some(Unmet {
            new: NewDelivery {
                event_id: Uuid::new_v4(),
                subscription_id: Uuid::new_v4(),
                apiresource: Arc::from("/items/1"),
                commit_lsn: crate::replication::lsn::Lsn(6),
                seq: 0,
            },
            ticket,
            reason: "dropped",
        }),
        unmet: unmet_tx,
    };
    drop(obligation);
    let unmet = unmet_rx.try_recv().expect("sent to the recorder");
    assert_eq!(unmet.reason, "dropped");
    assert_eq!(*materialised_rx.borrow(), crate::replication::lsn::Lsn(0));
    unmet.ticket.recorded();
    assert_eq!(
        *materialised_rx.borrow(),
        crate::replication::lsn::Lsn(7),
        "once its pending row is written, the mark moves"
    );
}

#[test]
fn keeping_up_is_absolute_below_one_second_relative_up_to_ten() {
    let s = Duration::from_secs;
    let ms = Duration::from_millis;
    assert!(keeps_up(ms(900), ms(1)));
    assert!(keeps_up(s(3), ms(1_500)));
    assert!(!keeps_up(s(3), ms(1_400)));
    assert!(keeps_up(ms(9_900), ms(9_900)));
    assert!(!keeps_up(s(10), s(10)));
}
