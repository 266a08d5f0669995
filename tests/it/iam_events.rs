//! The IAM event vocabulary end to end: every event name of
//! `sql/examples/iam.sql`, `user.bulk_deleted` grouping the deletes of one
//! transaction (cascades included), `{changed}` and `{old.col}` in payloads,
//! and the route checks on `event_names` and `bulk_delete_event`.

use std::collections::BTreeSet;
use std::time::Duration;

use crate::support::{
    Cluster, IAM_VOCABULARY, TestDb, assert_refused, migrate, no_more_events, scalar,
    stored_events, wait_until, walhook_streaming,
};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(60);

/// The stored events once one of type `last` is there, and no more come for
/// half a second (to see events that must not come).
async fn events_until(db: &TestDb<'_>, last: &str) -> Vec<(String, String, Value)> {
    let sql = format!("SELECT count(*) FROM walhook.events WHERE type = '{last}'");
    wait_until(WAIT, last, || async {
        (scalar(db, &sql).await > 0).then_some(())
    })
    .await;
    let stored = scalar(db, "SELECT count(*) FROM walhook.events").await;
    no_more_events(db, stored, Duration::from_millis(500)).await;
    stored_events(db).await
}

const REALM: &str = "1c6e0b7e-8d64-4a39-9a3c-3d1e5bb3a001";
const STAGING: &str = "1c6e0b7e-8d64-4a39-9a3c-3d1e5bb3a002";

