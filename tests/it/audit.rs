//! API tokens (`walhook api-tokens`) and the audit log of configuration
//! changes: actors, objects, redaction, and retention that keeps it.

use crate::support::api::{ApiServer, api_tokens, create_token};
use crate::support::{Cluster, migrate, route_items, walhook};
use reqwest::Method;
use serde_json::json;

/// `walhook api-tokens ARGS` exits non-zero, saying `why` on stderr.
fn assert_api_tokens_refused(url: &str, args: &[&str], why: &str) {
    let (status, _, err) = api_tokens(url, args);
    assert!(!status.success(), "api-tokens {args:?} succeeded");
    assert!(err.contains(why), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn api_tokens_are_created_once_listed_without_the_token_and_revoked() {
    let db = Cluster::shared().database();
    let api = ApiServer::start(&db).await;
    let url = db.url();

    let (status, out, err) = api_tokens(&url, &["create", "--name", "ci-bot"]);
    assert!(status.success(), "{err}");
    let token = out.lines().last().unwrap();
    assert!(
        token.starts_with("whk_") && !token.contains(' '),
        "token alone on the last line: {out:?}"
    );
    assert!(out.ends_with(&format!("{token}\n")));
    assert_eq!(
        db.psql(&format!("SELECT count(*) FROM walhook.api_tokens WHERE token_sha256 = '{token}' OR name = '{token}'")),
        "0",
        "the token itself is not stored"
    );

    let (status, listed, _) = api_tokens(&url, &["list"]);
    assert!(status.success());
    assert!(
        listed.contains("ci-bot") && listed.contains("tester"),
        "{listed}"
    );
    assert!(!listed.contains(token));

    assert_api_tokens_refused(&url, &["create", "--name", "ci-bot"], "already exists");
    assert_api_tokens_refused(
        &url,
        &["create", "--name", "has space"],
        "invalid token name",
    );

    let with_token = api
        .call_as(Some(token), Method::GET, "/v1/webhooks", None)
        .await;
    assert_eq!(with_token.status, 200, "{}", with_token.body);
    let (status, _, err) = api_tokens(&url, &["revoke", "ci-bot"]);
    assert!(status.success(), "{err}");
    api.call_as(Some(token), Method::GET, "/v1/webhooks", None)
        .await
        .assert_error(401, "Authorization");
    assert_eq!(
        api.get("/v1/webhooks").await.status,
        200,
        "other tokens still work"
    );
    assert_api_tokens_refused(&url, &["revoke", "ci-bot"], "no API token named");
}

#[tokio::test(flavor = "multi_thread")]
async fn sql_and_api_changes_are_audited_with_their_actor_and_no_secret() {
    let db = Cluster::shared().database();
    let api = ApiServer::start(&db).await;
    db.psql("INSERT INTO walhook.settings VALUES ('event_retention', '3 days')");
    route_items(&db, "");
    db.psql("UPDATE walhook.routes SET enabled = false");
    let from_sql = db.psql(
        "INSERT INTO walhook.subscriptions (url, auth_type, auth_token)
         VALUES ('https://sql.example/h', 'bearer', 'sql-token-S3CRET') RETURNING id",
    );
    db.psql(&format!(
        "UPDATE walhook.subscriptions SET previous_secret = secret, secret = walhook.generate_secret()
          WHERE id = '{from_sql}'"
    ));
    let created = api
        .post(
            "/v1/webhooks",
            json!({"url": "https://api.example/h", "events": ["*"],
                   "auth": {"type": "basic", "username": "u", "password": "api-pass-S3CRET"}}),
        )
        .await;
    let id = created.body["id"].as_str().unwrap().to_owned();
    let api_secret = created.body["secret"].as_str().unwrap().to_owned();
    api.put(&format!("/v1/webhooks/{id}"), json!({"name": "renamed"}))
        .await;
    api.delete(&format!("/v1/webhooks/{id}")).await;
    let (status, _, err) = walhook(&["keys", "rotate", "--database-url", &db.url()]);
    assert!(status.success(), "{err}");

    let rows =
        db.psql("SELECT actor, action, object, object_id FROM walhook.audit_log ORDER BY id");
    let rows: Vec<&str> = rows.lines().collect();
    let kid = db.psql("SELECT string_agg(kid, ',' ORDER BY created_at) FROM walhook.signing_keys");
    let kids: Vec<&str> = kid.split(',').collect();
    let expected = [
        format!("postgres/walhook|insert|signing_keys|{}", kids[0]),
        "postgres/walhook|insert|api_tokens|tester".to_owned(),
        "postgres/psql|insert|settings|event_retention".to_owned(),
        "postgres/psql|insert|routes|items".to_owned(),
        "postgres/psql|update|routes|items".to_owned(),
        format!("postgres/psql|insert|subscriptions|{from_sql}"),
        format!("postgres/psql|update|subscriptions|{from_sql}"),
        format!("api:tester|insert|subscriptions|{id}"),
        format!("api:tester|update|subscriptions|{id}"),
        format!("api:tester|delete|subscriptions|{id}"),
        format!("postgres/walhook|insert|signing_keys|{}", kids[1]),
    ];
    assert_eq!(rows, expected);
    assert_eq!(
        db.psql(&format!(
            "SELECT before->>'name' IS NULL, after->>'name', after->>'auth_password', after->>'auth_username'
               FROM walhook.audit_log WHERE object_id = '{id}' AND action = 'update'"
        )),
        "t|renamed|[redacted]|u"
    );
    assert_eq!(
        db.psql(&format!(
            "SELECT before IS NOT NULL, after IS NULL FROM walhook.audit_log
              WHERE object_id = '{id}' AND action = 'delete'"
        )),
        "t|t"
    );

    // no secret, token, password or private key in the log, through SQL or the API
    let mut secrets = vec![
        "sql-token-S3CRET".to_owned(),
        "api-pass-S3CRET".to_owned(),
        api_secret,
        api.token.clone(),
    ];
    let stored = db.psql(&format!(
        "SELECT secret || ',' || previous_secret FROM walhook.subscriptions WHERE id = '{from_sql}'"
    ));
    secrets.extend(stored.split(',').map(str::to_owned));
    let keys = db.psql(
        "SELECT string_agg(encode(private_key, 'hex'), ',') || ',' ||
                (SELECT string_agg(token_sha256, ',') FROM walhook.api_tokens)
           FROM walhook.signing_keys",
    );
    secrets.extend(keys.split(',').map(str::to_owned));
    assert!(secrets.len() >= 8, "{secrets:?}");
    let log = db.psql("SELECT string_agg(coalesce(before::text, '') || coalesce(after::text, ''), ' ') FROM walhook.audit_log");
    let (entries, _) = api.all_pages("/v1/audit", 100).await;
    let served = serde_json::to_string(&entries).unwrap();
    for secret in &secrets {
        assert!(!log.contains(secret.as_str()), "{secret} in the audit log");
        assert!(!served.contains(secret.as_str()), "{secret} in /v1/audit");
    }
    assert!(log.contains("[redacted]"));

    let newest = &entries[0];
    assert_eq!(newest["object"], "signing_keys");
    assert_eq!(newest["after"]["private_key"], "[redacted]");
    let deleted = entries
        .iter()
        .find(|e| e["action"] == "delete")
        .expect("the API's delete");
    assert_eq!(deleted["actor"], "api:tester");
    assert_eq!(deleted["objectId"], id.as_str());
    assert_eq!(deleted["after"], serde_json::Value::Null);
    for key in [
        "id", "at", "actor", "action", "object", "objectId", "before", "after",
    ] {
        assert!(deleted.get(key).is_some(), "{key}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn retention_keeps_the_audit_log_unless_audit_retention_says_otherwise() {
    let db = Cluster::shared().database();
    migrate(&db.url());
    create_token(&db.url(), "someone");
    for bad in ["bogus", "-1 day", "0"] {
        let err = db
            .try_psql(&format!(
                "INSERT INTO walhook.settings VALUES ('audit_retention', '{bad}')"
            ))
            .unwrap_err();
        assert!(
            err.contains("audit_retention must be forever or a positive interval"),
            "{err}"
        );
    }
    db.psql("INSERT INTO walhook.settings VALUES ('audit_retention', 'FOREVER')");
    assert_eq!(
        db.psql("SELECT value FROM walhook.settings WHERE key = 'audit_retention'"),
        "forever"
    );
    db.psql("UPDATE walhook.audit_log SET at = now() - interval '1000 days'");
    let old = db.psql("SELECT count(*) FROM walhook.audit_log");
    let client = db.client().await;
    // what the daemon's retention job does: load the settings, then sweep
    let settings = walhook::store::settings::load(&client)
        .await
        .expect("settings load with audit_retention = forever");
    walhook::store::retention::sweep(&client, &settings)
        .await
        .unwrap();
    assert_eq!(
        db.psql("SELECT count(*) FROM walhook.audit_log"),
        old,
        "forever keeps all"
    );
    db.psql("DELETE FROM walhook.settings WHERE key = 'audit_retention'");
    walhook::store::retention::sweep(&client, &settings)
        .await
        .unwrap();
    assert_eq!(
        db.psql("SELECT count(*) FROM walhook.audit_log WHERE at < now() - interval '999 days'"),
        old,
        "the default keeps all"
    );
    db.psql("INSERT INTO walhook.settings VALUES ('audit_retention', '30 days')");
    let removed = walhook::store::retention::sweep_audit(&client)
        .await
        .unwrap();
    assert_eq!(removed.to_string(), old);
    assert_eq!(
        db.psql("SELECT count(*) FROM walhook.audit_log"),
        "2",
        "recent rows stay (the setting's delete and insert)"
    );
}
