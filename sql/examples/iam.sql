-- An example IAM server (realms, users, clients, roles), with walhook routes that
-- produce the webhook vocabulary of an IAM server's guide:
--
--   realm.created|updated|deleted      realm.settings.updated
--   user.created|updated|deleted       user.bulk_deleted (several users, one transaction)
--   user.role.assigned|unassigned      user.credentials.deleted    auth.reset_password
--   client.created|updated|deleted     client.role.created|updated
--   redirect_uri.created|updated|deleted
--   role.created|updated|deleted       role.permission.updated
--
-- Load it into a database of its own, after `walhook migrate` (its `role`
-- resource would clash with the directory example's):
--   createdb iam && walhook migrate --database-url postgres:///iam
--   psql -v ON_ERROR_STOP=1 -d iam -f sql/examples/iam.sql
-- Used by `walhook dev --example iam` and tests/it/iam_events.rs.
--
-- Credential columns (password hashes, client secrets, reset tokens, SMTP
-- password) are in exclude_columns: never sent, and changing only them yields
-- no event. Child tables carry realm_id so that every apiresource names its realm.

CREATE SCHEMA IF NOT EXISTS iam;

CREATE TABLE IF NOT EXISTS iam.realms (
    realm_id      uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name          text NOT NULL UNIQUE,
    display_name  text,
    enabled       boolean NOT NULL DEFAULT true,
    created_at    timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS iam.realm_settings (
    realm_id                   uuid PRIMARY KEY REFERENCES iam.realms ON DELETE CASCADE,
    registration_allowed       boolean NOT NULL DEFAULT false,
    login_with_email           boolean NOT NULL DEFAULT true,
    verify_email               boolean NOT NULL DEFAULT false,
    password_policy            text,
    access_token_lifespan_s    integer NOT NULL DEFAULT 300,
    sso_session_idle_timeout_s integer NOT NULL DEFAULT 1800,
    smtp_host                  text,
    smtp_password              text
);

CREATE TABLE IF NOT EXISTS iam.users (
    user_id        uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    realm_id       uuid NOT NULL REFERENCES iam.realms ON DELETE CASCADE,
    username       text NOT NULL,
    email          text,
    email_verified boolean NOT NULL DEFAULT false,
    first_name     text,
    last_name      text,
    enabled        boolean NOT NULL DEFAULT true,
    created_at     timestamptz NOT NULL DEFAULT now(),
    UNIQUE (realm_id, username)
);

CREATE TABLE IF NOT EXISTS iam.user_credentials (
    credential_id   uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id         uuid NOT NULL REFERENCES iam.users ON DELETE CASCADE,
    realm_id        uuid NOT NULL,
    type            text NOT NULL DEFAULT 'password',
    user_label      text,
    secret_data     text NOT NULL,
    credential_data jsonb NOT NULL DEFAULT '{}',
    created_at      timestamptz NOT NULL DEFAULT now()
);

-- A log of reset requests: it keeps user_id without a foreign key, so deleting
-- a user does not delete (and announce) its past resets.
CREATE TABLE IF NOT EXISTS iam.password_resets (
    reset_id     uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    realm_id     uuid NOT NULL,
    user_id      uuid NOT NULL,
    token_hash   text NOT NULL,
    requested_at timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz NOT NULL DEFAULT now() + interval '15 minutes',
    ip_address   text
);

CREATE TABLE IF NOT EXISTS iam.clients (
    client_id       uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    realm_id        uuid NOT NULL REFERENCES iam.realms ON DELETE CASCADE,
    oauth_client_id text NOT NULL,
    name            text,
    description     text,
    enabled         boolean NOT NULL DEFAULT true,
    public_client   boolean NOT NULL DEFAULT false,
    protocol        text NOT NULL DEFAULT 'openid-connect',
    secret          text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (realm_id, oauth_client_id)
);

CREATE TABLE IF NOT EXISTS iam.redirect_uris (
    redirect_uri_id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    client_id       uuid NOT NULL REFERENCES iam.clients ON DELETE CASCADE,
    realm_id        uuid NOT NULL,
    uri             text NOT NULL
);

CREATE TABLE IF NOT EXISTS iam.roles (
    role_id     uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    realm_id    uuid NOT NULL REFERENCES iam.realms ON DELETE CASCADE,
    name        text NOT NULL,
    description text,
    UNIQUE (realm_id, name)
);

-- One row per role: granting or revoking is an update of `permissions`.
CREATE TABLE IF NOT EXISTS iam.role_permissions (
    role_id     uuid PRIMARY KEY REFERENCES iam.roles ON DELETE CASCADE,
    realm_id    uuid NOT NULL,
    permissions text[] NOT NULL DEFAULT '{}'
);

CREATE TABLE IF NOT EXISTS iam.client_roles (
    client_role_id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    client_id      uuid NOT NULL REFERENCES iam.clients ON DELETE CASCADE,
    realm_id       uuid NOT NULL,
    name           text NOT NULL,
    description    text
);

CREATE TABLE IF NOT EXISTS iam.user_roles (
    user_id     uuid NOT NULL REFERENCES iam.users ON DELETE CASCADE,
    role_id     uuid NOT NULL REFERENCES iam.roles ON DELETE CASCADE,
    realm_id    uuid NOT NULL,
    assigned_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, role_id)
);

-- Routes ------------------------------------------------------------------
-- No revision columns: an event's revision is its change's WAL position.

INSERT INTO walhook.routes (source_table, resource, apiresource, payload, event_names,
                            bulk_delete_event, exclude_columns)
VALUES
('iam.realms', 'realm', '/realms/{realm_id}',
 '{"realm": "{*}", "changed": "{changed}"}', NULL, NULL, '{}'),

-- the settings row is written with its realm and changed afterwards: both are
-- "settings updated"
('iam.realm_settings', 'realm.settings', '/realms/{realm_id}/settings',
 '{"realmid": "{realm_id}", "settings": "{*}", "changed": "{changed}"}',
 '{"insert": "updated"}', NULL, '{smtp_password}'),

-- several users deleted in one transaction: one user.bulk_deleted listing them
('iam.users', 'user', '/realms/{realm_id}/users/{user_id}',
 '{"realmid": "{realm_id}", "user": "{*}", "changed": "{changed}",
   "previous": {"username": "{old.username}", "email": "{old.email}", "enabled": "{old.enabled}"}}',
 NULL, 'bulk_deleted', '{}'),

