//! The web console (`GET /console`): its static files and their policy, the
//! API endpoints it added (a delivery, its attempts, the event search,
//! backfills, the status, the event catalogue), and the console driven in a
//! real headless Chromium over WebDriver against a `walhook run` daemon: paste
//! a token, create a webhook (its pattern from the catalogue's picker) and see
//! its secret, watch a delivery appear, see a failing delivery's attempts and
//! resend it, the catalogue, start a backfill and watch it finish, the health
//! page, disable a webhook, edit one (its signature schemes, filter, rate
//! limit) and see its endpoint failing, delete it, and a wrong token bringing
//! the prompt back.
//!
//! The browser test needs `chromium` and `chromium-driver` (`.ci/browser.sh`);
//! without chromedriver it skips, unless `WALHOOK_REQUIRE_BROWSER` is set (CI).
//! On failure it saves a screenshot and the page's HTML under
//! `target/console-screenshots/`, beside one of each page it passed (the
//! webhook's deliveries, `deliveries.png`, is the picture in docs/console.md).

#[path = "support/webdriver.rs"]
mod webdriver;

#[path = "console_speed.rs"]
mod speed;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::support::api::{ApiServer, create_token};
use crate::support::receiver::Reply;
use crate::support::{Cluster, Receiver, items_table, wait_until, walhook_run};
use serde_json::{Value, json};
use webdriver::Browser;

const WAIT: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread")]
async fn the_console_is_served_under_a_strict_policy() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, walhook::api::console::router()).await;
    });
    for (path, kind) in [
        ("/console", "text/html"),
        ("/console/", "text/html"),
        ("/console/console.js", "text/javascript"),
        ("/console/console.css", "text/css"),
        ("/console/favicon.svg", "image/svg+xml"),
    ] {
        let response = reqwest::get(format!("http://{addr}{path}")).await.unwrap();
        assert_eq!(response.status(), 200, "{path}");
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned()
        };
        assert!(header("content-type").starts_with(kind), "{path}");
        let csp = header("content-security-policy");
        assert!(csp.contains("default-src 'none'"), "{path}: {csp}");
        assert!(csp.contains("script-src 'self'"), "{path}: {csp}");
        assert!(csp.contains("connect-src 'self'"), "{path}: {csp}");
        assert!(csp.contains("frame-ancestors 'none'"), "{path}: {csp}");
        assert!(!csp.contains("unsafe"), "{path}: {csp}");
        assert_eq!(header("x-content-type-options"), "nosniff");
        let body = response.text().await.unwrap();
        if kind == "text/html" {
            assert!(body.contains(r#"<script src="/console/console.js" defer></script>"#));
            assert!(!body.contains("<script>"), "no inline script");
        }
    }
    task.abort();
}

