//! The `/v1` management API against a real PostgreSQL: webhooks CRUD and 404s,
//! pagination, API and SQL seeing each other, the OpenAPI document checked by
//! an independent validator, and the daemon serving it all (deliveries,
//! events, redelivery). Refusals (401, 400) are in `api_errors.rs`.

use std::time::Duration;

use crate::support::api::{ApiServer, create_token};
use crate::support::{Cluster, Receiver, migrate, wait_until, walhook_run};
use reqwest::Method;
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(120);

const DEFAULT_SCHEDULE: [&str; 7] = ["5s", "5min", "30min", "2h", "5h", "10h", "10h"];

#[tokio::test(flavor = "multi_thread")]
async fn a_webhook_is_created_read_updated_and_deleted() {
    let db = Cluster::shared().database();
    let api = ApiServer::start(&db).await;

    let created = api
        .create_webhook(json!({"url": "https://receiver.example/hooks", "events": ["user.*"]}))
        .await;
    let w = &created;
    let id = w["id"].as_str().unwrap().to_owned();
    assert_eq!(w["url"], "https://receiver.example/hooks");
    assert_eq!(w["events"], json!(["user.*"]));
    assert_eq!(w["disabled"], false);
    assert_eq!(w["name"], Value::Null);
    assert_eq!(w["description"], Value::Null);
    assert_eq!(w["headers"], json!({}));
    assert_eq!(w["queryParams"], json!({}));
    assert_eq!(w["auth"], json!({"type": "none"}));
    assert_eq!(w["ordered"], false);
    assert_eq!(w["envelope"], "none");
    assert_eq!(w["retrySchedule"], json!(DEFAULT_SCHEDULE));
    assert_eq!(w["timeoutMs"], 3000);
    assert_eq!(w["maxInFlight"], 32);
    assert!(w["createdAt"].is_string() && w["updatedAt"].is_string());
    assert!(w["secret"].as_str().unwrap().starts_with("whsec_"));

    let read = api.get(&format!("/v1/webhooks/{id}")).await;
    assert_eq!(read.status, 200);
    assert_eq!(read.body["id"], id.as_str());
    assert!(read.body.get("secret").is_none(), "secret only on create");

    let updated = api
        .put(
            &format!("/v1/webhooks/{id}"),
            json!({"events": ["user.created", "role.*"], "url": "https://other.example/in",
                   "disabled": true, "name": "crm", "retrySchedule": ["250ms", "1 minute", "1 day"],
                   "auth": {"type": "basic", "username": "u", "password": "pw-never-returned"}}),
        )
        .await;
    assert_eq!(updated.status, 200, "{}", updated.body);
    assert_eq!(updated.body["events"], json!(["user.created", "role.*"]));
    assert_eq!(updated.body["url"], "https://other.example/in");
    assert_eq!(updated.body["disabled"], true);
    assert_eq!(updated.body["name"], "crm");
    assert_eq!(
        updated.body["retrySchedule"],
        json!(["250ms", "1min", "1d"])
    );
    let again = api
        .put(
            &format!("/v1/webhooks/{id}"),
            json!({"retrySchedule": updated.body["retrySchedule"]}),
        )
        .await;
    assert_eq!(
        again.body["retrySchedule"], updated.body["retrySchedule"],
        "what is read can be written back: {}",
        again.body
    );
    assert_eq!(updated.body["auth"], json!({"type": "basic"}));
    assert_eq!(updated.body["timeoutMs"], 3000, "fields not given stay");
    assert!(!updated.body.to_string().contains("pw-never-returned"));
    assert!(updated.body.get("secret").is_none());
    let cleared = api
        .put(&format!("/v1/webhooks/{id}"), json!({"name": null}))
        .await;
    assert_eq!(cleared.body["name"], Value::Null);

    let full = api
        .create_webhook(
            json!({"url": "https://receiver.example/all", "events": ["*"], "disabled": true,
                   "name": "n", "description": "d", "headers": {"x-tenant": "t1"},
                   "queryParams": {"k": "v"}, "auth": {"type": "bearer", "token": "tok-never-returned"},
                   "ordered": true, "envelope": "standard", "retrySchedule": ["1s", "2s"],
                   "timeoutMs": 500, "maxInFlight": 2}),
        )
        .await;
    for (key, value) in [
        ("disabled", json!(true)),
        ("name", json!("n")),
        ("description", json!("d")),
        ("headers", json!({"x-tenant": "t1"})),
        ("queryParams", json!({"k": "v"})),
        ("auth", json!({"type": "bearer"})),
        ("ordered", json!(true)),
        ("envelope", json!("standard")),
        ("retrySchedule", json!(["1s", "2s"])),
        ("timeoutMs", json!(500)),
        ("maxInFlight", json!(2)),
    ] {
        assert_eq!(full[key], value, "{key}");
    }
    assert!(!full.to_string().contains("tok-never-returned"));

    assert_eq!(api.delete(&format!("/v1/webhooks/{id}")).await.status, 204);
    api.get(&format!("/v1/webhooks/{id}"))
        .await
        .assert_error(404, "id");
    api.delete(&format!("/v1/webhooks/{id}"))
        .await
        .assert_error(404, "id");
    api.put(&format!("/v1/webhooks/{id}"), json!({"disabled": false}))
        .await
        .assert_error(404, "id");
    let unknown = "/v1/webhooks/00000000-0000-4000-8000-000000000000/deliveries";
    api.get(unknown).await.assert_error(404, "id");
    api.get("/v1/events/00000000-0000-4000-8000-000000000000")
        .await
        .assert_error(404, "id");
    api.call(Method::POST, "/v1/deliveries/999999/redeliver", None)
        .await
        .assert_error(404, "id");
}

