//! Subscriber control through the `/v1` API against a real PostgreSQL: the
//! webhook's signature schemes, filter, rate limit, failure thresholds, probe
//! interval and disable_after written and read back, its health (from
//! `walhook.subscription_health`) and disabled reason shown, enabling clearing
//! the reason, and values that do not parse refused naming their field (the
//! other refusals are in `api_errors.rs`).

use crate::support::Cluster;
use crate::support::api::ApiServer;
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread")]
async fn subscriber_control_fields_are_written_and_read_back() {
    let db = Cluster::shared().database();
    let api = ApiServer::start(&db).await;
    let created = api
        .create_webhook(json!({"url": "https://receiver.example/hooks", "events": ["*"]}))
        .await;
    let w = &created;
    for (key, value) in [
        ("signatureSchemes", json!(["v1", "v1a", "rfc9421"])),
        ("filter", Value::Null),
        ("rateLimit", Value::Null),
        ("failureThreshold", json!(5)),
        ("failureRateThreshold", json!(0.5)),
        ("failureWindow", json!("5min")),
        ("failureWindowMinAttempts", json!(10)),
        ("probeInterval", json!("30s")),
        ("disableAfter", json!("5d")),
        ("disabledReason", Value::Null),
        ("disabledAt", Value::Null),
    ] {
        assert_eq!(w[key], value, "default {key}: {w}");
    }
    assert_eq!(
        w["health"],
        json!({"state": "healthy", "failingSince": null, "consecutiveFailures": 0,
               "lastError": null, "lastFailureAt": null, "lastSuccessAt": null,
               "nextProbeAt": null}),
        "no health row: healthy"
    );
    let path = format!("/v1/webhooks/{}", w["id"].as_str().unwrap());

    let set = json!({"signatureSchemes": ["v1a"], "filter": "$.new.status == \"active\"",
                     "rateLimit": 2.5, "failureThreshold": 3, "failureRateThreshold": 0.25,
                     "failureWindow": "10 minutes", "failureWindowMinAttempts": 4,
                     "probeInterval": "250ms", "disableAfter": "2 days"});
    let updated = api.put(&path, set).await;
    assert_eq!(updated.status, 200, "{}", updated.body);
    let expected = json!({"signatureSchemes": ["v1a"], "filter": "($.\"new\".\"status\" == \"active\")",
                          "rateLimit": 2.5, "failureThreshold": 3, "failureRateThreshold": 0.25,
                          "failureWindow": "10min", "failureWindowMinAttempts": 4,
                          "probeInterval": "250ms", "disableAfter": "2d"});
    for (key, value) in expected.as_object().unwrap() {
        assert_eq!(&updated.body[key], value, "{key}: {}", updated.body);
    }
    assert_eq!(
        db.psql(&format!(
            "SELECT signature_schemes, rate_limit, failure_window, probe_interval, disable_after
               FROM walhook.subscriptions WHERE id = '{}'",
            w["id"].as_str().unwrap()
        ))
        .trim(),
        "{v1a}|2.5|00:10:00|00:00:00.25|2 days",
        "the columns SQL sees"
    );
    // what is read can be written back, unchanged
    let again = api.put(&path, expected.clone()).await;
    for (key, value) in expected.as_object().unwrap() {
        assert_eq!(
            &again.body[key], value,
            "{key} written back: {}",
            again.body
        );
    }
    let cleared = api
        .put(
            &path,
            json!({"filter": null, "rateLimit": null, "disableAfter": null}),
        )
        .await;
    assert_eq!(cleared.status, 200, "{}", cleared.body);
    for key in ["filter", "rateLimit", "disableAfter"] {
        assert_eq!(cleared.body[key], Value::Null, "{key} cleared");
    }

    let full = api
        .create_webhook(
            json!({"url": "https://receiver.example/all", "events": ["*"],
                   "signatureSchemes": ["v1", "rfc9421"], "filter": "$.type starts with \"user.\"",
                   "rateLimit": 100, "failureThreshold": 1, "failureRateThreshold": 1,
                   "failureWindow": "1s", "failureWindowMinAttempts": 1000000,
                   "probeInterval": "1h", "disableAfter": null}),
        )
        .await;
    assert_eq!(full["signatureSchemes"], json!(["v1", "rfc9421"]));
    assert_eq!(full["rateLimit"], json!(100.0));
    assert_eq!(full["probeInterval"], "1h");
    assert_eq!(full["disableAfter"], Value::Null);
}