#[tokio::test(flavor = "multi_thread")]
async fn the_iam_example_produces_every_event_name() {
    let db = Cluster::shared().new_database();
    migrate(&db.url());
    db.psql_file("sql/examples/iam.sql");
    db.psql_file("sql/examples/iam.sql"); // loading twice is harmless
    let _walhook = walhook_streaming(&db);
    // one transaction each
    let steps = [
        "BEGIN; INSERT INTO iam.realms (realm_id, name) VALUES ('REALM', 'main'), ('STAGING', 'staging'); INSERT INTO iam.realm_settings (realm_id, smtp_password) VALUES ('REALM', 'smtp-secret-value'); COMMIT",
        "UPDATE iam.realms SET display_name = 'Main' WHERE realm_id = 'REALM'",
        "UPDATE iam.realm_settings SET verify_email = true WHERE realm_id = 'REALM'",
        "UPDATE iam.realm_settings SET smtp_password = 'smtp-secret-rotated' WHERE realm_id = 'REALM'",
        "INSERT INTO iam.roles (realm_id, name) VALUES ('REALM', 'admin'), ('REALM', 'viewer')",
        "UPDATE iam.roles SET description = 'admins' WHERE name = 'admin'",
        "INSERT INTO iam.role_permissions (role_id, realm_id, permissions) SELECT role_id, realm_id, '{users:read}' FROM iam.roles WHERE name = 'admin'",
        "UPDATE iam.role_permissions SET permissions = '{users:read,users:write}'",
        "INSERT INTO iam.clients (realm_id, oauth_client_id, secret) VALUES ('REALM', 'app', 'client-secret-value'), ('REALM', 'old', 'client-secret-value')",
        "UPDATE iam.clients SET name = 'App' WHERE oauth_client_id = 'app'",
        "UPDATE iam.clients SET secret = 'client-secret-rotated' WHERE oauth_client_id = 'app'",
        "INSERT INTO iam.redirect_uris (client_id, realm_id, uri) SELECT client_id, realm_id, 'https://app.example/cb' FROM iam.clients WHERE oauth_client_id = 'app'",
        "UPDATE iam.redirect_uris SET uri = 'https://app.example/callback'",
        "DELETE FROM iam.redirect_uris",
        "INSERT INTO iam.client_roles (client_id, realm_id, name) SELECT client_id, realm_id, 'reader' FROM iam.clients WHERE oauth_client_id = 'app'",
        "UPDATE iam.client_roles SET description = 'reads'",
        "INSERT INTO iam.users (realm_id, username, email) VALUES ('REALM', 'ann', 'ann@example.org'), ('REALM', 'ben', 'ben@example.org'), ('REALM', 'cat', 'cat@example.org'), ('STAGING', 'dan', 'dan@example.org'), ('STAGING', 'eve', 'eve@example.org')",
        "INSERT INTO iam.user_credentials (user_id, realm_id, secret_data) SELECT user_id, realm_id, 'password-hash-value' FROM iam.users WHERE username = 'ann'",
        "UPDATE iam.users SET email = 'ann@corp.example.org' WHERE username = 'ann'",
        "INSERT INTO iam.user_roles (user_id, role_id, realm_id) SELECT u.user_id, r.role_id, u.realm_id FROM iam.users u, iam.roles r WHERE u.username = 'ann' AND r.name = 'admin'",
        "DELETE FROM iam.user_roles",
        "INSERT INTO iam.password_resets (realm_id, user_id, token_hash) SELECT realm_id, user_id, 'reset-token-value' FROM iam.users WHERE username = 'ann'",
        "DELETE FROM iam.user_credentials",
        "DELETE FROM iam.users WHERE username IN ('ben', 'cat')",
        "DELETE FROM iam.users WHERE username = 'ann'",
        "DELETE FROM iam.roles WHERE name = 'viewer'",
        "DELETE FROM iam.clients WHERE oauth_client_id = 'old'",
        "DELETE FROM iam.realms WHERE realm_id = 'STAGING'",
    ];
    for step in steps {
        db.psql(
            &step
                .replace("'REALM'", &format!("'{REALM}'"))
                .replace("'STAGING'", &format!("'{STAGING}'")),
        );
    }
    let events = events_until(&db, "realm.deleted").await;
    let types: BTreeSet<&str> = events.iter().map(|e| e.0.as_str()).collect();
    let missing: Vec<&&str> = IAM_VOCABULARY
        .iter()
        .filter(|t| !types.contains(**t))
        .collect();
    assert!(missing.is_empty(), "missing {missing:?} in {types:?}");
    let extra: Vec<&&str> = types
        .iter()
        .filter(|t| !IAM_VOCABULARY.contains(t) && **t != "user.credentials.created")
        .collect();
    assert!(extra.is_empty(), "unexpected {extra:?}");
    let count = |t: &str| events.iter().filter(|e| e.0 == t).count();
    assert_eq!(
        count("realm.settings.updated"),
        2,
        "the smtp_password rotation is no event"
    );
    assert_eq!(
        count("client.updated"),
        1,
        "the secret rotation is no event"
    );
    assert_eq!(count("role.permission.updated"), 2);

    // bulk deletes: ben and cat in one transaction, dan and eve by the
    // realm's cascade; ann alone is a plain delete
    let bulk: Vec<&(String, String, Value)> = events
        .iter()
        .filter(|e| e.0 == "user.bulk_deleted")
        .collect();
    assert_eq!(bulk.len(), 2, "{bulk:?}");
    for (event, realm, names) in [
        (bulk[0], REALM, ["ben", "cat"]),
        (bulk[1], STAGING, ["dan", "eve"]),
    ] {
        assert_eq!(event.1, format!("/realms/{realm}/users"));
        let payload = &event.2["resourcepayload"];
        assert_eq!(payload["count"], json!(2));
        let listed: Vec<&Value> = payload["deleted"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| &d["resourcepayload"]["user"]["username"])
            .collect();
        assert_eq!(listed, names.map(Value::from).iter().collect::<Vec<_>>());
        let first = &payload["deleted"][0];
        assert!(
            first["apiresource"]
                .as_str()
                .unwrap()
                .starts_with(&format!("/realms/{realm}/users/"))
        );
        assert!(first["revision"].is_i64());
        assert_eq!(event.2["revision"], payload["deleted"][1]["revision"]);
    }
    let deleted: Vec<&Value> = events
        .iter()
        .filter(|e| e.0 == "user.deleted")
        .map(|e| &e.2["resourcepayload"]["user"]["username"])
        .collect();
    assert_eq!(deleted, [&json!("ann")]);
    // the realm's delete cascades to its users: its event, then theirs
    let last: Vec<&str> = events[events.len() - 2..]
        .iter()
        .map(|e| e.0.as_str())
        .collect();
    assert_eq!(last, ["realm.deleted", "user.bulk_deleted"]);

    // user.updated shows what changed and what it was
    let updated = &events.iter().find(|e| e.0 == "user.updated").unwrap().2["resourcepayload"];
    assert_eq!(updated["changed"], json!(["email"]));
    assert_eq!(updated["previous"]["email"], json!("ann@example.org"));
    assert_eq!(updated["user"]["email"], json!("ann@corp.example.org"));
    let created = &events.iter().find(|e| e.0 == "user.created").unwrap().2["resourcepayload"];
    assert_eq!(created["changed"], json!([]));
    assert_eq!(created["previous"]["email"], Value::Null);

    // user-role events name the user and role; reset and credential events exist
    let assigned = events.iter().find(|e| e.0 == "user.role.assigned").unwrap();
    assert!(
        assigned.1.starts_with(&format!("/realms/{REALM}/users/"))
            && assigned.1.contains("/roles/")
    );
    let grant = events
        .iter()
        .rfind(|e| e.0 == "role.permission.updated")
        .unwrap();
    assert_eq!(
        grant.2["resourcepayload"]["permissions"],
        json!(["users:read", "users:write"])
    );
    assert_eq!(
        grant.2["resourcepayload"]["previouspermissions"],
        json!(["users:read"])
    );

    // credential columns are never sent
    let all = db.psql("SELECT string_agg(coalesce(body::text, error), '') FROM walhook.events");
    for secret in [
        "secret-value",
        "secret-rotated",
        "password-hash",
        "reset-token",
        "smtp_password",
        "secret_data",
        "token_hash",
    ] {
        assert!(!all.contains(secret), "{secret} was sent");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn changed_and_old_values_of_insert_update_and_delete() {
    let db = Cluster::shared().new_database();
    migrate(&db.url());
    db.psql(
        "CREATE TABLE accounts (id int PRIMARY KEY, email text, plan text, tags text[], secret text);
         INSERT INTO walhook.routes (source_table, resource, apiresource, payload, exclude_columns)
         VALUES ('accounts', 'account', '/accounts/{id}',
                 '{\"account\": \"{*}\", \"changed\": \"{changed}\", \"was\": {\"email\": \"{old.email}\",
                   \"tags\": \"{old.tags}\"}, \"note\": \"{old.plan} -> {plan}\"}', '{secret}')",
    );
    let _walhook = walhook_streaming(&db);
    db.psql("INSERT INTO accounts VALUES (1, 'a@x', 'free', '{a}', 's1')");
    db.psql("UPDATE accounts SET plan = 'pro', tags = '{a,b}', secret = 's2' WHERE id = 1");
    db.psql("UPDATE accounts SET secret = 's3' WHERE id = 1"); // only excluded: no event
    db.psql("UPDATE accounts SET email = 'b@x' WHERE id = 1");
    db.psql("DELETE FROM accounts WHERE id = 1");
    let events = events_until(&db, "account.deleted").await;
    let got: Vec<(&str, &Value)> = events
        .iter()
        .map(|e| (e.0.as_str(), &e.2["resourcepayload"]))
        .collect();
    assert_eq!(got.len(), 4, "{got:?}");
    let (insert, plan, email, delete) = (got[0].1, got[1].1, got[2].1, got[3].1);
    assert_eq!(got[0].0, "account.created");
    assert_eq!(insert["changed"], json!([]));
    assert_eq!(insert["was"], json!({"email": null, "tags": null}));
    assert_eq!(insert["note"], json!(" -> free"));
    assert_eq!(got[1].0, "account.updated");
    assert_eq!(
        plan["changed"],
        json!(["plan", "tags"]),
        "table order, the excluded secret left out"
    );
    assert_eq!(plan["was"], json!({"email": "a@x", "tags": ["a"]}));
    assert_eq!(plan["note"], json!("free -> pro"));
    assert_eq!(email["changed"], json!(["email"]));
    assert_eq!(email["was"]["email"], json!("a@x"));
    assert_eq!(email["account"]["email"], json!("b@x"));
    assert_eq!(got[3].0, "account.deleted");
    assert_eq!(delete["changed"], json!([]));
    assert_eq!(
        delete["was"],
        json!({"email": "b@x", "tags": ["a", "b"]}),
        "the deleted values"
    );
    let all: String = events.iter().map(|e| e.2.to_string()).collect();
    for secret in ["\"secret\"", "\"s1\"", "\"s2\"", "\"s3\""] {
        assert!(!all.contains(secret), "{secret} sent: {all}");
    }
}

#[test]
fn bad_event_names_and_templates_are_refused_naming_the_problem() {
    let db = Cluster::shared().database();
    migrate(&db.url());
    db.psql("CREATE TABLE grants (id int PRIMARY KEY, name text, secret text)");
    for (column, value, expect) in [
        (
            "event_names",
            r#"{"upsert": "x"}"#,
            "event_names key upsert must be insert, update or delete",
        ),
        (
            "event_names",
            r#"{"insert": ""}"#,
            "event_names value for key insert must be an event suffix",
        ),
        (
            "event_names",
            r#"{"insert": "role.assigned"}"#,
            "event_names value for key insert must be an event suffix",
        ),
        (
            "event_names",
            r#"{"delete": 5}"#,
            "event_names value for key delete must be an event suffix",
        ),
        (
            "event_names",
            r#"{"delete": null}"#,
            "event_names value for key delete must be an event suffix",
        ),
        (
            "event_names",
            r#"["assigned"]"#,
            "event_names must be an object",
        ),
        (
            "bulk_delete_event",
            "bulk deleted",
            "bulk_delete_event must be an event suffix",
        ),
        (
            "payload",
            r#"{"a": "{old.nope}"}"#,
            "payload names unknown column nope",
        ),
        (
            "payload",
            r#"{"a": "{old.secret}"}"#,
            "payload uses excluded column secret",
        ),
        (
            "apiresource",
            "/grants/{changed}",
            "apiresource names unknown column changed",
        ),
    ] {
        let mut values = vec![
            ("apiresource", "/grants/{id}"),
            ("exclude_columns", "{secret}"),
        ];
        values.retain(|(c, _)| *c != column);
        values.push((column, value));
        let sql = format!(
            "INSERT INTO walhook.routes (source_table, resource, {}) VALUES ('grants', 'grant', {})",
            values.iter().map(|v| v.0).collect::<Vec<_>>().join(", "),
            values
                .iter()
                .map(|v| format!("'{}'", v.1))
                .collect::<Vec<_>>()
                .join(", "),
        );
        assert_refused(&db, &sql, expect);
    }
    // the good ones are accepted
    db.psql(
        r#"INSERT INTO walhook.routes (source_table, resource, apiresource, payload, event_names, bulk_delete_event)
           VALUES ('grants', 'user.role', '/grants/{id}',
                   '{"changed": "{changed}", "was": "{old.name}", "label": "{old.name}: {changed}"}',
                   '{"insert": "assigned", "update": "changed", "delete": "unassigned"}', 'bulk_unassigned')"#,
    );
    assert_eq!(
        db.psql("SELECT (event_names->>'insert') || ' ' || bulk_delete_event FROM walhook.routes"),
        "assigned bulk_unassigned"
    );
}
