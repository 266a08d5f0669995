//! The IAM sample: every event name of the IAM example's vocabulary, in the
//! order an IAM server's life would produce them.

use super::{Sample, SampleStep};

pub const IAM: Sample = Sample {
    file: "sql/examples/iam.sql",
    schema: include_str!("../../../sql/examples/iam.sql"),
    what: "example IAM schema and its routes",
    steps: STEPS,
    hints: &[
        "INSERT INTO iam.users (realm_id, username, email) SELECT 'c970b9a9-9c52-4c30-8191-9b1fc3fabdb0', 'user' || i, 'user' || i || '@acme.example' FROM generate_series(1, 3) i;",
        "UPDATE iam.users SET email = 'first@acme.example' WHERE username = 'user1';   -- user.updated, changed: [\"email\"]",
        "DELETE FROM iam.users WHERE username LIKE 'user%';                          -- one user.bulk_deleted",
    ],
};

/// Realm `acme` (kept) and `staging` (deleted at the end).
const STEPS: &[SampleStep] = &[
    SampleStep {
        what: "a realm is created with its settings",
        sql: "BEGIN;
              INSERT INTO iam.realms (realm_id, name, display_name)
              VALUES ('c970b9a9-9c52-4c30-8191-9b1fc3fabdb0', 'acme', 'Acme');
              INSERT INTO iam.realm_settings (realm_id, password_policy, smtp_host, smtp_password)
              VALUES ('c970b9a9-9c52-4c30-8191-9b1fc3fabdb0', 'length(12)', 'smtp.acme.example', 'never-sent');
              COMMIT",
        events: &["realm.created", "realm.settings.updated"],
    },
    SampleStep {
        what: "and a staging realm",
        sql: "INSERT INTO iam.realms (realm_id, name)
              VALUES ('e0006a01-a428-4af7-8bcc-ad997fc6ac0c', 'staging')",
        events: &["realm.created"],
    },
    SampleStep {
        what: "the realm is renamed",
        sql: "UPDATE iam.realms SET display_name = 'Acme Corporation'
               WHERE realm_id = 'c970b9a9-9c52-4c30-8191-9b1fc3fabdb0'",
        events: &["realm.updated"],
    },
    SampleStep {
        what: "self-registration is turned on",
        sql: "UPDATE iam.realm_settings SET registration_allowed = true
               WHERE realm_id = 'c970b9a9-9c52-4c30-8191-9b1fc3fabdb0'",
        events: &["realm.settings.updated"],
    },
    SampleStep {
        what: "two roles; the admin role may read users",
        sql: "BEGIN;
              INSERT INTO iam.roles (role_id, realm_id, name) VALUES
                  ('0964130a-c250-43b4-a66d-ca6243c51cb2', 'c970b9a9-9c52-4c30-8191-9b1fc3fabdb0', 'admin'),
                  ('623cf69a-4e30-479b-840c-b74b5c0f16b2', 'c970b9a9-9c52-4c30-8191-9b1fc3fabdb0', 'viewer');
              INSERT INTO iam.role_permissions (role_id, realm_id, permissions)
              VALUES ('0964130a-c250-43b4-a66d-ca6243c51cb2', 'c970b9a9-9c52-4c30-8191-9b1fc3fabdb0', '{users:read}');
              COMMIT",
        events: &["role.created", "role.created", "role.permission.updated"],
    },
    SampleStep {
        what: "the admin role is described and may now write users",
        sql: "BEGIN;
              UPDATE iam.roles SET description = 'realm administrators'
               WHERE role_id = '0964130a-c250-43b4-a66d-ca6243c51cb2';
              UPDATE iam.role_permissions SET permissions = permissions || '{users:write}'
               WHERE role_id = '0964130a-c250-43b4-a66d-ca6243c51cb2';
              COMMIT",
        events: &["role.updated", "role.permission.updated"],
    },
    SampleStep {
        what: "a client with a redirect URI and a client role, and a legacy client",
        sql: "BEGIN;
              INSERT INTO iam.clients (client_id, realm_id, oauth_client_id, name, secret) VALUES
                  ('ca04188a-2870-494a-a6ba-2fc4134f0d97', 'c970b9a9-9c52-4c30-8191-9b1fc3fabdb0', 'portal', 'Portal', 'never-sent'),
                  ('b33c0026-0889-493c-ba1d-3e5289d340e2', 'c970b9a9-9c52-4c30-8191-9b1fc3fabdb0', 'legacy', 'Legacy', 'never-sent');
              INSERT INTO iam.redirect_uris (redirect_uri_id, client_id, realm_id, uri)
              VALUES ('56197e84-191e-468c-ad1e-d08d43c6358b', 'ca04188a-2870-494a-a6ba-2fc4134f0d97',
                      'c970b9a9-9c52-4c30-8191-9b1fc3fabdb0', 'https://portal.acme.example/callback');
              INSERT INTO iam.client_roles (client_role_id, client_id, realm_id, name)
              VALUES ('323b934c-3605-40f3-941c-ad6e49a03d1c', 'ca04188a-2870-494a-a6ba-2fc4134f0d97',
                      'c970b9a9-9c52-4c30-8191-9b1fc3fabdb0', 'portal-user');
              COMMIT",
        events: &[
            "client.created",
            "client.created",
            "redirect_uri.created",
            "client.role.created",
        ],
    },
    SampleStep {
        what: "the client is renamed, its redirect URI moved and its role described",
        sql: "BEGIN;
              UPDATE iam.clients SET name = 'Customer portal'
               WHERE client_id = 'ca04188a-2870-494a-a6ba-2fc4134f0d97';
              UPDATE iam.redirect_uris SET uri = 'https://portal.acme.example/oauth/callback'
               WHERE redirect_uri_id = '56197e84-191e-468c-ad1e-d08d43c6358b';
              UPDATE iam.client_roles SET description = 'may use the portal'
               WHERE client_role_id = '323b934c-3605-40f3-941c-ad6e49a03d1c';
              COMMIT",
        events: &["client.updated", "redirect_uri.updated", "client.role.updated"],
    },
    SampleStep {
        what: "a second redirect URI is added, then removed",
        sql: "BEGIN;
              INSERT INTO iam.redirect_uris (redirect_uri_id, client_id, realm_id, uri)
              VALUES ('a9758c35-6cf6-493c-8710-72e8c0ff7b4b', 'ca04188a-2870-494a-a6ba-2fc4134f0d97',
                      'c970b9a9-9c52-4c30-8191-9b1fc3fabdb0', 'http://localhost:3000/callback');
              DELETE FROM iam.redirect_uris WHERE redirect_uri_id = 'a9758c35-6cf6-493c-8710-72e8c0ff7b4b';
              COMMIT",
        events: &["redirect_uri.created", "redirect_uri.deleted"],
    },
    SampleStep {
        what: "the client secret is rotated (an excluded column: no event)",
        sql: "UPDATE iam.clients SET secret = 'rotated'
               WHERE client_id = 'ca04188a-2870-494a-a6ba-2fc4134f0d97'",
        events: &[],
    },
    SampleStep {
        what: "three users sign up; alice sets a password",
        sql: "BEGIN;
              INSERT INTO iam.users (user_id, realm_id, username, email) VALUES
                  ('2cc57bc6-877c-4065-831e-b5cd6eefe186', 'c970b9a9-9c52-4c30-8191-9b1fc3fabdb0', 'alice', 'alice@acme.example'),
                  ('33a95542-54ea-46ce-98bf-57bbd1617dba', 'c970b9a9-9c52-4c30-8191-9b1fc3fabdb0', 'bob', 'bob@acme.example'),
                  ('ebe36564-fc03-4fe2-94d5-909d8ed04adf', 'c970b9a9-9c52-4c30-8191-9b1fc3fabdb0', 'carol', 'carol@acme.example');
              INSERT INTO iam.user_credentials (user_id, realm_id, secret_data)
              VALUES ('2cc57bc6-877c-4065-831e-b5cd6eefe186', 'c970b9a9-9c52-4c30-8191-9b1fc3fabdb0',
                      '$argon2id$never-sent');
              COMMIT",
        events: &[
            "user.created",
            "user.created",
            "user.created",
            "user.credentials.created",
        ],
    },
    SampleStep {
        what: "alice changes her email (the event lists what changed)",
        sql: "UPDATE iam.users SET email = 'alice@corp.acme.example'
               WHERE user_id = '2cc57bc6-877c-4065-831e-b5cd6eefe186'",
        events: &["user.updated"],
    },
    SampleStep {
        what: "alice is made an admin",
        sql: "INSERT INTO iam.user_roles (user_id, role_id, realm_id)
              VALUES ('2cc57bc6-877c-4065-831e-b5cd6eefe186', '0964130a-c250-43b4-a66d-ca6243c51cb2',
                      'c970b9a9-9c52-4c30-8191-9b1fc3fabdb0')",
        events: &["user.role.assigned"],
    },
    SampleStep {
        what: "and is no longer one",
        sql: "DELETE FROM iam.user_roles
               WHERE user_id = '2cc57bc6-877c-4065-831e-b5cd6eefe186'
                 AND role_id = '0964130a-c250-43b4-a66d-ca6243c51cb2'",
        events: &["user.role.unassigned"],
    },
    SampleStep {
        what: "alice asks for a password reset",
        sql: "INSERT INTO iam.password_resets (realm_id, user_id, token_hash, ip_address)
              VALUES ('c970b9a9-9c52-4c30-8191-9b1fc3fabdb0', '2cc57bc6-877c-4065-831e-b5cd6eefe186',
                      'sha256:never-sent', '203.0.113.7')",
        events: &["auth.reset_password"],
    },
    SampleStep {
        what: "her old password is removed",
        sql: "DELETE FROM iam.user_credentials WHERE user_id = '2cc57bc6-877c-4065-831e-b5cd6eefe186'",
        events: &["user.credentials.deleted"],
    },
    SampleStep {
        what: "bob and carol are deleted in one transaction (one bulk event)",
        sql: "DELETE FROM iam.users WHERE username IN ('bob', 'carol')
                AND realm_id = 'c970b9a9-9c52-4c30-8191-9b1fc3fabdb0'",
        events: &["user.bulk_deleted"],
    },
    SampleStep {
        what: "alice is deleted",
        sql: "DELETE FROM iam.users WHERE user_id = '2cc57bc6-877c-4065-831e-b5cd6eefe186'",
        events: &["user.deleted"],
    },
    SampleStep {
        what: "the viewer role, the legacy client and the staging realm are removed",
        sql: "BEGIN;
              DELETE FROM iam.roles WHERE role_id = '623cf69a-4e30-479b-840c-b74b5c0f16b2';
              DELETE FROM iam.clients WHERE client_id = 'b33c0026-0889-493c-ba1d-3e5289d340e2';
              DELETE FROM iam.realms WHERE realm_id = 'e0006a01-a428-4af7-8bcc-ad997fc6ac0c';
              COMMIT",
        events: &["role.deleted", "client.deleted", "realm.deleted"],
    },
];
