//! The `/v1` API's refusals against a real PostgreSQL: 401 without a live
//! token, and 400s naming the parameter (and echoing the value given) for bad
//! bodies, ids, query parameters and every URL rule the database enforces.

use crate::support::Cluster;
use crate::support::api::ApiServer;
use reqwest::Method;
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread")]
async fn no_token_or_a_wrong_one_is_a_401_and_openapi_needs_none() {
    let db = Cluster::shared().database();
    let api = ApiServer::start(&db).await;
    for path in [
        "/v1/webhooks",
        "/v1/audit",
        "/v1/events/00000000-0000-4000-8000-000000000000",
    ] {
        for token in [None, Some("whk_wrong"), Some("")] {
            let reply = api.call_as(token, Method::GET, path, None).await;
            reply.assert_error(401, "Authorization");
        }
    }
    let post = api
        .call_as(
            None,
            Method::POST,
            "/v1/webhooks",
            Some(json!({"url": "https://a.example/", "events": ["*"]})),
        )
        .await;
    assert_eq!(post.status, 401);
    assert_eq!(
        db.psql("SELECT count(*) FROM walhook.subscriptions"),
        "0",
        "a refused request writes nothing"
    );
    let doc = api
        .call_as(None, Method::GET, "/v1/openapi.json", None)
        .await;
    assert_eq!(doc.status, 200);
    assert!(doc.body["openapi"].as_str().unwrap().starts_with("3.1"));
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_input_is_a_400_naming_the_parameter() {
    let db = Cluster::shared().database();
    let api = ApiServer::start(&db).await;
    let ok = json!({"url": "https://receiver.example/hooks", "events": ["*"]});
    let with = |key: &str, value: Value| {
        let mut body = ok.clone();
        body[key] = value;
        body
    };
    let cases: Vec<(Value, &str)> = vec![
        (json!({"events": ["*"]}), "url"),
        (json!({"url": "https://receiver.example/hooks"}), "events"),
        (with("colour", json!("red")), "colour"),
        (with("secret", json!("whsec_x")), "secret"),
        (with("url", json!(5)), "url"),
        (with("url", Value::Null), "url"),
        (with("events", json!("user.*")), "events"),
        (with("events", json!([])), "events"),
        (with("events", json!(["bad pattern!"])), "events"),
        (with("disabled", json!("yes")), "disabled"),
        (with("headers", json!({"x": 1})), "headers"),
        (with("headers", json!({"Authorization": "x"})), "headers"),
        (with("queryParams", json!(["a"])), "queryParams"),
        (with("auth", json!({"type": "bearer"})), "auth"),
        (with("auth", json!({"type": "magic"})), "auth"),
        (with("auth", json!({"type": "none", "token": "t"})), "auth"),
        (with("envelope", json!("soap")), "envelope"),
        (with("retrySchedule", json!(["soon"])), "retrySchedule"),
        (with("retrySchedule", json!(["-5s"])), "retrySchedule"),
        (with("timeoutMs", json!(0)), "timeoutMs"),
        (with("timeoutMs", json!(1e12)), "timeoutMs"),
        (with("maxInFlight", json!(100_000)), "maxInFlight"),
        // subscriber control: constraint names, COLUMN fields, values that do not parse
        (with("signatureSchemes", json!(["v2"])), "signatureSchemes"),
        (with("signatureSchemes", json!([])), "signatureSchemes"),
        (with("signatureSchemes", json!("v1")), "signatureSchemes"),
        (with("signatureSchemes", Value::Null), "signatureSchemes"),
        (with("filter", json!("$.new.status ==")), "filter"),
        (with("filter", json!("lax strict $")), "filter"),
        (with("filter", json!("$ like_regex \"(\"")), "filter"),
        (with("filter", json!("$.new.status")), "filter"),
        (with("filter", json!(true)), "filter"),
        (with("rateLimit", json!(0)), "rateLimit"),
        (with("rateLimit", json!(-1)), "rateLimit"),
        (with("rateLimit", json!(1e6)), "rateLimit"),
        (with("rateLimit", json!("fast")), "rateLimit"),
        (with("failureThreshold", json!(0)), "failureThreshold"),
        (with("failureThreshold", Value::Null), "failureThreshold"),
        (
            with("failureRateThreshold", json!(1.5)),
            "failureRateThreshold",
        ),
        (
            with("failureRateThreshold", json!(0)),
            "failureRateThreshold",
        ),
        (with("failureWindow", json!("soon")), "failureWindow"),
        (with("failureWindow", json!("2 days")), "failureWindow"),
        (
            with("failureWindowMinAttempts", json!(0)),
            "failureWindowMinAttempts",
        ),
        (with("probeInterval", json!("1ms")), "probeInterval"),
        (with("probeInterval", json!(30)), "probeInterval"),
        (with("disableAfter", json!("2 years")), "disableAfter"),
        (with("disableAfter", json!("never")), "disableAfter"),
        (
            with("disabledAt", json!("2026-01-01T00:00:00Z")),
            "disabledAt",
        ),
        (with("health", json!({})), "health"),
    ];
    for (body, param) in cases {
        let reply = api.post("/v1/webhooks", body.clone()).await;
        reply.assert_error(400, param);
        let detail = &reply.body["details"][0];
        assert_eq!(detail["location"], "body", "{body}");
        if param != "auth" {
            assert_eq!(detail["value"], body[param], "the value given: {body}");
        }
    }
    // credentials given are not echoed in errors
    let reply = api
        .post(
            "/v1/webhooks",
            with("auth", json!({"type": "basic", "password": "hunter2-x"})),
        )
        .await;
    reply.assert_error(400, "auth");
    assert!(!reply.body.to_string().contains("hunter2-x"));
    // not JSON, not an object
    let raw = reqwest::Client::new()
        .post(format!("{}/v1/webhooks", api.base))
        .bearer_auth(&api.token)
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(raw.status(), 400);
    api.post("/v1/webhooks", json!([1]))
        .await
        .assert_error(400, "body");

    let id = api.post("/v1/webhooks", ok.clone()).await.body["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let path = format!("/v1/webhooks/{id}");
    api.put(&path, json!({"url": "ftp://x.example/"}))
        .await
        .assert_error(400, "url");
    api.put(&path, json!({"id": id}))
        .await
        .assert_error(400, "id");
    api.put(&path, json!({"events": null}))
        .await
        .assert_error(400, "events");
    assert_eq!(
        api.get(&path).await.body["events"],
        json!(["*"]),
        "a refused update changes nothing"
    );

    for malformed in [
        "/v1/webhooks/not-a-uuid",
        "/v1/webhooks/123/deliveries",
        "/v1/events/xyz",
    ] {
        let reply = api.get(malformed).await;
        reply.assert_error(400, "id");
        assert_eq!(reply.body["details"][0]["location"], "path");
    }
    api.put("/v1/webhooks/nope", json!({}))
        .await
        .assert_error(400, "id");
    api.delete("/v1/webhooks/nope")
        .await
        .assert_error(400, "id");
    for bad in ["abc", "0", "-1"] {
        api.call(
            Method::POST,
            &format!("/v1/deliveries/{bad}/redeliver"),
            None,
        )
        .await
        .assert_error(400, "id");
    }
    for (query, param) in [
        ("limit=0", "limit"),
        ("limit=101", "limit"),
        ("limit=ten", "limit"),
        ("cursor=garbage", "cursor"),
        ("cursor=ZDox", "cursor"), // a deliveries cursor ("d:1") on the webhooks list
        ("colour=red", "colour"),
        ("limit=1&limit=2", "limit"),
    ] {
        let reply = api.get(&format!("/v1/webhooks?{query}")).await;
        reply.assert_error(400, param);
        assert_eq!(reply.body["details"][0]["location"], "query");
    }
    api.get(&format!("{path}/deliveries?status=lost"))
        .await
        .assert_error(400, "status");
    api.get("/v1/audit?cursor=%%%")
        .await
        .assert_error(400, "cursor");
}

#[tokio::test(flavor = "multi_thread")]
async fn every_url_rule_is_a_400_naming_url_and_the_rule() {
    let db = Cluster::shared().database();
    let api = ApiServer::start(&db).await;
    let long = format!("https://receiver.example/{}", "a".repeat(2048));
    let cases = [
        (long.as_str(), "length"),
        ("receiver.example/hooks", "absolute"),
        ("ftp://receiver.example/hooks", "scheme"),
        ("http://receiver.example/hooks", "scheme"),
        ("https://user:pw@receiver.example/hooks", "user-info"),
        ("https://receiver.example/hooks?a=1", "query"),
        ("https://receiver.example/hooks#frag", "fragment"),
        ("https:///hooks", "host"),
        // a non-ASCII host is stored in IDNA form; only what IDNA refuses is a 400
        ("https://b\u{e000}cher.example/hooks", "host"),
        ("https://10.0.0.1/hooks", "ip-literal"),
        ("https://[::1]/hooks", "ip-literal"),
        ("https://localhost/hooks", "private"),
        ("https://db.internal/hooks", "private"),
    ];
    for (url, rule) in cases {
        let reply = api
            .post("/v1/webhooks", json!({"url": url, "events": ["*"]}))
            .await;
        reply.assert_error(400, "url");
        let detail = &reply.body["details"][0];
        assert_eq!(detail["value"], url);
        let msg = detail["msg"].as_str().unwrap();
        assert!(msg.contains(&format!("url rule {rule}")), "{url}: {msg}");
    }
    assert_eq!(db.psql("SELECT count(*) FROM walhook.subscriptions"), "0");
    // the same URLs are accepted once the database allows insecure targets
    db.psql("INSERT INTO walhook.settings VALUES ('allow_insecure_targets', 'true')");
    for url in ["http://127.0.0.1:9/hooks", "https://localhost/hooks"] {
        let reply = api
            .post("/v1/webhooks", json!({"url": url, "events": ["*"]}))
            .await;
        assert_eq!(reply.status, 201, "{}", reply.body);
    }
}

/// Each rule of walhook's checks names its column in the error's fields
/// (`RAISE ... USING COLUMN`), as PostgreSQL's own errors do: a client never
/// parses the message to learn which value was refused.
#[tokio::test(flavor = "multi_thread")]
async fn every_rule_of_the_database_names_its_column() {
    let db = Cluster::shared().database();
    crate::support::items_table(&db, "");
    let webhook = crate::support::subscribe(&db, "https://r.example/h", "", "");
    let webhook = webhook.trim();
    let subscription = |column: &str, value: &str| {
        format!(
            "INSERT INTO walhook.subscriptions (url{column}) VALUES ('https://r.example/h'{value})"
        )
    };
    let cases = [
        (subscription("", "").replace("https:", "ftp:"), "url"),
        (
            subscription("", "").replace("r.example", "a\u{E000}.example"),
            "url",
        ),
        (subscription(", events", ", '{}'"), "events"),
        (subscription(", events", ", '{\"a b\"}'"), "events"),
        (
            subscription(", headers", r#", '{"webhook-id": "x"}'"#),
            "headers",
        ),
        (subscription(", query_params", ", '[]'"), "query_params"),
        (subscription(", auth_type", ", 'bearer'"), "auth_type"),
        (subscription(", secret", ", 'whsec_!'"), "secret"),
        (
            "INSERT INTO walhook.backfills (subscription_id, source_table)
             VALUES (gen_random_uuid(), 'items')"
                .to_owned(),
            "subscription_id",
        ),
        (
            format!(
                "INSERT INTO walhook.backfills (subscription_id, source_table)
                 VALUES ('{webhook}', 'walhook.settings')"
            ),
            "source_table",
        ),
        (
            format!(
                "INSERT INTO walhook.backfills (subscription_id, source_table, where_clause)
                 VALUES ('{webhook}', 'items', 'id = 1; SELECT 1')"
            ),
            "where_clause",
        ),
    ];
    let client = db.client().await;
    for (sql, column) in cases {
        let error = client.execute(sql.as_str(), &[]).await.unwrap_err();
        let refusal = error
            .as_db_error()
            .unwrap_or_else(|| panic!("{sql}: {error}"));
        assert_eq!(
            refusal.column(),
            Some(column),
            "{sql}: {}",
            refusal.message()
        );
    }
}
