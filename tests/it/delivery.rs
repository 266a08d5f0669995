//! Delivery end to end: a real PostgreSQL, the walhook binary, and real HTTP
//! receivers on loopback.

use std::time::Duration;

use crate::support::receiver::{Received, Reply};
use crate::support::{
    ChildProcess, Cluster, Receiver, TestDb, assert_refused, items_table, migrate,
    nothing_happens_for, route_table, scalar, subscribe, wait_scalar_at_least, wait_scalar_eq,
    wait_until, walhook_streaming,
};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(60);

/// A migrated database with a routed `items` table and insecure targets allowed.
fn prepare(db: &TestDb<'_>) {
    items_table(db, ", kind text NOT NULL DEFAULT 'a', name text");
}

async fn rows(db: &TestDb<'_>, sql: &str) -> Vec<tokio_postgres::Row> {
    db.client().await.query(sql, &[]).await.unwrap()
}

async fn wait_received(receiver: &Receiver, n: usize) {
    wait_until(WAIT, &format!("{n} requests at the receiver"), || async {
        (receiver.count() >= n).then_some(())
    })
    .await;
}

async fn wait_status(db: &TestDb<'_>, status: &str, n: i64) {
    let sql = format!("SELECT count(*) FROM walhook.deliveries WHERE status = '{status}'");
    wait_scalar_at_least(db, WAIT, &format!("{n} deliveries {status}"), &sql, n).await;
}

/// A new [`prepare`]d database and a receiver (answering 204 until told
/// otherwise) subscribed with extra columns and values as [`subscribe`]
/// takes them.
async fn subscribed_receiver(extra_cols: &str, extra_vals: &str) -> (TestDb<'static>, Receiver) {
    let db = Cluster::shared().new_database();
    prepare(&db);
    let receiver = Receiver::start().await;
    subscribe(&db, &receiver.url(), extra_cols, extra_vals);
    (db, receiver)
}

/// The daemon's JWKS address.
fn jwks_url(walhook: &ChildProcess) -> String {
    format!(
        "http://{}/.well-known/jwks.json",
        walhook.http_addr.as_ref().unwrap()
    )
}

async fn fetch_jwks(url: &str) -> Value {
    reqwest::get(url).await.unwrap().json().await.unwrap()
}

