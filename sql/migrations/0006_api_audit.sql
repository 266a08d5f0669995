-- The /v1 management API's bearer tokens, and the audit log of configuration
-- changes (README, the /v1 management API).

-- Tokens are stored as the SHA-256 of the token (hex); the token itself is
-- shown once by `walhook api-tokens create` and never stored.
CREATE TABLE walhook.api_tokens (
    name         text PRIMARY KEY
                 CHECK (name ~ '^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$'),
    token_sha256 text NOT NULL UNIQUE CHECK (token_sha256 ~ '^[0-9a-f]{64}$'),
    created_at   timestamptz NOT NULL DEFAULT now()
);

-- One row per insert, update or delete of a configuration row. Never removed by
-- retention unless the audit_retention setting says so.
CREATE TABLE walhook.audit_log (
    id        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at        timestamptz NOT NULL DEFAULT now(),
    actor     text NOT NULL,
    action    text NOT NULL CHECK (action IN ('insert', 'update', 'delete')),
    object    text NOT NULL,
    object_id text,
    before    jsonb,
    after     jsonb
);
CREATE INDEX audit_log_at_idx ON walhook.audit_log (at);
CREATE INDEX audit_log_object_idx ON walhook.audit_log (object, object_id);

-- A row as jsonb with its secrets, tokens, passwords and private keys replaced
-- by "[redacted]" (null stays null, so "was a secret set" remains visible).
CREATE FUNCTION walhook.audit_redact(row_value jsonb) RETURNS jsonb
LANGUAGE sql IMMUTABLE AS $$
    SELECT coalesce(jsonb_object_agg(k, CASE
               WHEN v <> 'null'::jsonb AND k IN ('secret', 'previous_secret', 'auth_token',
                                                  'auth_password', 'token_sha256', 'private_key')
               THEN '"[redacted]"'::jsonb ELSE v END), '{}'::jsonb)
      FROM jsonb_each(row_value) AS e(k, v)
$$;

-- Who made the change: the API sets walhook.actor ('api:<token name>') in its
-- own transaction; anything else is <session_user>/<application_name>.
CREATE FUNCTION walhook.audit_actor() RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT coalesce(nullif(current_setting('walhook.actor', true), ''),
                    session_user || '/' || coalesce(current_setting('application_name', true), ''))
$$;

-- TG_ARGV[0]: the column holding the row's key (object_id).
CREATE FUNCTION walhook.audit() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    before jsonb;
    after jsonb;
BEGIN
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        before := walhook.audit_redact(to_jsonb(OLD));
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        after := walhook.audit_redact(to_jsonb(NEW));
    END IF;
    INSERT INTO walhook.audit_log (actor, action, object, object_id, before, after)
    VALUES (walhook.audit_actor(), lower(TG_OP), TG_TABLE_NAME,
            coalesce(after, before) ->> TG_ARGV[0], before, after);
    RETURN NULL;
END
$$;

CREATE TRIGGER audit AFTER INSERT OR UPDATE OR DELETE ON walhook.routes
    FOR EACH ROW EXECUTE FUNCTION walhook.audit('source_table');
CREATE TRIGGER audit AFTER INSERT OR UPDATE OR DELETE ON walhook.subscriptions
    FOR EACH ROW EXECUTE FUNCTION walhook.audit('id');
CREATE TRIGGER audit AFTER INSERT OR UPDATE OR DELETE ON walhook.settings
    FOR EACH ROW EXECUTE FUNCTION walhook.audit('key');
CREATE TRIGGER audit AFTER INSERT OR UPDATE OR DELETE ON walhook.api_tokens
    FOR EACH ROW EXECUTE FUNCTION walhook.audit('name');
CREATE TRIGGER audit AFTER INSERT OR UPDATE OR DELETE ON walhook.signing_keys
    FOR EACH ROW EXECUTE FUNCTION walhook.audit('kid');

-- ------------------------------------------------- settings: audit_retention
-- The 0002 rules plus audit_retention: 'forever' (the default) or a positive
-- interval.
CREATE OR REPLACE FUNCTION walhook.settings_check() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    CASE NEW.key
    WHEN 'allow_insecure_targets' THEN
        IF lower(NEW.value) NOT IN ('true', 'false') THEN
            RAISE EXCEPTION 'setting allow_insecure_targets must be true or false, not %', NEW.value;
        END IF;
        NEW.value := lower(NEW.value);
    WHEN 'event_retention', 'attempt_retention' THEN
        BEGIN
            IF NEW.value::interval <= interval '0' THEN
                RAISE EXCEPTION 'negative';
            END IF;
        EXCEPTION WHEN OTHERS THEN
            RAISE EXCEPTION 'setting % must be a positive interval such as ''7 days'', not %', NEW.key, NEW.value;
        END;
    WHEN 'audit_retention' THEN
        IF lower(NEW.value) = 'forever' THEN
            NEW.value := 'forever';
        ELSE
            BEGIN
                IF NEW.value::interval <= interval '0' THEN
                    RAISE EXCEPTION 'negative';
                END IF;
            EXCEPTION WHEN OTHERS THEN
                RAISE EXCEPTION 'setting audit_retention must be forever or a positive interval such as ''365 days'', not %', NEW.value;
            END;
        END IF;
    WHEN 'max_payload_bytes' THEN
        IF NEW.value !~ '^[0-9]{1,12}$' OR NEW.value::bigint <= 0 THEN
            RAISE EXCEPTION 'setting max_payload_bytes must be a positive integer, not %', NEW.value;
        END IF;
    ELSE
        RAISE EXCEPTION 'unknown setting %: known settings are allow_insecure_targets, event_retention, attempt_retention, audit_retention, max_payload_bytes', NEW.key;
    END CASE;
    RETURN NEW;
END
$$;
