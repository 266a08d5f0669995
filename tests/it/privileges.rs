//! walhook as a role that is not superuser, with the statements of
//! docs/least-privilege.md: `LOGIN REPLICATION`, `CREATE` on the database (for
//! the walhook schema and the publication), membership of the role owning the
//! routed tables (for `REPLICA IDENTITY FULL` and the publication), or instead
//! of that membership an administrator preparing each routed table. And what
//! walhook says when one of those is missing: the privilege, and the statement
//! that grants it.

use std::time::Duration;

use walhook::delivery::verifier::Verifier;

use crate::support::cluster::{psql_url, try_psql_url};
use crate::support::{Cluster, Receiver, TestDb, wait_until, walhook, walhook_run};

const WAIT: Duration = Duration::from_secs(60);

/// Roles of one test (cluster-wide, so named after its database), dropped
/// after the database: declare it before the [`TestDb`].
struct Roles {
    cluster: &'static Cluster,
    /// The application's owner role: owns the routed tables.
    app: String,
    /// The role walhook runs as.
    walhook: String,
}

impl Roles {
    /// `app` (LOGIN, may create tables in `public`) owning a table `items`,
    /// and `walhook` (LOGIN, and `walhook_attributes`) with nothing granted.
    fn create(db: &TestDb<'_>, walhook_attributes: &str) -> Roles {
        let roles = Roles {
            cluster: Cluster::shared(),
            app: format!("{}_app", db.name),
            walhook: format!("{}_walhook", db.name),
        };
        db.psql(&format!(
            "CREATE ROLE {app} LOGIN;
             CREATE ROLE {walhook} LOGIN {walhook_attributes};
             GRANT CREATE ON SCHEMA public TO {app};",
            app = roles.app,
            walhook = roles.walhook,
        ));
        psql_url(
            &roles.url(db, &roles.app),
            "CREATE TABLE items (id int PRIMARY KEY, name text NOT NULL)",
        );
        roles
    }

    /// `db`'s URL for `role`.
    fn url(&self, db: &TestDb<'_>, role: &str) -> String {
        db.url().replacen("postgres@", &format!("{role}@"), 1)
    }
}

impl Drop for Roles {
    fn drop(&mut self) {
        let _ = self.cluster.try_psql(
            "postgres",
            &format!("DROP ROLE IF EXISTS {}, {}", self.walhook, self.app),
        );
    }
}