/// What `tests/py/verify_*.py` read: `request` as sent to `url`, with the
/// subscription's `secret` and the `jwks` to verify against.
fn verifier_input(request: &Received, url: String, secret: String, jwks: Value) -> Value {
    let headers: serde_json::Map<String, Value> = request
        .headers
        .iter()
        .map(|(k, v)| (k.to_string(), Value::String(v.to_str().unwrap().into())))
        .collect();
    serde_json::json!({
        "url": url,
        "method": "POST",
        "headers": headers,
        "body_b64": base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &request.body),
        "secret": secret,
        "jwks": jwks,
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn a_committed_row_arrives_signed_with_its_headers() {
    let (db, receiver) = subscribed_receiver(
        ", headers, query_params, auth_type, auth_token",
        r#", '{"x-tenant": "acme"}', '{"source": "walhook"}', 'bearer', 's3cret-token'"#,
    )
    .await;
    // a succeeded attempt keeps its headers only when asked to
    db.psql("INSERT INTO walhook.settings VALUES ('attempt_request_headers', 'ALL')");
    let walhook = walhook_streaming(&db);
    db.psql("INSERT INTO items (id, name) VALUES (1, 'one')");
    wait_received(&receiver, 1).await;
    wait_status(&db, "succeeded", 1).await;
    let request = &receiver.received()[0];
    let stored = &rows(&db, "SELECT id::text, body::text FROM walhook.events").await[0];
    let (event_id, body): (String, String) = (stored.get(0), stored.get(1));
    assert_eq!(request.method, "POST");
    assert_eq!(request.uri.path(), "/hook");
    assert_eq!(request.uri.query(), Some("source=walhook"));
    assert_eq!(
        std::str::from_utf8(&request.body).unwrap(),
        body,
        "exact stored bytes"
    );
    assert_eq!(
        request.header("webhook-id").as_deref(),
        Some(event_id.as_str())
    );
    assert_eq!(
        request.header("webhook-event-type").as_deref(),
        Some("item.created")
    );
    assert_eq!(request.header("webhook-attempt").as_deref(), Some("1"));
    assert_eq!(
        request.header("content-type").as_deref(),
        Some("application/json")
    );
    assert_eq!(request.header("x-tenant").as_deref(), Some("acme"));
    assert_eq!(
        request.header("authorization").as_deref(),
        Some("Bearer s3cret-token")
    );
    let signature = request.header("webhook-signature").unwrap();
    assert!(
        signature.starts_with("v1,") && signature.contains(" v1a,"),
        "{signature}"
    );
    assert!(
        request
            .header("content-digest")
            .unwrap()
            .starts_with("sha-256=:")
    );
    let input = request.header("signature-input").unwrap();
    assert!(input.starts_with("sig1=(\"@method\" \"@target-uri\" \"content-digest\" \"content-type\" \"webhook-id\" \"webhook-timestamp\")"), "{input}");
    assert!(input.contains("alg=\"ed25519\""));
    let body: Value = request.json();
    assert_eq!(body["apiresource"], "/items/1");
    let attempts = rows(
        &db,
        "SELECT attempt, status_code FROM walhook.delivery_attempts",
    )
    .await;
    assert_eq!(attempts.len(), 1);
    assert_eq!(attempts[0].get::<_, Option<i32>>(1), Some(204));

    // the attempt keeps the headers walhook set, as sent, and no credential:
    // every header the receiver got but the transport's (host,
    // content-length, ...), authorization and the webhook's own (x-tenant)
    let stored: Value =
        rows(&db, "SELECT request_headers FROM walhook.delivery_attempts").await[0].get(0);
    let stored = stored.as_object().expect("request_headers is an object");
    let walhooks: Vec<&str> = request
        .headers
        .keys()
        .map(|name| name.as_str())
        .filter(|name| {
            *name != "content-length"
                && (name.starts_with("webhook-")
                    || name.starts_with("content-")
                    || name.starts_with("signature"))
        })
        .collect();
    assert_eq!(walhooks.len(), 9, "{walhooks:?}");
    for name in &walhooks {
        assert_eq!(
            stored.get(*name).and_then(Value::as_str),
            request.header(name).as_deref(),
            "{name} as sent"
        );
    }
    assert_eq!(stored.len(), walhooks.len(), "nothing else: {stored:?}");

    // independent verifiers, with the key from the daemon's JWKS
    let jwks = fetch_jwks(&jwks_url(&walhook)).await;
    assert_eq!(jwks["keys"][0]["kty"], "OKP");
    let input = verifier_input(
        request,
        format!("{}?source=walhook", receiver.url()),
        db.psql("SELECT secret FROM walhook.subscriptions"),
        jwks,
    );
    for script in [
        "verify_standard.py",
        "verify_ed25519.py",
        "verify_rfc9421.py",
    ] {
        crate::support::python::verify(script, &input).unwrap_or_else(|e| panic!("{script}: {e}"));
    }
    // what is stored is enough to check the signatures again: the verifiers
    // accept the stored headers with the stored body
    let mut from_storage = input.clone();
    from_storage["headers"] = Value::Object(stored.clone());
    for script in [
        "verify_standard.py",
        "verify_ed25519.py",
        "verify_rfc9421.py",
    ] {
        crate::support::python::verify(script, &from_storage)
            .unwrap_or_else(|e| panic!("{script} with the stored headers: {e}"));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn failures_are_retried_then_succeed_with_every_attempt_recorded() {
    let (db, receiver) = subscribed_receiver("", "").await;
    receiver.push([Reply::Status(500), Reply::Status(500)]);
    let _walhook = walhook_streaming(&db);
    db.psql("INSERT INTO items (id) VALUES (1)");
    wait_status(&db, "succeeded", 1).await;
    let attempts: Vec<Option<i32>> = rows(
        &db,
        "SELECT status_code FROM walhook.delivery_attempts ORDER BY attempt",
    )
    .await
    .iter()
    .map(|r| r.get(0))
    .collect();
    assert_eq!(attempts, vec![Some(500), Some(500), Some(204)]);
    let d = &rows(
        &db,
        "SELECT attempts, last_status_code FROM walhook.deliveries",
    )
    .await[0];
    assert_eq!(d.get::<_, i32>(0), 3);
    assert_eq!(d.get::<_, Option<i32>>(1), Some(204));
    let numbers: Vec<String> = receiver
        .received()
        .iter()
        .map(|r| r.header("webhook-attempt").unwrap())
        .collect();
    assert_eq!(numbers, ["1", "2", "3"]);
    assert_eq!(
        receiver.distinct_ids(),
        1,
        "the event id is stable across retries"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn always_failing_ends_failed_and_redeliver_sends_again() {
    let (db, receiver) = subscribed_receiver("", "").await;
    receiver.set_default(Reply::Status(503));
    let _walhook = walhook_streaming(&db);
    db.psql("INSERT INTO items (id) VALUES (1)");
    wait_status(&db, "failed", 1).await;
    assert_eq!(receiver.count(), 4, "one attempt and three retries");
    let err: String = rows(&db, "SELECT last_error FROM walhook.deliveries").await[0].get(0);
    assert!(err.contains("503"), "{err}");
    receiver.set_default(Reply::Status(200));
    db.psql("SELECT walhook.redeliver(id) FROM walhook.deliveries");
    wait_status(&db, "succeeded", 1).await;
    assert_eq!(receiver.count(), 5);
    // the UPDATE path works as well
    receiver.set_default(Reply::Status(204));
    db.psql("UPDATE walhook.deliveries SET status = 'pending', next_attempt_at = now()");
    wait_received(&receiver, 6).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn retry_after_is_honoured_and_timeouts_and_redirects_fail() {
    let db = Cluster::shared().new_database();
    prepare(&db);
    let receiver = Receiver::start().await;
    receiver.push([
        Reply::StatusWithHeader(429, "retry-after", "2".into()),
        Reply::Hang,
        Reply::StatusWithHeader(302, "location", "https://elsewhere.example/".into()),
    ]);
    db.psql(&format!(
        "INSERT INTO walhook.subscriptions (url, retry_schedule, timeout_ms)
         VALUES ('{}', '{{1s,10ms,10ms}}', 300)",
        receiver.url()
    ));
    let _walhook = walhook_streaming(&db);
    db.psql("INSERT INTO items (id) VALUES (1)");
    wait_status(&db, "succeeded", 1).await;
    let got = receiver.received();
    assert_eq!(got.len(), 4, "302 not followed: 4 requests, all to /hook");
    assert!(got.iter().all(|r| r.uri.path() == "/hook"));
    let gap = got[1].at - got[0].at;
    assert!(
        gap >= Duration::from_millis(1900),
        "Retry-After 2 s honoured, waited {gap:?}"
    );
    let errors: Vec<Option<String>> = rows(
        &db,
        "SELECT error FROM walhook.delivery_attempts ORDER BY attempt",
    )
    .await
    .iter()
    .map(|r| r.get(0))
    .collect();
    assert!(
        errors[1].as_deref().unwrap().contains("timed out"),
        "{errors:?}"
    );
    assert!(
        errors[2].as_deref().unwrap().contains("redirect"),
        "{errors:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn loopback_targets_are_refused_without_the_setting() {
    let db = Cluster::shared().new_database();
    prepare(&db);
    let receiver = Receiver::start().await;
    let url = format!("http://localhost:{}/hook", receiver.addr.port());
    subscribe(&db, &url, "", "");
    db.psql("UPDATE walhook.settings SET value = 'false' WHERE key = 'allow_insecure_targets'");
    let _walhook = walhook_streaming(&db);
    db.psql("INSERT INTO items (id) VALUES (1)");
    wait_status(&db, "failed", 1).await;
    assert_eq!(receiver.count(), 0, "no request is made");
    let err: String =
        rows(&db, "SELECT error FROM walhook.delivery_attempts LIMIT 1").await[0].get(0);
    assert!(
        err.contains("loopback address") && err.contains("allow_insecure_targets"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn max_in_flight_bounds_concurrent_requests_to_a_receiver() {
    let (db, receiver) = subscribed_receiver(", max_in_flight, timeout_ms", ", 3, 3000").await;
    receiver.set_default(Reply::Hang);
    let _walhook = walhook_streaming(&db);
    db.psql("INSERT INTO items (id) SELECT generate_series(1, 20)");
    wait_received(&receiver, 3).await;
    // every request hangs until its 3 s timeout: no fourth one may start before
    nothing_happens_for(
        Duration::from_millis(1500),
        "a fourth concurrent request (max_in_flight 3)",
        || async { (receiver.count() > 3).then_some(receiver.count()) },
    )
    .await;
    // as the timeouts free the slots, the next three go out
    wait_received(&receiver, 6).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn patterns_select_events_and_disabled_subscriptions_get_nothing() {
    let db = Cluster::shared().new_database();
    prepare(&db);
    route_table(&db, "others", "other", "");
    let exact = Receiver::start().await;
    let prefix = Receiver::start().await;
    let all = Receiver::start().await;
    let disabled = Receiver::start().await;
    subscribe(&db, &exact.url(), ", events", ", '{item.updated}'");
    subscribe(&db, &prefix.url(), ", events", ", '{item.*}'");
    subscribe(&db, &all.url(), ", events", ", '{*}'");
    subscribe(&db, &disabled.url(), ", disabled", ", true");
    let _walhook = walhook_streaming(&db);
    db.psql("INSERT INTO items (id) VALUES (1); UPDATE items SET name = 'x' WHERE id = 1; INSERT INTO others VALUES (1)");
    wait_received(&all, 3).await;
    wait_received(&prefix, 2).await;
    wait_received(&exact, 1).await;
    nothing_happens_for(
        Duration::from_millis(500),
        "a request no pattern selects",
        || async {
            let counts = [exact.count(), prefix.count(), all.count(), disabled.count()];
            (counts != [1, 2, 3, 0]).then_some(counts)
        },
    )
    .await;
    let types = |r: &Receiver| -> Vec<String> {
        r.received()
            .iter()
            .map(|q| q.header("webhook-event-type").unwrap())
            .collect()
    };
    assert_eq!(types(&exact), ["item.updated"]);
    let mut p = types(&prefix);
    p.sort();
    assert_eq!(p, ["item.created", "item.updated"]);
    assert_eq!(all.count(), 3);
    assert_eq!(disabled.count(), 0);
}

#[test]
fn bad_urls_are_refused_naming_the_rule() {
    let db = Cluster::shared().database();
    migrate(&db.url());
    for (url, rule) in [
        ("http://receiver.example/hook", "url rule scheme"),
        ("https://10.0.0.1/hook", "url rule ip-literal"),
        ("https://receiver.example/hook?a=1", "url rule query"),
        ("https://receiver.example/hook#frag", "url rule fragment"),
        (
            "https://user:pw@receiver.example/hook",
            "url rule user-info",
        ),
        ("receiver.example/hook", "url rule absolute"),
    ] {
        assert_refused(
            &db,
            &format!("INSERT INTO walhook.subscriptions (url) VALUES ('{url}')"),
            rule,
        );
    }
    let long = format!("https://receiver.example/{}", "a".repeat(2100));
    assert_refused(
        &db,
        &format!("INSERT INTO walhook.subscriptions (url) VALUES ('{long}')"),
        "url rule length",
    );
    db.psql("INSERT INTO walhook.subscriptions (url) VALUES ('https://receiver.example/hook')");
    let secret = db.psql("SELECT secret FROM walhook.subscriptions");
    assert!(secret.starts_with("whsec_"), "{secret}");
    db.psql("INSERT INTO walhook.settings VALUES ('allow_insecure_targets', 'true')");
    db.psql("INSERT INTO walhook.subscriptions (url) VALUES ('http://127.0.0.1:9/hook')");
    assert_refused(
        &db,
        "INSERT INTO walhook.settings VALUES ('colour', 'blue')",
        "unknown setting colour",
    );
    assert_refused(
        &db,
        "INSERT INTO walhook.settings VALUES ('event_retention', 'soon')",
        "event_retention must be a positive interval",
    );
    assert_refused(
        &db,
        "INSERT INTO walhook.settings VALUES ('attempt_request_headers', 'some')",
        "attempt_request_headers must be all, failed or none",
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn key_rotation_publishes_both_keys_and_signs_with_the_new_one() {
    let (db, receiver) = subscribed_receiver("", "").await;
    let walhook = walhook_streaming(&db);
    let jwks_url = jwks_url(&walhook);
    let old_kid: String = db.psql("SELECT kid FROM walhook.signing_keys");
    let (status, out, err) =
        crate::support::walhook(&["keys", "rotate", "--database-url", &db.url()]);
    assert!(status.success(), "{err}");
    let new_kid = out.trim().rsplit(' ').next().unwrap().to_owned();
    assert_ne!(new_kid, old_kid);
    let jwks: Value = wait_until(WAIT, "both keys in the JWKS", || async {
        let jwks = fetch_jwks(&jwks_url).await;
        (jwks["keys"].as_array().unwrap().len() == 2).then_some(jwks)
    })
    .await;
    db.psql("INSERT INTO items (id) VALUES (1)");
    wait_received(&receiver, 1).await;
    let request = &receiver.received()[0];
    let input = request.header("signature-input").unwrap();
    assert!(input.contains(&format!("keyid=\"{new_kid}\"")), "{input}");
    let signature = request.header("webhook-signature").unwrap();
    assert_eq!(
        signature.matches("v1a,").count(),
        2,
        "old and new key both sign: {signature}"
    );
    // the old key's v1a alone still verifies against the published JWKS
    let old_only: Value = serde_json::json!({"keys": jwks["keys"].as_array().unwrap().iter().filter(|k| k["kid"] == old_kid.as_str()).collect::<Vec<_>>()});
    let input = verifier_input(
        request,
        receiver.url(),
        db.psql("SELECT secret FROM walhook.subscriptions"),
        old_only,
    );
    crate::support::python::verify("verify_ed25519.py", &input).expect("old key still verifies");
    // retiring the old key removes it from the JWKS
    let (status, _, err) =
        crate::support::walhook(&["keys", "retire", &old_kid, "--database-url", &db.url()]);
    assert!(status.success(), "{err}");
    wait_until(WAIT, "old key gone from the JWKS", || async {
        let jwks = fetch_jwks(&jwks_url).await;
        (jwks["keys"].as_array().unwrap().len() == 1 && jwks["keys"][0]["kid"] == new_kid.as_str())
            .then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn signature_schemes_choose_the_signatures_sent() {
    let db = Cluster::shared().new_database();
    prepare(&db);
    for (schemes, refusal) in [
        ("{}", "signature_schemes must list at least one"),
        ("{v1,v2}", "signature_schemes entry v2 is unknown"),
    ] {
        assert_refused(
            &db,
            &format!(
                "INSERT INTO walhook.subscriptions (url, signature_schemes)
                 VALUES ('http://127.0.0.1:9/hook', '{schemes}')"
            ),
            refusal,
        );
    }
    let hmac_only = Receiver::start().await;
    let rfc_only = Receiver::start().await;
    let all = Receiver::start().await;
    subscribe(&db, &hmac_only.url(), ", signature_schemes", ", '{v1}'");
    subscribe(&db, &rfc_only.url(), ", signature_schemes", ", '{rfc9421}'");
    subscribe(&db, &all.url(), "", "");
    let _walhook = walhook_streaming(&db);
    db.psql("INSERT INTO items (id) VALUES (1)");
    for receiver in [&hmac_only, &rfc_only, &all] {
        wait_received(receiver, 1).await;
    }
    let hmac = &hmac_only.received()[0];
    let signature = hmac.header("webhook-signature").unwrap();
    assert!(
        signature.starts_with("v1,") && !signature.contains("v1a,"),
        "{signature}"
    );
    assert!(hmac.header("signature-input").is_none());
    assert!(hmac.header("content-digest").is_none());
    let rfc = &rfc_only.received()[0];
    assert!(rfc.header("webhook-signature").is_none());
    assert!(
        rfc.header("signature-input")
            .unwrap()
            .contains("alg=\"ed25519\"")
    );
    assert!(rfc.header("content-digest").is_some());
    let every = &all.received()[0];
    let signature = every.header("webhook-signature").unwrap();
    assert!(
        signature.contains("v1,") && signature.contains("v1a,"),
        "{signature}"
    );
    assert!(every.header("signature").is_some());
}

/// Non-ASCII hosts are stored in their IDNA form, exactly as the `url` crate
/// (UTS #46 for URLs) writes them; what IDNA refuses is refused.
#[test]
fn non_ascii_hosts_are_stored_in_idna_form() {
    let db = Cluster::shared().database();
    migrate(&db.url());
    for input in [
        "https://bücher.example/hook",
        "https://MÜNCHEN.example:8443/hook",
        "https://日本語.example/a/b",
        "https://παράδειγμα.δοκιμή/hook",
        "https://пример.испытание/hook",
        "https://☃.net/hook",
        "https://faß.de/hook",
        "https://ＢÜＣＨＥＲ．example/hook",
        "https://ab--c-ü.example/hook",
        "https://a.ü.b.example/hook",
    ] {
        let expected = url::Url::parse(input).expect(input).to_string();
        let stored = db.psql(&format!(
            "INSERT INTO walhook.subscriptions (url) VALUES ('{input}') RETURNING url"
        ));
        assert_eq!(stored.trim(), expected, "{input}");
    }
    assert_eq!(
        db.psql("SELECT url FROM walhook.subscriptions WHERE url LIKE '%bcher%' LIMIT 1")
            .trim(),
        "https://xn--bcher-kva.example/hook"
    );
    for input in [
        "https://bü cher.example/hook",
        "https://bü\u{fffd}.example/hook",
        "https://bü\u{e000}.example/hook",
    ] {
        assert!(
            url::Url::parse(input).is_err(),
            "the url crate refuses {input}"
        );
        assert_refused(
            &db,
            &format!("INSERT INTO walhook.subscriptions (url) VALUES ('{input}')"),
            "url rule host",
        );
    }
}

/// `max_payload_bytes` changed while walhook runs applies within seconds.
#[tokio::test(flavor = "multi_thread")]
async fn max_payload_bytes_takes_effect_without_a_restart() {
    let db = Cluster::shared().new_database();
    prepare(&db);
    let _walhook = walhook_streaming(&db);
    let big = "x".repeat(400);
    db.psql(&format!("INSERT INTO items (id, name) VALUES (0, '{big}')"));
    wait_scalar_eq(
        &db,
        WAIT,
        "the first event",
        "SELECT count(*) FROM walhook.events WHERE body IS NOT NULL",
        1,
    )
    .await;
    db.psql("INSERT INTO walhook.settings VALUES ('max_payload_bytes', '300')");
    let started = std::time::Instant::now();
    let mut id = 0;
    let error: String = wait_until(Duration::from_secs(15), "an oversized event", || {
        id += 1;
        db.psql(&format!(
            "INSERT INTO items (id, name) VALUES ({id}, '{big}')"
        ));
        let db = &db;
        // this row's event stored: its error, if the new limit applied to it
        let sql = format!("SELECT error FROM walhook.events WHERE apiresource = '/items/{id}'");
        async move {
            wait_until(WAIT, "the row's event", || async {
                rows(db, &sql)
                    .await
                    .first()
                    .map(|r| r.get::<_, Option<String>>(0))
            })
            .await
        }
    })
    .await;
    assert!(error.contains("exceeds max_payload_bytes (300)"), "{error}");
    assert!(started.elapsed() < Duration::from_secs(10));
}

/// An event removed (retention) while its first attempt is in flight: that
/// outcome has no event to belong to, and the outcomes after it are stored.
#[tokio::test(flavor = "multi_thread")]
async fn an_event_removed_during_its_first_attempt_leaves_the_recorder_going() {
    let (db, receiver) = subscribed_receiver(", timeout_ms", ", 2000").await;
    receiver.push([Reply::Hang]);
    let walhook = walhook_streaming(&db);
    db.psql("INSERT INTO items (id) VALUES (1)");
    wait_received(&receiver, 1).await;
    db.psql("DELETE FROM walhook.events");
    // the hanging attempt times out and its outcome goes to the recorder
    walhook.wait_for_log("delivery attempt failed", WAIT);
    db.psql("INSERT INTO items (id) VALUES (2)");
    wait_scalar_eq(
        &db,
        WAIT,
        "the next event's outcome stored",
        "SELECT count(*) FROM walhook.deliveries d JOIN walhook.events e ON e.id = d.event_id
          WHERE e.apiresource = '/items/2' AND d.status = 'succeeded'",
        1,
    )
    .await;
    assert_eq!(
        scalar(&db, "SELECT count(*) FROM walhook.delivery_attempts").await,
        1,
        "only the stored event's attempt has a row"
    );
}
