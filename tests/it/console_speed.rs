//! The console with 100,000 deliveries stored (the first page must be usable
//! within 300 ms on the bench machine): the API calls of its first pages
//! timed (a webhook whose deliveries are the oldest, and one with none,
//! among them), and the time until the webhooks page
//! and the deliveries page are usable measured in a real Chromium (the
//! `walhook:page-rendered` mark the console sets once a page's data is in
//! it). The figures are printed, and docs/console.md quotes them; the bounds
//! asserted are generous, for a loaded test machine.

use std::time::Duration;

use serde_json::json;

use super::webdriver::Browser;
use crate::support::api::ApiServer;
use crate::support::{Cluster, TestDb, wait_until};

const WAIT: Duration = Duration::from_secs(60);

/// Five webhooks with 20,000 deliveries each (one in 50 failed), and a sixth,
/// created last, with none; returns the ids of the five.
async fn seed_100000(db: &TestDb<'_>, api: &ApiServer) -> Vec<String> {
    let mut webhooks = Vec::new();
    for n in 0..6 {
        webhooks.push(
            api.create_webhook_id(
                json!({"url": format!("https://receiver{n}.example/in"), "events": ["*"]}),
            )
            .await,
        );
    }
    webhooks.pop();
    db.psql(&format!(
        "INSERT INTO walhook.events (id, type, apiresource, revision, commit_lsn, commit_time, body)
         SELECT md5(n::text)::uuid, 'item.created', '/items/' || n, n, '0/10', now(), '{{}}'
           FROM generate_series(1, 20000) n;
         INSERT INTO walhook.deliveries (event_id, subscription_id, status, attempts, apiresource, commit_lsn)
         SELECT md5(n::text)::uuid, w, CASE WHEN n % 50 = 0 THEN 'failed' ELSE 'succeeded' END, 1,
                '/items/' || n, '0/10'
           FROM unnest('{{{}}}'::uuid[]) w, generate_series(1, 20000) n;
         ANALYZE walhook.events; ANALYZE walhook.deliveries;",
        webhooks.join(",")
    ));
    let count = db.psql("SELECT count(*) FROM walhook.deliveries");
    assert_eq!(count.trim(), "100000");
    webhooks
}

/// The calls of the console's first page (the webhooks and each one's last
/// delivery) and of the deliveries page, timed.
#[tokio::test(flavor = "multi_thread")]
async fn the_first_pages_are_quick_with_100000_deliveries() {
    let db = Cluster::shared().database();
    let api = ApiServer::start(&db).await;
    let webhooks = seed_100000(&db, &api).await;
    let mut worst = Duration::ZERO;
    for _ in 0..3 {
        let started = std::time::Instant::now();
        let list = api.get("/v1/webhooks?limit=50").await;
        let listed = list.body["data"].as_array().unwrap();
        assert_eq!(listed.len(), 6);
        for w in listed {
            let id = w["id"].as_str().unwrap();
            let last = api
                .get(&format!("/v1/deliveries?limit=1&webhookId={id}"))
                .await;
            let expected = usize::from(webhooks.iter().any(|s| s == id));
            assert_eq!(last.body["data"].as_array().unwrap().len(), expected);
        }
        let first_page = started.elapsed();
        let started = std::time::Instant::now();
        for path in [
            "/v1/deliveries?limit=25".to_owned(),
            "/v1/deliveries?limit=25&status=failed".to_owned(),
            format!(
                "/v1/deliveries?limit=25&webhookId={}&eventType=item.*",
                webhooks[0]
            ),
            format!("/v1/webhooks/{}/deliveries?limit=25", webhooks[4]),
        ] {
            let page = api.get(&path).await;
            assert_eq!(page.body["data"].as_array().unwrap().len(), 25, "{path}");
        }
        worst = worst.max(first_page).max(started.elapsed());
        eprintln!(
            "first page's calls {first_page:?}, deliveries pages {:?}",
            started.elapsed()
        );
    }
    // 300 ms on the bench machine; a loaded test machine gets more room
    assert!(worst < Duration::from_secs(3), "{worst:?}");
}

/// Milliseconds from navigation start to the console's `walhook:page-rendered`
/// mark, on a fresh load of `url`.
async fn time_to_usable(browser: &Browser, url: &str) -> f64 {
    browser.goto("about:blank").await;
    browser.goto(url).await;
    wait_until(WAIT, "the page rendered", || async {
        browser
            .execute(
                "const m = performance.getEntriesByName('walhook:page-rendered');
                 return m.length ? m[0].startTime : null",
            )
            .await
            .as_f64()
    })
    .await
}

/// The webhooks page (the list, then each webhook's last delivery) and the
/// deliveries page, loaded afresh in Chromium five times each: the time until
/// each is usable, and the browser's own timing of `GET /v1/deliveries`.
#[tokio::test(flavor = "multi_thread")]
async fn the_first_page_is_usable_quickly_in_a_browser_with_100000_deliveries() {
    let Some(browser) = Browser::start().await else {
        return;
    };
    let db = Cluster::shared().database();
    let api = ApiServer::start(&db).await;
    seed_100000(&db, &api).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let database = walhook::tls::ConnectConfig::parse(&db.url()).unwrap();
    let app = walhook::api::router(database).merge(walhook::api::console::router());
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    browser.goto(&format!("{base}/console")).await;
    browser
        .execute(&format!(
            "sessionStorage.setItem('walhook.token', '{}'); return null",
            api.token
        ))
        .await;
    let mut figures = Vec::new();
    for (page, ready) in [
        ("#/webhooks", "#webhooks tbody tr"),
        ("#/deliveries", "#deliveries tbody tr"),
    ] {
        let mut times = Vec::new();
        for _ in 0..5 {
            times.push(time_to_usable(&browser, &format!("{base}/console{page}")).await);
            assert!(browser.count(ready).await > 0, "{page}");
            let pending = browser.count("#webhooks td.last").await;
            let filled = browser
                .execute(
                    "return [...document.querySelectorAll('#webhooks td.last')]
                       .filter((td) => td.textContent !== '…').length",
                )
                .await;
            assert_eq!(filled, json!(pending), "every last delivery shown");
        }
        let api_ms = browser
            .execute(
                "return performance.getEntriesByType('resource')
                   .filter((r) => r.name.includes('/v1/deliveries?limit=25'))
                   .map((r) => r.duration)",
            )
            .await;
        times.sort_by(f64::total_cmp);
        eprintln!(
            "{page}: usable after {times:.0?} ms (median {:.0} ms); GET /v1/deliveries took {api_ms} ms",
            times[2]
        );
        figures.push(times[2]);
    }
    server.abort();
    browser.quit().await;
    // 300 ms on the bench machine; a loaded test machine gets more room
    for median in figures {
        assert!(median < 3000.0, "{median} ms");
    }
}
