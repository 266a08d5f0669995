//! "General to event" payloads of the example directory, against the
//! reference shapes (tests/data/directory-events.json), status transitions,
//! the suspension cascade, exclusions and route timing.

use std::time::Duration;

use crate::support::{
    Cluster, TestDb, assert_refused, migrate, no_more_events, stored_events, wait_events,
    walhook_streaming,
};
use serde_json::Value;

const ORG: &str = "79b34d52-125b-4e5a-8b69-db93e737aa78";
const SERVER: &str = "9f347e44-23a0-4e76-917f-87cd05fd9d2f";
const STATEMENT: &str = "81b9a364-05ba-4030-ac21-75a46d3fcdb3";

fn load_directory(db: &TestDb<'_>) {
    migrate(&db.url());
    db.psql_file("sql/examples/directory.sql");
}

/// Same keys everywhere and the same JSON type at every leaf.
fn assert_same_shape(path: &str, got: &Value, want: &Value) {
    match (got, want) {
        (Value::Object(g), Value::Object(w)) => {
            let mut gk: Vec<&String> = g.keys().collect();
            let mut wk: Vec<&String> = w.keys().collect();
            gk.sort();
            wk.sort();
            assert_eq!(gk, wk, "keys at {path}");
            for (k, v) in w {
                assert_same_shape(&format!("{path}.{k}"), &g[k], v);
            }
        }
        (Value::Array(g), Value::Array(w)) => {
            assert_eq!(g.len(), w.len(), "array length at {path}");
            for (i, (a, b)) in g.iter().zip(w).enumerate() {
                assert_same_shape(&format!("{path}[{i}]"), a, b);
            }
        }
        (Value::String(_), Value::String(_))
        | (Value::Bool(_), Value::Bool(_))
        | (Value::Number(_), Value::Number(_)) => {}
        (g, w) => panic!("type at {path}: got {g}, want like {w}"),
    }
}

const SAMPLE: &str = "
INSERT INTO directory.organisations (organisation_id, organisation_name, created_on, legal_entity_name,
    country_of_registration, company_register, size, registration_number, registered_name,
    address_line1, city, postcode, country, logo_uri, flags)
VALUES ('ORG', 'east credit union', '2024-03-06 11:57:06.407+00', 'east credit union', 'uk',
    'central bank', 's3', '983456', 'east credit union', 'rua general pereira da silva 181',
    'rio de janeiro', '24220-030', 'br', 'https://web.sandbox.example/logos/placeholder-logo.png',
    '[{\"name\": \"rpf 6211 data admin\", \"type\": \"organisation\", \"value\": \"rpf 6211 data admin\", \"status\": \"active\", \"accesslevel\": 400, \"id\": \"c9b243e6-a424-486b-b3a2-beaaf2ba550d\", \"createdat\": \"2024-12-10T18:41:06Z\", \"updatedat\": \"2024-12-10T18:41:06Z\"}]');
INSERT INTO directory.authorisation_servers (authorisation_server_id, organisation_id,
    auto_registration_notification_webhook, auto_registration_supported, customer_friendly_description,
    customer_friendly_logo_uri, customer_friendly_name, developer_portal_uri, issuer,
    openid_discovery_document, terms_of_service_uri, flags)
VALUES ('SERVER', 'ORG', 'https://webhook.example/7853d4fb', true, 'sample server',
    'https://web.sandbox.example/logos/placeholder-logo.png', 'east credit union sample authorization server',
    'https://east-credit-union.example/devs/', 'https://auth.sandbox.example',
    'https://auth.sandbox.example/.well-known/openid-configuration', 'https://east-credit-union.example/tncs',
    '[{\"name\": \"a\", \"type\": \"authorisation server\", \"value\": \"a\", \"status\": \"active\", \"accesslevel\": 0, \"id\": \"774098dc-550c-4b5d-b557-5cfd4350727e\", \"createdat\": \"2024-10-17T23:29:34Z\", \"updatedat\": \"2024-10-17T23:29:34Z\"}]');
INSERT INTO directory.software_statements (software_statement_id, organisation_id, client_id, client_name,
    description, environment, mode, rts_client_created, policy_uri, client_uri, logo_uri, redirect_uri,
    terms_of_service_uri, version, locked, additional_software_metadata, require_signed_request_object,
    id_token_signed_response_algorithm, token_endpoint_auth_method, tls_client_certificate_bound_access_tokens,
    client_secret)
VALUES ('STATEMENT', 'ORG', 'STATEMENT', 'east credit union', 'asd', 'sandbox', 'live', true,
    'https://www.east-credit-union.example/policy', 'https://www.east-credit-union.example/',
    'https://www.east-credit-union.example/logo.png', '{https://www.east-credit-union.example/app/}',
    'https://www.east-credit-union.example/tc', 1.30, true, '{}', true, 'PS256', 'tls_client_auth', true,
    'super-secret-value');
