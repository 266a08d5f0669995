//! `walhook.routes` and `walhook.subscriptions` as the mapper needs them at
//! start-up (afterwards their changes reach the mapper through the stream), and
//! the publication those routes keep in step. The publication also holds
//! `walhook.subscription_health`, whose state transitions become the
//! operational `webhook.*` events (`mapping::health`).
//!
//! Keeping the publication in step takes privileges a least-privilege role may
//! lack (docs/least-privilege.md): `CREATE` on the database for the publication,
//! ownership of the publication, of `walhook.routes`, `walhook.subscriptions`
//! and `walhook.subscription_health`,
//! and of every routed table (`ALTER TABLE ... REPLICA IDENTITY FULL` and
//! `ALTER PUBLICATION ... ADD TABLE` are for owners, or members of the owner's
//! role). When registering fails for want of one, [`register_publication`]
//! answers with an error naming each one missing and the statement that grants it.

use tokio_postgres::Client;
use tokio_postgres::error::SqlState;

use crate::mapping::Mapper;
use crate::mapping::routes::Route;
use crate::mapping::subscriptions::SubscriptionFilter;
use crate::replication::change::Row;

/// A mapper holding the configuration as it stands in the database now.
pub async fn load_mapper(client: &Client) -> Result<Mapper, tokio_postgres::Error> {
    let mut routes = Vec::new();
    for row in json_rows(client, "SELECT row_to_json(r)::text FROM walhook.routes r").await? {
        match Route::from_row(&row) {
            Ok(route) => routes.push(route),
            Err(error) => tracing::error!(%error, "ignoring unusable route"),
        }
    }
    let subscriptions = json_rows(
        client,
        "SELECT json_build_object('id', id, 'events', events, 'disabled', disabled,
                                 'filter', filter::text)::text
           FROM walhook.subscriptions",
    )
    .await?
    .iter()
    .filter_map(SubscriptionFilter::from_row)
    .collect();
    Ok(Mapper::new(routes, subscriptions))
}

/// Register the publication walhook streams from: the database keeps its
/// tables in step with `walhook.routes` from now on.
pub async fn register_publication(
    client: &Client,
    publication: &str,
) -> Result<(), tokio_postgres::Error> {
    let Err(error) = client
        .execute("SELECT walhook.register_publication($1)", &[&publication])
        .await
    else {
        return Ok(());
    };
    if error.code() != Some(&SqlState::INSUFFICIENT_PRIVILEGE) {
        return Err(error);
    }
    // PostgreSQL says "must be owner of table items"; say which privileges are
    // missing, all of them, and how to grant them. The diagnosis raises its
    // own 42501 error, carried as the driver's error like the original; when
    // it finds nothing, the original error stands.
    match client
        .execute(
            "SELECT set_config('walhook.diagnosed_publication', $1, false)",
            &[&publication],
        )
        .await
    {
        Ok(_) => match client.batch_execute(DIAGNOSE_PRIVILEGES).await {
            Ok(()) => Err(error),
            Err(diagnosis) => Err(diagnosis),
        },
        Err(_) => Err(error),
    }
}

/// Which privileges registering the publication
/// (`current_setting('walhook.diagnosed_publication')`) needs and
/// `current_user` lacks; raises `insufficient_privilege` naming them, with the
/// statements that grant them as its hint. Ownership counts through membership
/// of the owner's role (`pg_has_role(..., 'USAGE')`), as PostgreSQL's own
/// ownership checks do.
const DIAGNOSE_PRIVILEGES: &str = r#"
DO $walhook$
DECLARE
    pub text := current_setting('walhook.diagnosed_publication');
    pub_oid oid := (SELECT oid FROM pg_publication WHERE pubname = pub);
    missing text[] := '{}';
    grants text[] := '{}';
    r record;
BEGIN
    IF pub_oid IS NULL AND NOT has_database_privilege(current_database(), 'CREATE') THEN
        missing := missing || format('CREATE on database %I (to create publication %I)',
                                     current_database(), pub);
        grants := grants || format('GRANT CREATE ON DATABASE %I TO %I',
                                   current_database(), current_user);
    END IF;
    IF pub_oid IS NOT NULL
       AND NOT pg_has_role((SELECT pubowner FROM pg_publication WHERE oid = pub_oid), 'USAGE') THEN
        missing := missing || format('ownership of publication %I (owned by %I)', pub,
            (SELECT pg_get_userbyid(pubowner) FROM pg_publication WHERE oid = pub_oid));
        grants := grants || format('ALTER PUBLICATION %I OWNER TO %I', pub, current_user);
    END IF;
    IF NOT has_table_privilege('walhook.publications', 'INSERT') THEN
        missing := missing || 'INSERT on walhook.publications'::text;
        grants := grants || format('run walhook as the role that ran walhook migrate (%I owns walhook.publications)',
            (SELECT pg_get_userbyid(relowner) FROM pg_class WHERE oid = 'walhook.publications'::regclass));
    END IF;
    FOR r IN
        SELECT c.oid::regclass AS tbl, pg_get_userbyid(c.relowner) AS owner,
               c.relreplident <> 'f' AS needs_identity,
               (SELECT rolsuper FROM pg_roles WHERE oid = c.relowner) AS superuser_owned
          FROM pg_class c
         WHERE (c.oid IN (SELECT source_table FROM walhook.routes)
                OR c.oid = 'walhook.subscription_health'::regclass
                OR (pub_oid IS NULL AND c.oid IN ('walhook.routes'::regclass,
                                                  'walhook.subscriptions'::regclass)))
           AND NOT pg_has_role(c.relowner, 'USAGE')
           AND (c.relreplident <> 'f' OR pub_oid IS NULL
                OR NOT EXISTS (SELECT 1 FROM pg_publication_rel pr
                                WHERE pr.prpubid = pub_oid AND pr.prrelid = c.oid))
         ORDER BY c.oid::regclass::text
    LOOP
        missing := missing || format('ownership of table %s (owned by %I; needed for %s)', r.tbl, r.owner,
            CASE WHEN r.needs_identity
                 THEN format('REPLICA IDENTITY FULL and ALTER PUBLICATION %I ADD TABLE', pub)
                 ELSE format('ALTER PUBLICATION %I ADD TABLE', pub) END);
        IF r.superuser_owned THEN
            -- membership of a superuser role would give away far more
            grants := grants || format('ALTER TABLE %s OWNER TO <the application''s owner role>, then GRANT that role TO %I',
                                       r.tbl, current_user);
        ELSIF NOT format('GRANT %I TO %I', r.owner, current_user) = ANY (grants) THEN
            grants := grants || format('GRANT %I TO %I', r.owner, current_user);
        END IF;
    END LOOP;
    IF cardinality(missing) > 0 THEN
        RAISE EXCEPTION USING
            ERRCODE = 'insufficient_privilege',
            MESSAGE = format('role %I lacks privileges walhook needs to keep publication %I in step with walhook.routes: %s',
                             current_user, pub, array_to_string(missing, '; ')),
            HINT = format('as an administrator: %s; see docs/least-privilege.md',
                          array_to_string(grants, '; '));
    END IF;
END
$walhook$
"#;

/// Rows of a query returning one JSON object per row, as decoded rows.
async fn json_rows(client: &Client, sql: &str) -> Result<Vec<Row>, tokio_postgres::Error> {
    Ok(client
        .query(sql, &[])
        .await?
        .iter()
        .filter_map(|r| r.try_get::<_, String>(0).ok())
        .filter_map(|t| serde_json::from_str::<Row>(&t).ok())
        .collect())
}