/// A delivery with three attempts, written as the dispatcher would, and two events.
fn seed_history(db: &crate::support::TestDb<'_>, webhook: &str) -> (String, String) {
    let out = db.psql(&format!(
        "WITH e AS (
           INSERT INTO walhook.events (id, type, apiresource, revision, commit_lsn, commit_time, body)
           VALUES (gen_random_uuid(), 'item.created', '/items/1', 10, '0/10', now() - interval '1 minute',
                   '{{\"apiresource\": \"/items/1\"}}'),
                  (gen_random_uuid(), 'item.updated', '/items/1', 11, '0/20', now(),
                   '{{\"apiresource\": \"/items/1\"}}')
           RETURNING id, type),
         d AS (
           INSERT INTO walhook.deliveries (event_id, subscription_id, status, attempts, apiresource,
                                           commit_lsn, last_status_code, last_error, last_attempt_at)
           SELECT id, '{webhook}', 'failed', 3, '/items/1', '0/10', 500, 'HTTP 500', now()
             FROM e WHERE type = 'item.created'
           RETURNING id, event_id)
         SELECT d.id || ' ' || d.event_id FROM d"
    ));
    let (delivery, event) = out.trim().split_once(' ').unwrap();
    db.psql(&format!(
        "INSERT INTO walhook.delivery_attempts
           (delivery_id, attempt, attempted_at, duration_ms, status_code, error, response_body)
         SELECT {delivery}, n, now(), 7 * n, 500, 'HTTP 500', 'down ' || n
           FROM generate_series(1, 3) n"
    ));
    (delivery.to_owned(), event.to_owned())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_delivery_its_attempts_and_events_are_found_through_the_api() {
    let db = Cluster::shared().database();
    let api = ApiServer::start(&db).await;
    db.psql("INSERT INTO walhook.settings VALUES ('allow_insecure_targets', 'true')");
    let webhook = api
        .create_webhook_id(json!({"url": "https://receiver.example/in", "events": ["item.*"]}))
        .await;
    let (delivery, event) = seed_history(&db, &webhook);

    let one = api.get(&format!("/v1/deliveries/{delivery}")).await;
    assert_eq!(one.status, 200, "{}", one.body);
    assert_eq!(one.body["webhookId"], webhook.as_str());
    assert_eq!(one.body["eventId"], event.as_str());
    assert_eq!(one.body["status"], "failed");
    assert_eq!(one.body["attempts"], 3);

    let (attempts, pages) = api
        .all_pages(&format!("/v1/deliveries/{delivery}/attempts"), 2)
        .await;
    assert_eq!(pages, 2);
    let numbers: Vec<i64> = attempts
        .iter()
        .map(|a| a["attempt"].as_i64().unwrap())
        .collect();
    assert_eq!(numbers, [1, 2, 3], "oldest first");
    assert_eq!(attempts[2]["statusCode"], 500);
    assert_eq!(attempts[2]["durationMs"], 21);
    assert_eq!(attempts[2]["error"], "HTTP 500");
    assert_eq!(attempts[2]["responseBody"], "down 3");
    assert!(attempts[0]["attemptedAt"].is_string());

    api.get("/v1/deliveries/999999")
        .await
        .assert_error(404, "id");
    api.get("/v1/deliveries/x/attempts")
        .await
        .assert_error(400, "id");
    api.get("/v1/deliveries/999999/attempts")
        .await
        .assert_error(404, "id");

    // across webhooks, by status, event type, webhook and event
    let ids = |path: String| {
        let api = &api;
        async move {
            let reply = api.get(&path).await;
            assert_eq!(reply.status, 200, "{path}: {}", reply.body);
            reply.body["data"]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| d["id"].to_string())
                .collect::<Vec<_>>()
        }
    };
    let all = ids("/v1/deliveries".to_owned()).await;
    assert_eq!(all, [delivery.as_str()]);
    for filter in [
        "status=failed".to_owned(),
        "eventType=item.created".to_owned(),
        "eventType=item.*".to_owned(),
        format!("webhookId={webhook}"),
        format!("eventId={event}"),
    ] {
        assert_eq!(
            ids(format!("/v1/deliveries?{filter}")).await,
            all,
            "{filter}"
        );
    }
    for filter in [
        "status=pending".to_owned(),
        "eventType=item.updated".to_owned(),
        format!("webhookId={}", uuid()),
    ] {
        assert!(
            ids(format!("/v1/deliveries?{filter}")).await.is_empty(),
            "{filter}"
        );
    }
    let listed = api.get(&format!("/v1/deliveries?eventId={event}")).await;
    assert_eq!(listed.body["data"][0]["webhookId"], webhook.as_str());
    api.get("/v1/deliveries?status=lost")
        .await
        .assert_error(400, "status");
    api.get("/v1/deliveries?webhookId=x")
        .await
        .assert_error(400, "webhookId");

    let types = |reply: &crate::support::api::Reply| -> Vec<String> {
        reply.body["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["type"].as_str().unwrap().to_owned())
            .collect()
    };
    let all = api.get("/v1/events").await;
    assert_eq!(all.status, 200, "{}", all.body);
    assert_eq!(
        types(&all),
        ["item.updated", "item.created"],
        "newest first"
    );
    let (paged, pages) = api.all_pages("/v1/events", 1).await;
    assert_eq!((paged.len(), pages), (2, 2));
    assert_eq!(
        types(&api.get("/v1/events?type=item.created").await),
        ["item.created"]
    );
    assert_eq!(types(&api.get("/v1/events?type=item.*").await).len(), 2);
    assert_eq!(types(&api.get("/v1/events?type=user.*").await).len(), 0);
    assert_eq!(
        types(
            &api.get("/v1/events?apiresource=/items/*&fromRevision=11")
                .await
        ),
        ["item.updated"]
    );
    assert_eq!(
        types(
            &api.get("/v1/events?apiresource=/items/1&toRevision=10")
                .await
        ),
        ["item.created"]
    );
    api.get("/v1/events?fromRevision=ten")
        .await
        .assert_error(400, "fromRevision");
    api.get("/v1/events?kind=x").await.assert_error(400, "kind");
    api.get("/v1/events?cursor=nope")
        .await
        .assert_error(400, "cursor");

    let status = api.get("/v1/status").await;
    assert_eq!(status.status, 200, "{}", status.body);
    assert_eq!(
        status.body["slot"]["name"], "walhook",
        "no slot recorded yet"
    );
    assert_eq!(status.body["slot"]["exists"], false);
    for count in [
        "pending_deliveries",
        "owed_without_row",
        "deferred_without_row",
    ] {
        assert!(status.body[count].is_i64(), "{count}: {}", status.body);
    }
    assert!(status.body["failing_subscriptions"].is_array());
    assert!(status.body["events_last_hour"].is_array());
    let named = api.get(&format!("/v1/status?slot={}", db.slot)).await;
    assert_eq!(named.body["slot"]["name"], db.slot.as_str());
    api.get("/v1/status?slots=x")
        .await
        .assert_error(400, "slots");

    let doc = api.get("/v1/openapi.json").await.body;
    for (path, operation) in [
        ("/v1/deliveries/{id}", "getDelivery"),
        ("/v1/deliveries/{id}/attempts", "listAttempts"),
        ("/v1/events", "searchEvents"),
        ("/v1/status", "getStatus"),
    ] {
        assert_eq!(
            doc["paths"][path]["get"]["operationId"], operation,
            "{path}"
        );
    }
    for schema in ["Attempt", "AttemptPage", "DeliveryDetail", "EventPage"] {
        assert!(doc["components"]["schemas"][schema].is_object(), "{schema}");
    }
    crate::support::python::verify("validate_openapi.py", &doc)
        .expect("a valid OpenAPI 3.1 document");
}