#[tokio::test(flavor = "multi_thread")]
async fn health_and_the_disabled_reason_are_shown_and_enabling_clears_the_reason() {
    let db = Cluster::shared().database();
    let api = ApiServer::start(&db).await;
    let id = api
        .create_webhook_id(json!({"url": "https://receiver.example/hooks", "events": ["*"]}))
        .await;
    let path = format!("/v1/webhooks/{id}");
    db.psql(&format!(
        "INSERT INTO walhook.subscription_health
           (subscription_id, state, failing_since, consecutive_failures, last_error,
            last_failure_at, last_success_at, next_probe_at)
         VALUES ('{id}', 'failing', '2026-01-02 03:04:05.678+00', 7, 'HTTP 503',
                 '2026-01-02 04:00:00+00', '2026-01-01 00:00:00+00', '2026-01-02 04:00:30+00')"
    ));
    let health = json!({"state": "failing", "failingSince": "2026-01-02T03:04:05.678Z",
                        "consecutiveFailures": 7, "lastError": "HTTP 503",
                        "lastFailureAt": "2026-01-02T04:00:00Z",
                        "lastSuccessAt": "2026-01-01T00:00:00Z",
                        "nextProbeAt": "2026-01-02T04:00:30Z"});
    assert_eq!(api.get(&path).await.body["health"], health);
    let listed = api.get("/v1/webhooks").await;
    assert_eq!(listed.body["data"][0]["health"], health, "in the list too");

    db.psql(&format!(
        "UPDATE walhook.subscription_health SET state = 'disabled' WHERE subscription_id = '{id}';
         UPDATE walhook.subscriptions
            SET disabled = true, disabled_reason = 'failing since 2026-01-02T03:04:05Z: HTTP 503',
                disabled_at = '2026-01-07 03:04:05+00'
          WHERE id = '{id}'"
    ));
    let disabled = api.get(&path).await.body;
    assert_eq!(disabled["disabled"], true);
    assert_eq!(
        disabled["disabledReason"],
        "failing since 2026-01-02T03:04:05Z: HTTP 503"
    );
    assert_eq!(disabled["disabledAt"], "2026-01-07T03:04:05Z");
    assert_eq!(disabled["health"]["state"], "disabled");
    api.put(&path, json!({"disabledReason": null}))
        .await
        .assert_error(400, "disabledReason");
    api.put(&path, json!({"health": {"state": "healthy"}}))
        .await
        .assert_error(400, "health");

    let enabled = api.put(&path, json!({"disabled": false})).await;
    assert_eq!(enabled.status, 200, "{}", enabled.body);
    assert_eq!(enabled.body["disabled"], false);
    assert_eq!(enabled.body["disabledReason"], Value::Null);
    assert_eq!(enabled.body["disabledAt"], Value::Null);
    assert_eq!(
        db.psql(&format!(
            "SELECT disabled_reason IS NULL AND disabled_at IS NULL
               FROM walhook.subscriptions WHERE id = '{id}'"
        ))
        .trim(),
        "t",
        "cleared in the row, as for SQL users"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn values_that_do_not_parse_are_a_400_naming_their_field() {
    let db = Cluster::shared().database();
    let api = ApiServer::start(&db).await;
    // several values that do not parse: the field named is one of them
    let reply = api
        .post(
            "/v1/webhooks",
            json!({"url": "https://receiver.example/hooks", "events": ["*"],
                   "retrySchedule": ["5s"], "probeInterval": "often"}),
        )
        .await;
    reply.assert_error(400, "probeInterval");
    assert_eq!(db.psql("SELECT count(*) FROM walhook.subscriptions"), "0");

    // the same on update; a refused update changes nothing
    let ok = json!({"url": "https://receiver.example/hooks", "events": ["*"]});
    let id = api.post("/v1/webhooks", ok).await.body["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let path = format!("/v1/webhooks/{id}");
    api.put(&path, json!({"filter": "$.new ? ("}))
        .await
        .assert_error(400, "filter");
    api.put(&path, json!({"rateLimit": 0}))
        .await
        .assert_error(400, "rateLimit");
    api.put(&path, json!({"failureWindow": "1 week"}))
        .await
        .assert_error(400, "failureWindow");
    let unchanged = api.get(&path).await.body;
    assert_eq!(unchanged["filter"], Value::Null);
    assert_eq!(unchanged["rateLimit"], Value::Null);
    assert_eq!(unchanged["failureWindow"], "5min");

    let doc = api.get("/v1/openapi.json").await.body;
    let schemas = &doc["components"]["schemas"];
    let settable = schemas["WebhookUpdate"]["properties"].as_object().unwrap();
    for field in settable.keys() {
        for schema in ["Webhook", "WebhookCreate"] {
            assert!(
                schemas[schema]["properties"][field].is_object(),
                "{schema}.{field}"
            );
        }
    }
    assert!(settable.contains_key("failureWindowMinAttempts"));
    assert!(settable.contains_key("signatureSchemes"));
    for field in ["disabledReason", "disabledAt", "health"] {
        assert!(
            schemas["Webhook"]["properties"][field].is_object(),
            "{field}"
        );
        assert!(schemas["WebhookUpdate"]["properties"][field].is_null());
    }
    assert!(schemas["Health"]["properties"]["failingSince"].is_object());
}