/// `walhook migrate` as `url`'s role, asserting success.
fn migrate_as(url: &str) {
    let (status, out, err) = walhook(&["migrate", "--database-url", url]);
    assert!(status.success(), "walhook migrate: {out}\n{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn walhook_runs_end_to_end_as_a_role_that_is_not_superuser() {
    let db = Cluster::shared().new_database();
    let roles = Roles::create(&db, "REPLICATION");
    // docs/least-privilege.md, as an administrator
    db.psql(&format!(
        "GRANT CREATE ON DATABASE {db} TO {walhook};
         GRANT {app} TO {walhook};",
        db = db.name,
        app = roles.app,
        walhook = roles.walhook,
    ));
    let as_walhook = roles.url(&db, &roles.walhook);
    let as_app = roles.url(&db, &roles.app);
    migrate_as(&as_walhook);
    // routes and subscriptions managed as walhook's role
    let receiver = Receiver::start().await;
    psql_url(
        &as_walhook,
        "INSERT INTO walhook.settings VALUES ('allow_insecure_targets', 'true');
         INSERT INTO walhook.routes (source_table, resource, apiresource)
              VALUES ('items', 'item', '/items/{id}');",
    );
    psql_url(
        &as_walhook,
        &format!(
            "INSERT INTO walhook.subscriptions (url, retry_schedule)
             VALUES ('{}', '{{10ms,10ms,10ms}}')",
            receiver.url()
        ),
    );
    let daemon = walhook_run(&as_walhook, &db.slot, &db.publication, &[]);
    daemon.wait_for_log("streaming", WAIT);

    // the application writes as its own role; a signed delivery arrives
    psql_url(&as_app, "INSERT INTO items VALUES (1, 'one')");
    wait_until(WAIT, "a delivery at the receiver", || async {
        (receiver.count() >= 1).then_some(())
    })
    .await;
    let request = &receiver.received()[0];
    assert_eq!(request.json()["apiresource"], "/items/1");
    let secret = db.psql("SELECT secret FROM walhook.subscriptions");
    let jwks = format!(
        "http://{}/.well-known/jwks.json",
        daemon.http_addr.as_ref().unwrap()
    );
    let header = |name: &str| request.header(name);
    Verifier::new(secret, jwks)
        .verify("POST", &receiver.url(), &header, &request.body)
        .await
        .expect("v1, v1a and RFC 9421 signatures verify");

    // nothing ran as a superuser, and walhook's objects belong to its role
    let facts = db.psql(&format!(
        "SELECT r.rolsuper, r.rolreplication,
                pg_get_userbyid((SELECT nspowner FROM pg_namespace WHERE nspname = 'walhook')),
                pg_get_userbyid((SELECT pubowner FROM pg_publication WHERE pubname = '{pub}')),
                (SELECT relreplident FROM pg_class WHERE oid = 'items'::regclass),
                (SELECT count(*) FROM pg_stat_replication WHERE usename = r.rolname)
           FROM pg_roles r WHERE r.rolname = '{walhook}'",
        pub = db.publication,
        walhook = roles.walhook,
    ));
    let w = &roles.walhook;
    assert_eq!(facts, format!("f|t|{w}|{w}|f|1"), "{}", daemon.log());
    // walhook status works as the role too (slot, lag, deliveries)
    let (status, out, err) =
        walhook(&["status", "--database-url", &as_walhook, "--slot", &db.slot]);
    assert!(status.success(), "walhook status: {out}\n{err}");
    for refused in ["permission denied", "must be owner", "must be superuser"] {
        assert!(!daemon.log().contains(refused), "{}", daemon.log());
    }
}

/// Wait until one event of type `event_type` is stored.
async fn event_stored(db: &TestDb<'_>, event_type: &str) {
    let sql = format!("SELECT count(*) FROM walhook.events WHERE type = '{event_type}'");
    wait_until(WAIT, &format!("a {event_type} event stored"), || async {
        (db.psql(&sql) == "1").then_some(())
    })
    .await;
}

/// Run walhook as `url`'s role until it exits; its log.
fn run_until_it_stops(db: &TestDb<'_>, url: &str) -> String {
    let mut daemon = walhook_run(url, &db.slot, &db.publication, &[]);
    let status = daemon.wait_exit(WAIT).expect("walhook stops");
    assert!(!status.success(), "{}", daemon.log());
    daemon.log()
}

/// The statements of an error's "as an administrator: ...; see ..." hint.
fn statements_of(log: &str) -> Vec<String> {
    let hint = log
        .lines()
        .rev()
        .find_map(|line| line.split_once("as an administrator: ").map(|(_, h)| h))
        .unwrap_or_else(|| panic!("no hint in\n{log}"));
    let end = hint
        .find("; see docs/least-privilege.md")
        .unwrap_or(hint.len());
    let hint = hint[..end]
        .split(" (on Amazon RDS")
        .next()
        .unwrap_or_default();
    hint.split("; ").map(str::to_owned).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn each_missing_privilege_is_named_with_the_statement_that_grants_it() {
    let db = Cluster::shared().new_database();
    let roles = Roles::create(&db, "NOREPLICATION");
    let as_walhook = roles.url(&db, &roles.walhook);
    // CREATE on the database for `walhook migrate`, taken back afterwards
    let grant_create = format!("GRANT CREATE ON DATABASE {} TO {}", db.name, roles.walhook);
    db.psql(&grant_create);
    migrate_as(&as_walhook);
    db.psql(&format!(
        "REVOKE CREATE ON DATABASE {} FROM {}",
        db.name, roles.walhook
    ));
    // an administrator adds the route (a superuser may: the table gets
    // REPLICA IDENTITY FULL), but walhook's role does not own `items`
    db.psql(
        "INSERT INTO walhook.routes (source_table, resource, apiresource)
              VALUES ('items', 'item', '/items/{id}')",
    );

    // 1. no CREATE on the database, not a member of the table's owner
    let log = run_until_it_stops(&db, &as_walhook);
    for needed in [
        format!(
            "role {} lacks privileges walhook needs to keep publication {}",
            roles.walhook, db.publication
        ),
        format!("CREATE on database {}", db.name),
        format!("ownership of table items (owned by {}", roles.app),
        format!("ALTER PUBLICATION {} ADD TABLE", db.publication),
        format!("GRANT CREATE ON DATABASE {} TO {}", db.name, roles.walhook),
        format!("GRANT {} TO {}", roles.app, roles.walhook),
    ] {
        assert!(log.contains(&needed), "{needed:?} missing from\n{log}");
    }
    assert!(!log.contains("reconnecting"), "a fatal error: {log}");
    let grants = statements_of(&log);
    assert_eq!(grants.len(), 2, "{grants:?}");
    for statement in &grants {
        db.psql(statement);
    }

    // 2. the publication is registered now; the replication connection needs
    // the REPLICATION attribute
    let log = run_until_it_stops(&db, &as_walhook);
    assert!(
        log.contains(&format!(
            "role {} lacks the REPLICATION attribute",
            roles.walhook
        )) && log.contains(&format!("ALTER ROLE \"{}\" REPLICATION", roles.walhook)),
        "{log}"
    );
    assert!(!log.contains("reconnecting"), "a fatal error: {log}");
    for statement in statements_of(&log) {
        db.psql(&statement);
    }

    // 3. with what the messages said granted, walhook streams
    let daemon = walhook_run(&as_walhook, &db.slot, &db.publication, &[]);
    daemon.wait_for_log("streaming", WAIT);
    psql_url(
        &roles.url(&db, &roles.app),
        "INSERT INTO items VALUES (1, 'one')",
    );
    event_stored(&db, "item.created").await;
    // a route added while walhook runs, as its role: the publication follows
    // through the membership of the owner's role
    let as_app = roles.url(&db, &roles.app);
    psql_url(&as_app, "CREATE TABLE other (id int PRIMARY KEY)");
    psql_url(
        &as_walhook,
        "INSERT INTO walhook.routes (source_table, resource, apiresource)
              VALUES ('other', 'other', '/other/{id}')",
    );
    psql_url(&as_app, "INSERT INTO other VALUES (1)");
    event_stored(&db, "other.created").await;
    assert!(!daemon.log().contains("must be owner"), "{}", daemon.log());
}

#[tokio::test(flavor = "multi_thread")]
async fn without_membership_an_administrator_prepares_each_routed_table() {
    let db = Cluster::shared().new_database();
    let roles = Roles::create(&db, "REPLICATION");
    let as_walhook = roles.url(&db, &roles.walhook);
    db.psql(&format!(
        "GRANT CREATE ON DATABASE {} TO {}",
        db.name, roles.walhook
    ));
    migrate_as(&as_walhook);
    // walhook creates its publication (no routes yet)
    let daemon = walhook_run(&as_walhook, &db.slot, &db.publication, &[]);
    daemon.wait_for_log("streaming", WAIT);
    // docs/least-privilege.md, the variant without membership: per table, as
    // an administrator, then the route as walhook's role
    db.psql(&format!(
        "ALTER TABLE items REPLICA IDENTITY FULL;
         ALTER PUBLICATION {pub} ADD TABLE items;
         GRANT SELECT ON items TO {walhook};",
        pub = db.publication,
        walhook = roles.walhook,
    ));
    psql_url(
        &as_walhook,
        "INSERT INTO walhook.routes (source_table, resource, apiresource)
              VALUES ('items', 'item', '/items/{id}')",
    );
    psql_url(
        &roles.url(&db, &roles.app),
        "INSERT INTO items VALUES (1, 'one')",
    );
    event_stored(&db, "item.created").await;
    // a table not prepared is refused when its route is written, by PostgreSQL
    psql_url(
        &roles.url(&db, &roles.app),
        "CREATE TABLE other (id int PRIMARY KEY)",
    );
    let refused = try_psql_url(
        &as_walhook,
        "INSERT INTO walhook.routes (source_table, resource, apiresource)
              VALUES ('other', 'other', '/other/{id}')",
    )
    .expect_err("walhook's role does not own other");
    assert!(
        refused.contains("must be owner of table other"),
        "{refused}"
    );
    // a restart re-registers the publication without needing ownership
    drop(daemon);
    let daemon = walhook_run(&as_walhook, &db.slot, &db.publication, &[]);
    daemon.wait_for_log("streaming", WAIT);
    assert!(!daemon.log().contains("must be owner"), "{}", daemon.log());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_publication_someone_else_created_is_named_with_its_owner() {
    let db = Cluster::shared().new_database();
    let roles = Roles::create(&db, "REPLICATION");
    let as_walhook = roles.url(&db, &roles.walhook);
    db.psql(&format!(
        "GRANT CREATE ON DATABASE {db} TO {walhook};
         GRANT {app} TO {walhook};
         CREATE TABLE owned_by_superuser (id int PRIMARY KEY);",
        db = db.name,
        app = roles.app,
        walhook = roles.walhook,
    ));
    migrate_as(&as_walhook);
    // a superuser created walhook's publication, and routed a table of its own
    db.psql(&format!(
        "CREATE PUBLICATION {pub} FOR TABLE walhook.routes, walhook.subscriptions;
         INSERT INTO walhook.routes (source_table, resource, apiresource)
              VALUES ('items', 'item', '/items/{{id}}'),
                     ('owned_by_superuser', 'other', '/other/{{id}}');",
        pub = db.publication,
    ));
    let log = run_until_it_stops(&db, &as_walhook);
    for needed in [
        format!(
            "ownership of publication {} (owned by postgres)",
            db.publication
        ),
        format!(
            "ALTER PUBLICATION {} OWNER TO {}",
            db.publication, roles.walhook
        ),
        "ownership of table owned_by_superuser (owned by postgres".to_owned(),
        format!(
            "ALTER TABLE owned_by_superuser OWNER TO <the application's owner role>, then GRANT that role TO {}",
            roles.walhook
        ),
    ] {
        assert!(log.contains(&needed), "{needed:?} missing from\n{log}");
    }
    // membership of a superuser role is never suggested
    assert!(
        !log.contains(&format!("GRANT postgres TO {}", roles.walhook)),
        "{log}"
    );
    // items is not named: walhook's role is a member of its owner
    assert!(!log.contains("ownership of table items"), "{log}");
    db.psql(&format!(
        "ALTER PUBLICATION {} OWNER TO {};
         ALTER TABLE owned_by_superuser OWNER TO {};",
        db.publication, roles.walhook, roles.app
    ));
    let daemon = walhook_run(&as_walhook, &db.slot, &db.publication, &[]);
    daemon.wait_for_log("streaming", WAIT);
}