#[tokio::test(flavor = "multi_thread")]
async fn pagination_walks_every_row_once() {
    let db = Cluster::shared().database();
    let api = ApiServer::start(&db).await;
    // half through SQL (same transaction: equal created_at), half through the API
    db.psql(
        "INSERT INTO walhook.subscriptions (name, url)
         SELECT 'sql' || n, 'https://r.example/' || n FROM generate_series(1, 3) n",
    );
    for n in 0..3 {
        api.create_webhook(json!({"url": format!("https://r.example/api{n}"), "events": ["*"]}))
            .await;
    }
    // 6 rows, pages of 3: the second page ends at the last row, no nextCursor
    let first = api.get("/v1/webhooks?limit=3").await;
    let cursor = first.body["nextCursor"].as_str().unwrap().to_owned();
    let second = api
        .get(&format!("/v1/webhooks?limit=3&cursor={cursor}"))
        .await;
    assert_eq!(second.body["data"].as_array().unwrap().len(), 3);
    assert!(second.body["nextCursor"].is_null(), "{}", second.body);
    let (all, pages) = api.all_pages("/v1/webhooks", 6).await;
    assert_eq!((all.len(), pages), (6, 1));

    api.create_webhook(json!({"url": "https://r.example/last", "events": ["*"]}))
        .await;
    let (all, pages) = api.all_pages("/v1/webhooks", 3).await;
    assert_eq!(pages, 3);
    let mut ids: Vec<&str> = all.iter().map(|w| w["id"].as_str().unwrap()).collect();
    let listed = ids.len();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), listed, "no row twice");
    let in_sql =
        db.psql("SELECT string_agg(id::text, ',' ORDER BY id::text) FROM walhook.subscriptions");
    assert_eq!(ids.join(","), in_sql, "no row missing");
    assert_eq!(
        api.get("/v1/webhooks").await.body["data"]
            .as_array()
            .unwrap()
            .len(),
        7
    );

    // the audit log pages the same way (7 inserts + settings-free database)
    let (entries, pages) = api.all_pages("/v1/audit", 3).await;
    let total: usize = db
        .psql("SELECT count(*) FROM walhook.audit_log")
        .parse()
        .unwrap();
    assert_eq!(entries.len(), total);
    assert_eq!(pages, total.div_ceil(3));
    let mut audit_ids: Vec<i64> = entries.iter().map(|e| e["id"].as_i64().unwrap()).collect();
    assert!(audit_ids.windows(2).all(|w| w[0] > w[1]), "newest first");
    audit_ids.dedup();
    assert_eq!(audit_ids.len(), total);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_api_and_sql_see_each_others_changes() {
    let db = Cluster::shared().database();
    let api = ApiServer::start(&db).await;
    let from_sql = db.psql(
        "INSERT INTO walhook.subscriptions (name, url, events, timeout_ms, retry_schedule)
         VALUES ('from-sql', 'https://sql.example/h', '{a.*}', 1234, '{1s,1h}') RETURNING id",
    );
    let read = api.get(&format!("/v1/webhooks/{from_sql}")).await;
    assert_eq!(read.status, 200);
    assert_eq!(read.body["name"], "from-sql");
    assert_eq!(read.body["events"], json!(["a.*"]));
    assert_eq!(read.body["timeoutMs"], 1234);
    assert_eq!(read.body["retrySchedule"], json!(["1s", "1h"]));

    api.put(
        &format!("/v1/webhooks/{from_sql}"),
        json!({"disabled": true, "queryParams": {"tenant": "7"}}),
    )
    .await;
    assert_eq!(
        db.psql(&format!(
            "SELECT disabled, query_params->>'tenant' FROM walhook.subscriptions WHERE id = '{from_sql}'"
        )),
        "t|7"
    );

    let created = api
        .create_webhook(
            json!({"url": "https://api.example/h", "events": ["b.created"], "name": "from-api",
                   "auth": {"type": "bearer", "token": "tkn"}, "maxInFlight": 3}),
        )
        .await;
    let id = created["id"].as_str().unwrap();
    assert_eq!(
        db.psql(&format!(
            "SELECT name, url, events, auth_type, auth_token, max_in_flight, secret = '{}'
               FROM walhook.subscriptions WHERE id = '{id}'",
            created["secret"].as_str().unwrap()
        )),
        "from-api|https://api.example/h|{b.created}|bearer|tkn|3|t"
    );
    db.psql(&format!(
        "UPDATE walhook.subscriptions SET events = '{{c.*}}', description = 'via sql' WHERE id = '{id}'"
    ));
    let read = api.get(&format!("/v1/webhooks/{id}")).await;
    assert_eq!(read.body["events"], json!(["c.*"]));
    assert_eq!(read.body["description"], "via sql");
    api.delete(&format!("/v1/webhooks/{id}")).await;
    assert_eq!(
        db.psql(&format!(
            "SELECT count(*) FROM walhook.subscriptions WHERE id = '{id}'"
        )),
        "0"
    );
    db.psql(&format!(
        "DELETE FROM walhook.subscriptions WHERE id = '{from_sql}'"
    ));
    api.get(&format!("/v1/webhooks/{from_sql}"))
        .await
        .assert_error(404, "id");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_openapi_document_validates_and_covers_every_route() {
    let db = Cluster::shared().database();
    let api = ApiServer::start(&db).await;
    let doc = api
        .call_as(None, Method::GET, "/v1/openapi.json", None)
        .await
        .body;
    for (path, methods) in [
        ("/v1/webhooks", &["get", "post"][..]),
        ("/v1/webhooks/{id}", &["get", "put", "delete"][..]),
        ("/v1/webhooks/{id}/deliveries", &["get"][..]),
        ("/v1/events/{id}", &["get"][..]),
        ("/v1/deliveries/{id}/redeliver", &["post"][..]),
        ("/v1/audit", &["get"][..]),
    ] {
        for method in methods {
            assert!(
                doc["paths"][path][method].is_object(),
                "{method} {path} missing"
            );
        }
    }
    let webhook = &doc["components"]["schemas"]["Webhook"]["properties"];
    for field in [
        "id",
        "url",
        "events",
        "disabled",
        "auth",
        "retrySchedule",
        "timeoutMs",
        "maxInFlight",
    ] {
        assert!(webhook[field].is_object(), "Webhook.{field} missing");
    }
    crate::support::python::verify("validate_openapi.py", &doc)
        .expect("a valid OpenAPI 3.1 document");
    let mut broken = doc.clone();
    broken["paths"]["/v1/audit"]["get"]["responses"] = json!("none");
    assert!(
        crate::support::python::verify("validate_openapi.py", &broken).is_err(),
        "the validator rejects a broken document"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_daemon_serves_the_api_beside_its_open_endpoints() {
    let db = Cluster::shared().database();
    let receiver = Receiver::start().await;
    migrate(&db.url());
    db.psql(&format!(
        "INSERT INTO walhook.settings VALUES ('allow_insecure_targets', 'true');
         CREATE TABLE items (id int PRIMARY KEY, label text);
         INSERT INTO walhook.routes (source_table, resource, apiresource) VALUES ('items', 'item', '/items/{{id}}');
         INSERT INTO walhook.subscriptions (name, url, events) VALUES ('watcher', '{}', '{{webhook.*}}');",
        receiver.url()
    ));
    let token = create_token(&db.url(), "ops");
    let daemon = walhook_run(&db.url(), &db.slot, &db.publication, &[]);
    daemon.wait_for_log("streaming", Duration::from_secs(60));
    let base = format!("http://{}", daemon.http_addr.as_ref().unwrap());
    let api = ApiServer::connect(base.clone(), token);

    for path in [
        "/metrics",
        "/healthz",
        "/.well-known/jwks.json",
        "/v1/openapi.json",
    ] {
        let status = reqwest::get(format!("{base}{path}"))
            .await
            .unwrap()
            .status();
        assert_eq!(status, 200, "{path} needs no token");
    }
    wait_until(WAIT, "readyz", || async {
        let r = reqwest::get(format!("{base}/readyz")).await.ok()?;
        (r.status() == 200).then_some(())
    })
    .await;
    api.call_as(None, Method::GET, "/v1/webhooks", None)
        .await
        .assert_error(401, "Authorization");

    let created = api
        .create_webhook(
            json!({"url": receiver.url(), "events": ["item.*"], "name": "api-hook",
                   "retrySchedule": ["10ms"]}),
        )
        .await;
    let id = created["id"].as_str().unwrap().to_owned();
    let secret = created["secret"].as_str().unwrap().to_owned();

    // the API's webhook is a subscription: its creation is a webhook.created event
    let announced = wait_until(WAIT, "webhook.created", || async {
        receiver
            .received()
            .into_iter()
            .find(|r| r.header("webhook-event-type").as_deref() == Some("webhook.created"))
    })
    .await;
    let body = String::from_utf8_lossy(&announced.body).into_owned();
    assert!(
        body.contains("api-hook") && !body.contains(&secret),
        "{body}"
    );

    db.psql("INSERT INTO items VALUES (1, 'one')");
    let deliveries_path = format!("/v1/webhooks/{id}/deliveries");
    let delivery = wait_until(WAIT, "a succeeded delivery", || async {
        let page = api.get(&deliveries_path).await;
        let first = page.body["data"].get(0)?.clone();
        (first["status"] == "succeeded").then_some(first)
    })
    .await;
    assert_eq!(delivery["eventType"], "item.created");
    assert_eq!(delivery["attempts"], 1);
    assert_eq!(delivery["lastStatusCode"], 204);
    assert_eq!(delivery["lastError"], Value::Null);
    assert_eq!(delivery["nextAttemptAt"], Value::Null);
    assert!(delivery["lastAttemptAt"].is_string() && delivery["createdAt"].is_string());
    let keys: Vec<&String> = delivery.as_object().unwrap().keys().collect();
    assert_eq!(
        keys,
        [
            "id",
            "eventId",
            "eventType",
            "status",
            "attempts",
            "lastStatusCode",
            "lastError",
            "lastAttemptAt",
            "nextAttemptAt",
            "createdAt"
        ]
    );

    let event_id = delivery["eventId"].as_str().unwrap();
    let event = api.get(&format!("/v1/events/{event_id}")).await;
    assert_eq!(event.status, 200);
    let keys: Vec<&String> = event.body.as_object().unwrap().keys().collect();
    assert_eq!(
        keys,
        [
            "id",
            "type",
            "apiresource",
            "revision",
            "commitTime",
            "body"
        ]
    );
    assert_eq!(event.body["type"], "item.created");
    assert_eq!(event.body["apiresource"], "/items/1");
    assert!(event.body["revision"].is_i64());
    assert_eq!(event.body["body"]["apiresource"], "/items/1");
    assert_eq!(event.body["body"]["resourcepayload"]["label"], "one");

    let delivery_id = delivery["id"].as_i64().unwrap();
    let redelivered = api
        .call(
            Method::POST,
            &format!("/v1/deliveries/{delivery_id}/redeliver"),
            None,
        )
        .await;
    assert_eq!(redelivered.status, 202, "{}", redelivered.body);
    assert_eq!(redelivered.body["id"], delivery_id);
    wait_until(WAIT, "the redelivery", || async {
        let page = api.get(&deliveries_path).await;
        let first = page.body["data"].get(0)?.clone();
        (first["attempts"] == 2 && first["status"] == "succeeded").then_some(())
    })
    .await;
    let sent: Vec<_> = receiver
        .received()
        .into_iter()
        .filter(|r| r.header("webhook-id").as_deref() == Some(event_id))
        .collect();
    assert_eq!(sent.len(), 2, "the same event id, sent again");
    let failed = api.get(&format!("{deliveries_path}?status=failed")).await;
    assert_eq!(failed.body["data"], json!([]));
    assert!(failed.body["nextCursor"].is_null());
}