#[tokio::test(flavor = "multi_thread")]
async fn backfills_are_started_followed_and_cancelled_through_the_api() {
    let db = Cluster::shared().database();
    let api = ApiServer::start(&db).await;
    db.psql(
        "CREATE TABLE items (id int PRIMARY KEY, label text);
         CREATE TABLE keyless (label text);
         INSERT INTO walhook.routes (source_table, resource, apiresource)
         VALUES ('items', 'item', '/items/{id}'), ('keyless', 'keyless', '/k/{label}');",
    );
    let webhook = api
        .create_webhook_id(json!({"url": "https://receiver.example/in", "events": ["item.*"]}))
        .await;
    for (body, param, rule) in [
        (
            json!({"webhookId": webhook, "table": "nowhere"}),
            "table",
            "does not exist",
        ),
        (
            json!({"webhookId": webhook, "table": "keyless"}),
            "table",
            "primary key",
        ),
        (
            json!({"webhookId": webhook, "table": "walhook.settings"}),
            "table",
            "route",
        ),
        (
            json!({"webhookId": webhook, "table": "items", "where": "label ="}),
            "where",
            "where_clause",
        ),
        (
            json!({"webhookId": uuid(), "table": "items"}),
            "webhookId",
            "does not exist",
        ),
        (json!({"webhookId": webhook}), "body", "table"),
        (
            json!({"webhookId": webhook, "table": "items", "rowsPerSecond": 0}),
            "rowsPerSecond",
            "rows_per_second",
        ),
    ] {
        let refused = api.post("/v1/backfills", body.clone()).await;
        assert_eq!(refused.status, 400, "{body}: {}", refused.body);
        refused.assert_error(400, param);
        assert!(
            refused.body.to_string().contains(rule),
            "{body}: {}",
            refused.body
        );
    }
    let created = api
        .post(
            "/v1/backfills",
            json!({"webhookId": webhook, "table": "items", "where": "id > 1"}),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.body);
    let b = &created.body;
    assert_eq!(b["webhookId"], webhook.as_str());
    assert_eq!(b["table"], "items");
    assert_eq!(b["status"], "pending");
    assert_eq!(b["rowsSent"], 0);
    let id = b["id"].as_str().unwrap().to_owned();
    assert_eq!(api.get(&format!("/v1/backfills/{id}")).await.body, *b);
    assert_eq!(api.get("/v1/backfills").await.body, json!({"data": [b]}));
    let cancelled = api
        .call(
            reqwest::Method::POST,
            &format!("/v1/backfills/{id}/cancel"),
            None,
        )
        .await;
    assert_eq!(cancelled.status, 200, "{}", cancelled.body);
    assert_eq!(cancelled.body["status"], "cancelled");
    assert!(cancelled.body["finishedAt"].is_string());
    api.get(&format!("/v1/backfills/{}", uuid()))
        .await
        .assert_error(404, "id");
    api.get("/v1/backfills/x").await.assert_error(400, "id");
    let doc = api.get("/v1/openapi.json").await.body;
    assert_eq!(
        doc["paths"]["/v1/backfills"]["post"]["operationId"],
        "createBackfill"
    );
    assert_eq!(
        doc["paths"]["/v1/backfills/{id}/cancel"]["post"]["operationId"],
        "cancelBackfill"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_catalogue_lists_what_the_routes_make_with_samples() {
    let db = Cluster::shared().database();
    let api = ApiServer::start(&db).await;
    db.psql(
        r#"CREATE TABLE items (id int PRIMARY KEY, status text, secret text,
                              at timestamptz, tags text[], price numeric(8,2));
           INSERT INTO walhook.routes (source_table, resource, apiresource, status_column,
                                       status_events, event_names, exclude_columns, bulk_delete_event)
           VALUES ('items', 'item', '/items/{id}', 'status',
                   '{"suspended": "suspended", "blocked->active": "unblocked"}',
                   '{"insert": "added"}', '{secret}', 'bulk_deleted');"#,
    );
    let catalogue = api.get("/v1/catalogue").await;
    assert_eq!(catalogue.status, 200, "{}", catalogue.body);
    let data = catalogue.body["data"].as_array().unwrap();
    let types: Vec<&str> = data.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(
        types,
        [
            "item.added",
            "item.updated",
            "item.unblocked",
            "item.suspended",
            "item.deleted",
            "item.bulk_deleted",
            "item.snapshot",
            "webhook.created",
            "webhook.updated",
            "webhook.deleted",
            "webhook.failing",
            "webhook.recovered",
            "webhook.disabled"
        ]
    );
    let failing = &data[10];
    assert_eq!(failing["table"], "walhook.subscription_health");
    assert_eq!(failing["operation"], "health");
    let sample = &failing["sample"];
    assert!(
        sample["apiresource"]
            .as_str()
            .unwrap()
            .starts_with("/webhooks/"),
        "{sample}"
    );
    let payload = &sample["resourcepayload"];
    assert!(payload["subscription_id"].is_string() && payload["consecutive_failures"].is_i64());
    assert!(payload["failing_since"].is_string() && payload["last_error"].is_string());
    assert_eq!(sample["resourcepayload"]["state"], "failing");
    assert!(data[11]["sample"]["resourcepayload"]["last_success_at"].is_string());
    let added = &data[0];
    assert_eq!(added["table"], "items");
    assert_eq!(added["operation"], "insert");
    assert_eq!(added["enabled"], true);
    let sample = &added["sample"];
    assert_eq!(sample["apiresource"], "/items/1");
    assert_eq!(
        sample["resourcepayload"],
        json!({"id": 1, "status": "<status>", "at": "2024-12-12T17:38:03.850Z",
               "tags": [], "price": 1.5}),
        "typed values, the excluded column left out"
    );
    assert!(sample["updatetimestamp"].is_string() && sample["revision"].is_i64());
    assert!(
        data[2]["when"]
            .as_str()
            .unwrap()
            .contains("blocked to active")
    );
    assert_eq!(
        data[5]["sample"],
        Value::Null,
        "a bulk delete has its own shape"
    );
    let doc = api.get("/v1/openapi.json").await.body;
    assert_eq!(
        doc["paths"]["/v1/catalogue"]["get"]["operationId"],
        "getCatalogue"
    );
}

fn uuid() -> String {
    "00000000-0000-4000-8000-000000000000".to_owned()
}

/// Where a failed browser test leaves its screenshot and HTML.
fn screenshot_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("target/console-screenshots")
        .join(format!("{name}.png"))
}

