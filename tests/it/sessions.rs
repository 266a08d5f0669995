//! walhook's SQL sessions: the limits each session starts with (statement and
//! idle-in-transaction timeouts, unless the URL sets its own), and
//! `walhook replay` while the same subscription's deliveries are being updated.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crate::support::{Cluster, TestDb};
use walhook::tls::ConnectConfig;

/// `SHOW name` on a session.
async fn show(client: &tokio_postgres::Client, name: &str) -> String {
    client
        .query_one(&format!("SHOW {name}"), &[])
        .await
        .unwrap()
        .get(0)
}

async fn connect(url: &str) -> tokio_postgres::Client {
    walhook::store::connect(&ConnectConfig::parse(url).unwrap())
        .await
        .unwrap()
}

#[tokio::test]
async fn sessions_start_with_timeouts_and_the_url_wins() {
    let db = Cluster::shared().database();
    let client = connect(&db.url()).await;
    assert_eq!(show(&client, "statement_timeout").await, "1min");
    assert_eq!(
        show(&client, "idle_in_transaction_session_timeout").await,
        "1min"
    );
    assert_eq!(show(&client, "jit").await, "off");

    // the URL's own options come after walhook's, so they win
    let url = format!(
        "{}?options=-c%20statement_timeout%3D5min%20-c%20jit%3Don",
        db.url()
    );
    let client = connect(&url).await;
    assert_eq!(show(&client, "statement_timeout").await, "5min");
    assert_eq!(show(&client, "jit").await, "on");
    assert_eq!(
        show(&client, "idle_in_transaction_session_timeout").await,
        "1min"
    );
}

/// A subscription with `events` events of one type (revisions 1..=events),
/// each with a delivery to it; returns the subscription's id.
fn subscription_with_deliveries(db: &TestDb<'_>, events: u32) -> uuid::Uuid {
    let id = db.psql(&format!(
        "INSERT INTO walhook.subscriptions (name, url) VALUES ('target', 'https://receiver.example/hook');
         INSERT INTO walhook.events (id, type, apiresource, revision, commit_lsn, commit_time, body, seq)
              SELECT gen_random_uuid(), 'item.updated', '/items/' || n, n, '0/100', now(), '{{}}', n
                FROM generate_series(1, {events}) n;
         INSERT INTO walhook.deliveries (event_id, subscription_id, apiresource, commit_lsn, seq, status)
              SELECT e.id, s.id, e.apiresource, e.commit_lsn, e.seq, 'succeeded'
                FROM walhook.events e, walhook.subscriptions s;
         SELECT id FROM walhook.subscriptions"
    ));
    id.trim().lines().last().unwrap().trim().parse().unwrap()
}

/// Replays of a subscription succeed while its deliveries are being updated
/// (as the dispatcher and the recorder do): before, a replay whose snapshot
/// predated such an update failed with "could not serialize access due to
/// concurrent update".
#[tokio::test(flavor = "multi_thread")]
async fn replay_succeeds_while_deliveries_are_updated() {
    const EVENTS: u32 = 300;
    let db = Cluster::shared().database();
    crate::support::migrate(&db.url());
    let subscription = subscription_with_deliveries(&db, EVENTS);

    // one delivery after another is updated, as outcomes are recorded; now
    // and then all of them in one statement, as a batch of outcomes is
    let stop = Arc::new(AtomicBool::new(false));
    let updates = Arc::new(AtomicU64::new(0));
    let updater = {
        let (client, stop, updates) = (db.client().await, stop.clone(), updates.clone());
        tokio::spawn(async move {
            let one = client
                .prepare(
                    "UPDATE walhook.deliveries SET attempts = attempts + 1, status = 'succeeded'
                      WHERE id = (SELECT id FROM walhook.deliveries
                                   WHERE subscription_id = $1 ORDER BY random() LIMIT 1)",
                )
                .await
                .unwrap();
            let all = "UPDATE walhook.deliveries SET attempts = attempts + 1, status = 'succeeded'
                        WHERE subscription_id = $1";
            while !stop.load(Ordering::Relaxed) {
                let n = updates.fetch_add(1, Ordering::Relaxed);
                let result = if n % 50 == 49 {
                    client.execute(all, &[&subscription]).await
                } else {
                    client.execute(&one, &[&subscription]).await
                };
                // the updater may lose a deadlock to a replay; it goes on
                if let Err(error) = result {
                    assert!(
                        error.code()
                            == Some(&tokio_postgres::error::SqlState::T_R_DEADLOCK_DETECTED),
                        "{error:?}"
                    );
                }
            }
        })
    };

    let mut client = connect(&db.url()).await;
    for round in 0..40 {
        let queued = walhook::store::replay::replay(&mut client, subscription, 1, None)
            .await
            .unwrap_or_else(|e| panic!("replay {round} failed: {e:?}"));
        assert_eq!(queued, u64::from(EVENTS));
    }
    // replay lifted walhook's statement timeout for its transaction only
    assert_eq!(show(&client, "statement_timeout").await, "1min");
    stop.store(true, Ordering::Relaxed);
    updater.await.unwrap();
    assert!(updates.load(Ordering::Relaxed) > 40, "the updater ran");
}