INSERT INTO directory.certificates (software_statement_id, organisation_id, kid)
SELECT 'STATEMENT', 'ORG', 'kid-' || i FROM generate_series(1, 3) i;
";

fn sample() -> String {
    SAMPLE
        .replace("'ORG'", &format!("'{ORG}'"))
        .replace("'SERVER'", &format!("'{SERVER}'"))
        .replace("'STATEMENT'", &format!("'{STATEMENT}'"))
}

#[tokio::test(flavor = "multi_thread")]
async fn reference_payloads_cascade_and_status_transitions() {
    let db = Cluster::shared().new_database();
    load_directory(&db);
    let _walhook = walhook_streaming(&db);
    db.psql(&sample());
    db.psql(&format!(
        "UPDATE directory.organisations SET city = 'niteroi' WHERE organisation_id = '{ORG}'"
    ));
    db.psql(&format!(
        "BEGIN;
         UPDATE directory.software_statements SET status = 'suspended' WHERE software_statement_id = '{STATEMENT}';
         UPDATE directory.certificates SET status = 'disabled' WHERE software_statement_id = '{STATEMENT}';
         COMMIT;"
    ));
    db.psql(&format!("UPDATE directory.software_statements SET status = 'active' WHERE software_statement_id = '{STATEMENT}'"));
    db.psql(&format!("UPDATE directory.software_statements SET status = 'blocked' WHERE software_statement_id = '{STATEMENT}'"));
    db.psql(&format!("UPDATE directory.software_statements SET status = 'active' WHERE software_statement_id = '{STATEMENT}'"));
    db.psql(&format!("UPDATE directory.software_statements SET client_secret = 'rotated' WHERE software_statement_id = '{STATEMENT}'"));
    let events = wait_events(&db, 14).await;
    no_more_events(&db, 14, Duration::from_millis(500)).await;
    let events_now = stored_events(&db).await;
    let types: Vec<&str> = events_now.iter().map(|e| e.0.as_str()).collect();
    assert_eq!(
        types,
        [
            "organisation.created",
            "authorisation_server.created",
            "software_statement.created",
            "certificate.created",
            "certificate.created",
            "certificate.created",
            "organisation.updated",
            "software_statement.suspended",
            "certificate.disabled",
            "certificate.disabled",
            "certificate.disabled",
            "software_statement.suspension_lifted",
            "software_statement.blocked",
            "software_statement.unblocked",
        ],
        "the client_secret-only update yields no event"
    );
    let reference: Value =
        serde_json::from_str(include_str!("../data/directory-events.json")).unwrap();
    let by_type = |t: &str| events.iter().find(|e| e.0 == t).unwrap();
    for (kind, idx) in [
        ("authorisation_server.created", 1),
        ("organisation.updated", 6),
        ("software_statement.suspended", 7),
    ] {
        let (_, apiresource, body) = &events[idx];
        assert_eq!(&events[idx].0, kind);
        let want = &reference[kind];
        assert_eq!(
            apiresource,
            want["apiresource"]
                .as_str()
                .unwrap()
                .replace("9f347e44-23a0-4e76-917f-87cd05fd9d2f", SERVER)
                .as_str()
        );
        assert_eq!(&body["apiresource"], &want["apiresource"]);
        assert_same_shape(kind, body, want);
        assert_eq!(
            body["revision"],
            body["resourcepayload"]
                .pointer("/organisationdetails/revision")
                .or_else(|| body["resourcepayload"].pointer("/authorisationservers/0/revision"))
                .or_else(|| body["resourcepayload"].pointer(&format!(
                    "/softwarestatements/{STATEMENT}/softwaredetails/revision"
                )))
                .cloned()
                .unwrap(),
            "{kind}: top-level revision is the row's"
        );
    }
    let suspended = &by_type("software_statement.suspended").2;
    let details = &suspended["resourcepayload"]["softwarestatements"][STATEMENT]["softwaredetails"];
    assert_eq!(details["status"], "suspended");
    assert_eq!(details["version"], 1.3);
    assert_eq!(
        details["redirecturi"][0],
        "https://www.east-credit-union.example/app/"
    );
    // the cascade: four events, each its own apiresource, one updatetimestamp
    let cascade = &events[7..11];
    let stamps: std::collections::HashSet<&Value> =
        cascade.iter().map(|e| &e.2["updatetimestamp"]).collect();
    assert_eq!(stamps.len(), 1);
    let resources: std::collections::HashSet<&String> = cascade.iter().map(|e| &e.1).collect();
    assert_eq!(resources.len(), 4);
    // revisions of one resource grow
    let revs: Vec<i64> = events
        .iter()
        .filter(|e| e.1.ends_with(STATEMENT))
        .map(|e| e.2["revision"].as_i64().unwrap())
        .collect();
    assert!(revs.windows(2).all(|w| w[0] < w[1]), "{revs:?}");
    // exclude_columns: the secret is nowhere
    let all: String = db.psql("SELECT string_agg(body::text, '') FROM walhook.events");
    assert!(
        !all.contains("super-secret-value")
            && !all.contains("rotated")
            && !all.contains("client_secret")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn routes_take_effect_at_their_commit_position() {
    let db = Cluster::shared().new_database();
    migrate(&db.url());
    db.psql("CREATE TABLE things (id int PRIMARY KEY)");
    let _walhook = walhook_streaming(&db);
    db.psql("INSERT INTO things VALUES (1)");
    db.psql(
        "BEGIN; INSERT INTO things VALUES (2);
         INSERT INTO walhook.routes (source_table, resource, apiresource) VALUES ('things', 'thing', '/things/{id}');
         INSERT INTO things VALUES (3); COMMIT;",
    );
    db.psql("INSERT INTO things VALUES (4)");
    db.psql("UPDATE walhook.routes SET enabled = false");
    db.psql("INSERT INTO things VALUES (5)");
    db.psql("UPDATE walhook.routes SET enabled = true");
    db.psql("INSERT INTO things VALUES (6)");
    let events = wait_events(&db, 2).await;
    no_more_events(&db, 2, Duration::from_millis(800)).await;
    let events_now = stored_events(&db).await;
    let resources: Vec<&str> = events_now.iter().map(|e| e.1.as_str()).collect();
    assert_eq!(resources, ["/things/4", "/things/6"], "{events:?}");
}

#[test]
fn bad_routes_are_refused_naming_the_problem() {
    let db = Cluster::shared().database();
    migrate(&db.url());
    db.psql("CREATE TABLE apps (id int PRIMARY KEY, name text, client_secret text)");
    for (cols, vals, expect) in [
        (
            "apiresource",
            "'/apps/{nope}'",
            "apiresource names unknown column nope",
        ),
        ("apiresource", "'/apps/{id'", "unclosed '{' at position 6"),
        (
            "apiresource, payload",
            "'/apps/{id}', '{\"a\": \"{name}}\"}'",
            "unmatched '}' at position 6",
        ),
        (
            "apiresource, payload",
            "'/apps/{id}', '{\"{missing}\": 1}'",
            "payload names unknown column missing",
        ),
        (
            "apiresource, exclude_columns",
            "'/apps/{client_secret}', '{client_secret}'",
            "apiresource uses excluded column client_secret",
        ),
        (
            "apiresource, payload, exclude_columns",
            "'/apps/{id}', '{\"s\": \"{client_secret}\"}', '{client_secret}'",
            "payload uses excluded column client_secret",
        ),
        (
            "apiresource, revision_column",
            "'/apps/{id}', 'rev'",
            "revision_column names unknown column rev",
        ),
        (
            "apiresource, status_column, status_events",
            "'/apps/{id}', 'name', '{\"a->b->c\": \"x\"}'",
            "must be new or old->new",
        ),
    ] {
        assert_refused(
            &db,
            &format!(
                "INSERT INTO walhook.routes (source_table, resource, {cols}) VALUES ('apps', 'app', {vals})"
            ),
            expect,
        );
    }
    assert_refused(
        &db,
        "INSERT INTO walhook.routes (source_table, resource, apiresource) VALUES ('nosuch', 'x', '/x')",
        "nosuch",
    );
    // a good route publishes the table with REPLICA IDENTITY FULL; removing it unpublishes
    db.psql("SELECT walhook.register_publication('pub_check')");
    db.psql("INSERT INTO walhook.routes (source_table, resource, apiresource) VALUES ('apps', 'app', '/apps/{id}')");
    assert_eq!(
        db.psql("SELECT relreplident FROM pg_class WHERE oid = 'apps'::regclass"),
        "f"
    );
    assert_eq!(db.psql("SELECT count(*) FROM pg_publication_tables WHERE pubname = 'pub_check' AND tablename = 'apps'"), "1");
    assert_eq!(db.psql("SELECT count(*) FROM pg_publication_tables WHERE pubname = 'pub_check' AND schemaname = 'walhook' AND tablename NOT IN ('routes', 'subscriptions', 'subscription_health')"), "0");
    db.psql("DELETE FROM walhook.routes");
    assert_eq!(db.psql("SELECT count(*) FROM pg_publication_tables WHERE pubname = 'pub_check' AND tablename = 'apps'"), "0");
}