('iam.user_credentials', 'user.credentials',
 '/realms/{realm_id}/users/{user_id}/credentials/{credential_id}',
 '{"realmid": "{realm_id}", "userid": "{user_id}", "credential": "{*}"}',
 NULL, NULL, '{secret_data}'),

('iam.password_resets', 'auth', '/realms/{realm_id}/users/{user_id}/reset-password/{reset_id}',
 '{"realmid": "{realm_id}", "userid": "{user_id}", "reset": "{*}"}',
 '{"insert": "reset_password"}', NULL, '{token_hash}'),

('iam.clients', 'client', '/realms/{realm_id}/clients/{client_id}',
 '{"realmid": "{realm_id}", "client": "{*}", "changed": "{changed}"}', NULL, NULL, '{secret}'),

('iam.redirect_uris', 'redirect_uri',
 '/realms/{realm_id}/clients/{client_id}/redirect-uris/{redirect_uri_id}',
 '{"realmid": "{realm_id}", "clientid": "{client_id}", "redirecturi": "{*}", "previousuri": "{old.uri}"}',
 NULL, NULL, '{}'),

('iam.roles', 'role', '/realms/{realm_id}/roles/{role_id}',
 '{"realmid": "{realm_id}", "role": "{*}", "changed": "{changed}"}', NULL, NULL, '{}'),

-- the first grant creates the row: that too is "permissions updated"
('iam.role_permissions', 'role.permission', '/realms/{realm_id}/roles/{role_id}/permissions',
 '{"realmid": "{realm_id}", "roleid": "{role_id}", "permissions": "{permissions}",
   "previouspermissions": "{old.permissions}"}',
 '{"insert": "updated"}', NULL, '{}'),

('iam.client_roles', 'client.role',
 '/realms/{realm_id}/clients/{client_id}/roles/{client_role_id}',
 '{"realmid": "{realm_id}", "clientid": "{client_id}", "role": "{*}", "changed": "{changed}"}',
 NULL, NULL, '{}'),

('iam.user_roles', 'user.role', '/realms/{realm_id}/users/{user_id}/roles/{role_id}',
 '{"realmid": "{realm_id}", "userid": "{user_id}", "roleid": "{role_id}", "assignedat": "{assigned_at}"}',
 '{"insert": "assigned", "delete": "unassigned"}', NULL, '{}')
ON CONFLICT (source_table) DO UPDATE
   SET resource = EXCLUDED.resource, apiresource = EXCLUDED.apiresource,
       payload = EXCLUDED.payload, event_names = EXCLUDED.event_names,
       bulk_delete_event = EXCLUDED.bulk_delete_event,
       exclude_columns = EXCLUDED.exclude_columns;

-- A bulk delete, by hand (one user.bulk_deleted listing both users):
--
--   DELETE FROM iam.users WHERE username IN ('bob', 'carol');