#[tokio::test(flavor = "multi_thread")]
async fn the_console_in_a_browser_creates_watches_resends_and_disables() {
    let Some(browser) = Browser::start().await else {
        return;
    };
    let browser = Arc::new(browser);
    let scenario = tokio::spawn(console_scenario(Arc::clone(&browser)));
    let outcome = scenario.await;
    if outcome.is_err() {
        let path = screenshot_path("the_console_in_a_browser");
        browser.screenshot(&path).await;
        eprintln!("screenshot of the failing page: {}", path.display());
    }
    if let Ok(browser) = Arc::try_unwrap(browser) {
        browser.quit().await;
    }
    if let Err(error) = outcome {
        std::panic::resume_unwind(error.into_panic());
    }
}

async fn console_scenario(browser: Arc<Browser>) {
    let db = Cluster::shared().database();
    let good = Receiver::start().await;
    let failing = Receiver::replying(Reply::StatusWithBody(500, b"receiver down".to_vec())).await;
    items_table(&db, ", label text");
    let token = create_token(&db.url(), "console");
    let daemon = walhook_run(&db.url(), &db.slot, &db.publication, &[]);
    daemon.wait_for_log("streaming", WAIT);
    let base = format!("http://{}", daemon.http_addr.as_ref().unwrap());

    // the prompt first; the token pasted once
    browser.goto(&format!("{base}/console#/webhooks")).await;
    browser.wait_for("#token-input", WAIT).await;
    snap(&browser, "1-prompt").await;
    browser.fill("#token-input", &token).await;
    browser.click("#token-save").await;
    browser.wait_text("main h1", "Webhooks", WAIT).await;
    let kept = browser
        .execute("return sessionStorage.getItem('walhook.token')")
        .await;
    assert_eq!(kept, Value::String(token.clone()), "kept in sessionStorage");

    // create a webhook: its secret is shown once
    let secret = create_in_console(&browser, "good hook", &good.url(), "10ms").await;
    let stored = db.psql("SELECT secret FROM walhook.subscriptions WHERE name = 'good hook'");
    assert_eq!(secret, stored.trim(), "the secret shown is the webhook's");
    snap(&browser, "2-created").await;
    browser.click("#open-webhook").await;
    browser.wait_text("main h1", "good hook", WAIT).await;
    browser.wait_for("#no-deliveries", WAIT).await;

    // a row inserted: the delivery appears on the open page by itself
    db.psql("INSERT INTO items VALUES (1, 'one')");
    browser
        .wait_for("#deliveries tr[data-status=succeeded]", WAIT)
        .await;
    let row = browser.text("#deliveries tbody tr").await;
    let page = browser.text("main").await;
    assert!(
        !page.contains("null") && !page.contains("undefined"),
        "{page}"
    );
    assert!(row.contains("item.created") && row.contains("204"), "{row}");
    // the picture of docs/console.md, kept under target/ for a human to look at
    snap(&browser, "deliveries").await;
    let good_page = browser
        .execute("return window.location.hash")
        .await
        .as_str()
        .unwrap()
        .to_owned();

    // a failing receiver: the delivery shows each attempt, then is resent
    browser.goto(&format!("{base}/console#/webhooks/new")).await;
    create_in_console(&browser, "failing hook", &failing.url(), "10ms 10ms").await;
    browser.click("#open-webhook").await;
    browser.wait_text("main h1", "failing hook", WAIT).await;
    let failing_page = browser
        .execute("return window.location.hash")
        .await
        .as_str()
        .unwrap()
        .to_owned();
    db.psql("INSERT INTO items VALUES (2, 'two'); INSERT INTO items VALUES (3, 'three')");
    wait_until(WAIT, "two failed deliveries", || async {
        (browser.count("#deliveries tr[data-status=failed]").await == 2).then_some(())
    })
    .await;
    // one of them (item 2's or item 3's)
    browser.click("#deliveries tr[data-status=failed] a").await;
    browser.wait_text("#delivery-state", "failed", WAIT).await;
    wait_until(WAIT, "three attempts shown", || async {
        (browser.count("#attempts tbody tr").await == 3).then_some(())
    })
    .await;
    let attempts = browser.text("#attempts").await;
    assert!(
        attempts.contains("500") && attempts.contains("receiver down"),
        "{attempts}"
    );
    // the headers the first attempt sent, unfolded, and still open after
    // the page's next reload
    browser
        .click("#attempts tbody tr:first-child .sent-headers summary")
        .await;
    let sent = browser
        .wait_text(
            "#attempts tbody tr:first-child .sent-headers pre",
            "webhook-attempt: 1",
            WAIT,
        )
        .await;
    assert!(
        sent.contains("webhook-signature: v1,") && !sent.contains("authorization"),
        "{sent}"
    );
    browser
        .execute("document.querySelector('#attempts').dataset.before = 'reload'; return null")
        .await;
    wait_until(WAIT, "the attempts reloaded", || async {
        (browser.count("#attempts[data-before]").await == 0).then_some(())
    })
    .await;
    assert!(
        browser
            .text("#attempts tbody tr:first-child .sent-headers pre")
            .await
            .contains("webhook-id: "),
        "the headers stay unfolded across the reload"
    );
    failing.set_default(Reply::Status(204));
    browser.click("#resend").await;
    browser
        .wait_text("#delivery-state", "succeeded", WAIT)
        .await;
    assert_eq!(browser.count("#attempts tbody tr").await, 4);
    assert!(
        browser
            .text("#attempts tbody tr:last-child")
            .await
            .contains("204")
    );
    // by default (attempt_request_headers = failed) a succeeded attempt
    // keeps no headers, the failed ones do
    assert_eq!(
        browser
            .count("#attempts tbody tr:last-child .sent-headers")
            .await,
        0
    );
    assert_eq!(browser.count("#attempts tbody .sent-headers").await, 3);
    snap(&browser, "3-delivery").await;

    // the event behind it, pretty-printed
    browser.click("main dl a[href^='#/events/']").await;
    browser
        .wait_text("#event-body", "\"apiresource\": \"/items/", WAIT)
        .await;
    assert_eq!(
        browser.count("#deliveries tbody tr").await,
        2,
        "received by both webhooks"
    );

    // the other failed one, resent in bulk from the webhook's failed deliveries
    browser
        .goto(&format!("{base}/console{failing_page}?status=failed"))
        .await;
    wait_until(WAIT, "one failed delivery left", || async {
        (browser.count("#deliveries tr[data-status=failed]").await == 1).then_some(())
    })
    .await;
    browser.click("#resend-failed").await;
    browser.wait_for("#no-deliveries", WAIT).await;
    wait_until(
        WAIT,
        "every delivery of the failing hook succeeded",
        || async {
            let left = db.psql(
                "SELECT count(*) FROM walhook.deliveries d JOIN walhook.subscriptions s
                 ON s.id = d.subscription_id
              WHERE s.name = 'failing hook' AND d.status <> 'succeeded'",
            );
            (left.trim() == "0").then_some(())
        },
    )
    .await;

    // the catalogue: what the route makes
    browser.click("nav a[href='#/catalogue']").await;
    browser.wait_text("#catalogue", "item.snapshot", WAIT).await;
    let catalogue = browser.text("#catalogue").await;
    assert!(catalogue.contains("item.created"), "{catalogue}");
    assert!(catalogue.contains("webhook.failing"), "{catalogue}");

    // a backfill of the items to the good webhook, followed to its end
    let good_id = db.psql("SELECT id FROM walhook.subscriptions WHERE name = 'good hook'");
    browser.click("nav a[href='#/backfills']").await;
    browser.wait_for("#backfill-form", WAIT).await;
    browser
        .click(&format!("#bf-webhook option[value='{}']", good_id.trim()))
        .await;
    browser.fill("#bf-table", "items").await;
    browser.click("#bf-start").await;
    let done = browser
        .wait_text("#backfills tr[data-status=done]", "3 rows sent", WAIT)
        .await;
    assert!(
        done.contains("items") && done.contains("good hook"),
        "{done}"
    );
    snap(&browser, "4-backfills").await;
    let snapshots = good
        .received()
        .iter()
        .filter(|r| r.header("webhook-event-type").as_deref() == Some("item.snapshot"))
        .count();
    assert_eq!(snapshots, 3, "every row sent as a snapshot");

    // a narrow window: no sideways scrolling, and the keyboard reaches the links
    browser.resize(400, 800).await;
    for page in ["#/webhooks", "#/deliveries", "#/backfills", "#/health"] {
        browser.goto(&format!("{base}/console{page}")).await;
        browser.wait_for("main h1", WAIT).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(
            browser.execute(OVERFLOWS).await,
            json!(false),
            "{page} at 400 px"
        );
        assert_eq!(browser.execute(UNLABELLED).await, json!([]), "{page}");
        snap(
            &browser,
            &format!("6-narrow{}", page.replace(['#', '/'], "-")),
        )
        .await;
    }

    browser.resize(1280, 900).await;

    // every delivery, across webhooks
    browser.click("nav a[href='#/deliveries']").await;
    browser.wait_for("#deliveries", WAIT).await;
    let count = |sql: &str| db.psql(sql).trim().parse::<usize>().unwrap();
    let all = count("SELECT count(*) FROM walhook.deliveries");
    assert_eq!(browser.count("#deliveries tbody tr").await, all);
    browser.fill("#delivery-type", "item.created").await;
    browser.click("#delivery-filter").await;
    let created = count(
        "SELECT count(*) FROM walhook.deliveries d JOIN walhook.events e ON e.id = d.event_id
          WHERE e.type = 'item.created'",
    );
    assert!(created < all, "{created} of {all}");
    wait_until(WAIT, "the filter", || async {
        (browser.count("#deliveries tbody tr").await == created).then_some(())
    })
    .await;
    assert!(
        browser
            .execute("return location.hash")
            .await
            .as_str()
            .unwrap()
            .contains("eventType=item.created")
    );

    // disable the good webhook from its page
    browser.goto(&format!("{base}/console{good_page}")).await;
    browser.wait_text("#wh-state", "enabled", WAIT).await;
    browser.click("#toggle-disabled").await;
    browser.wait_text("#wh-state", "disabled", WAIT).await;
    assert_eq!(
        db.psql("SELECT disabled FROM walhook.subscriptions WHERE name = 'good hook'")
            .trim(),
        "t"
    );

    // health: the slot streams, the console's changes are in the audit log
    browser.click("nav a[href='#/health']").await;
    browser.wait_text("#slot", "active (streaming)", WAIT).await;
    browser.wait_text("#readiness", "ready", WAIT).await;
    assert!(browser.text("#audit").await.contains("api:console"));
    assert_eq!(browser.count("#keys li").await, 1, "the signing key");
    snap(&browser, "5-health").await;

    // edit the failing webhook (its signatures, filter and rate limit too),
    // then delete it (after confirming)
    browser.goto(&format!("{base}/console{failing_page}")).await;
    browser.click("#edit").await;
    browser.wait_for("#webhook-form", WAIT).await;
    assert_eq!(browser.count("#wh-schemes input:checked").await, 3);
    browser.fill("#wh-timeout", "500").await;
    browser.fill("#wh-headers", "x-tenant: acme").await;
    browser.click("#wh-scheme-rfc9421").await;
    browser.fill("#wh-filter", "$.new.id > 1").await;
    browser.fill("#wh-rate-limit", "20").await;
    browser.fill("#wh-disable-after", "").await;
    browser.click("#wh-save").await;
    browser.wait_text("main dl", "500 ms", WAIT).await;
    assert_eq!(
        db.psql(
            "SELECT timeout_ms, headers::text, signature_schemes, filter, rate_limit,
                    disable_after IS NULL
               FROM walhook.subscriptions WHERE name = 'failing hook'"
        )
        .trim(),
        r#"500|{"x-tenant": "acme"}|{v1,v1a}|($."new"."id" > 1)|20|t"#
    );
    assert_eq!(browser.text("#wh-schemes-shown").await, "v1 v1a");
    // a filter that is no predicate: the form shows the API's refusal, naming the field
    browser.click("#edit").await;
    browser.wait_for("#webhook-form", WAIT).await;
    browser.fill("#wh-filter", "$.new.id").await;
    browser.click("#wh-save").await;
    browser.wait_text("#form-error", "filter", WAIT).await;

    // its endpoint failing (as the delivering instances record it): the
    // webhook's page and the list show it
    db.psql(
        "INSERT INTO walhook.subscription_health
           (subscription_id, state, failing_since, consecutive_failures, last_error, last_failure_at)
         SELECT id, 'failing', now() - interval '5 minutes', 6, 'HTTP 502 from the gateway', now()
           FROM walhook.subscriptions WHERE name = 'failing hook'
         ON CONFLICT (subscription_id) DO UPDATE
            SET state = excluded.state, failing_since = excluded.failing_since,
                consecutive_failures = excluded.consecutive_failures,
                last_error = excluded.last_error, last_failure_at = excluded.last_failure_at",
    );
    browser.goto(&format!("{base}/console{failing_page}")).await;
    browser.wait_text("#wh-health-state", "failing", WAIT).await;
    assert!(
        browser.text("#wh-health-state").await.contains(" since "),
        "the failing period's start"
    );
    assert!(
        browser
            .text("#wh-last-error")
            .await
            .contains("HTTP 502 from the gateway")
    );
    snap(&browser, "7-failing-health").await;
    browser.click("nav a[href='#/webhooks']").await;
    let health_cell = |name: &str| {
        let id = db.psql(&format!(
            "SELECT id FROM walhook.subscriptions WHERE name = '{name}'"
        ));
        format!("#webhooks tr[data-id='{}'] td.health", id.trim())
    };
    browser
        .wait_text(&health_cell("failing hook"), "failing since", WAIT)
        .await;
    assert_eq!(browser.text(&health_cell("good hook")).await, "healthy");
    browser.goto(&format!("{base}/console{failing_page}")).await;
    browser.wait_for("#wh-health-state", WAIT).await;
    browser.click("#delete").await;
    browser.click("#confirm-delete-yes").await;
    browser.wait_text("main h1", "Webhooks", WAIT).await;
    assert_eq!(browser.count("#webhooks tbody tr").await, 1);
    assert_eq!(
        db.psql("SELECT count(*) FROM walhook.subscriptions WHERE name = 'failing hook'")
            .trim(),
        "0"
    );

    // no script error and nothing refused by the Content-Security-Policy
    // (the refused filter's 400 was asked for)
    let severe: Vec<_> = browser
        .console_log()
        .await
        .into_iter()
        .filter(|(level, _)| level == "SEVERE")
        .filter(|(_, text)| !(text.contains("/v1/webhooks/") && text.contains("status of 400")))
        .collect();
    assert!(severe.is_empty(), "browser console: {severe:?}");

    // a wrong token: the API's 401 brings the prompt back, the token forgotten
    browser
        .execute("sessionStorage.setItem('walhook.token', 'whk_not-a-token'); return null")
        .await;
    browser.goto(&format!("{base}/console#/events")).await;
    browser
        .wait_text("#token-error", "invalid or revoked", WAIT)
        .await;
    assert_eq!(
        browser
            .execute("return sessionStorage.getItem('walhook.token')")
            .await,
        Value::Null
    );
    assert!(browser.text("#token-form").await.contains("Bearer token"));
}

/// The ids of the page's controls without a label.
const UNLABELLED: &str = "return [...document.querySelectorAll('input, select, textarea')]
    .filter((e) => e.labels.length === 0 && !e.getAttribute('aria-label'))
    .map((e) => e.id || e.outerHTML)";

/// Whether the page is wider than the window (a sideways scroll).
const OVERFLOWS: &str =
    "return document.documentElement.scrollWidth > document.documentElement.clientWidth";

/// A screenshot of the page as it is now, under target/console-screenshots/.
async fn snap(browser: &Browser, name: &str) {
    browser.screenshot(&screenshot_path(name)).await;
}

/// Fill the new-webhook form and submit it; the secret shown.
async fn create_in_console(browser: &Browser, name: &str, url: &str, retry: &str) -> String {
    let on_form = browser.count("#webhook-form").await == 1;
    if !on_form {
        browser.click("#new-webhook").await;
    }
    browser.wait_for("#webhook-form", WAIT).await;
    let unlabelled = browser.execute(UNLABELLED).await;
    assert_eq!(unlabelled, json!([]), "every control has a label");
    browser.fill("#wh-url", url).await;
    if name == "good hook" {
        // the pattern from the catalogue's picker
        browser.fill("#wh-events", "").await;
        browser.click("#wh-event-pick option[value='item.*']").await;
        browser.click("#wh-event-add").await;
    } else {
        browser.fill("#wh-events", "item.*").await;
    }
    browser.fill("#wh-name", name).await;
    browser.fill("#wh-retry", retry).await;
    browser.click("#wh-save").await;
    let secret = browser.wait_text("#secret", "whsec_", WAIT).await;
    assert!(browser.count("#copy-secret").await == 1);
    secret
}
