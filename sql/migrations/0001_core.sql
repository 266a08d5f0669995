-- walhook core schema: configuration (settings, routes, subscriptions), the event
-- log, delivery state and signing keys. Validation of written config lives in
-- 0002_validation.sql; this file holds the tables and their plain constraints.

CREATE SCHEMA IF NOT EXISTS walhook;

-- Runtime settings; an absent key means its default (see README, settings).
CREATE TABLE walhook.settings (
    key   text PRIMARY KEY,
    value text NOT NULL
);

-- One row per routed source table. source_oid is kept in step with source_table
-- by a trigger, because pgoutput Relation messages identify tables by OID.
CREATE TABLE walhook.routes (
    source_table    regclass PRIMARY KEY,
    resource        text NOT NULL,
    apiresource     text NOT NULL,
    payload         jsonb,
    revision_column text,
    status_column   text,
    status_events   jsonb,
    exclude_columns text[] NOT NULL DEFAULT '{}',
    enabled         boolean NOT NULL DEFAULT true,
    source_oid      oid,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);
ALTER TABLE walhook.routes REPLICA IDENTITY FULL;

-- 32 random bytes without pgcrypto: two v4 UUIDs (244 random bits).
CREATE FUNCTION walhook.generate_secret() RETURNS text
LANGUAGE sql VOLATILE AS $$
    SELECT 'whsec_' || encode(decode(replace(gen_random_uuid()::text, '-', '')
                                  || replace(gen_random_uuid()::text, '-', ''), 'hex'), 'base64')
$$;

CREATE TABLE walhook.subscriptions (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name            text,
    description     text,
    url             text NOT NULL,
    events          text[] NOT NULL DEFAULT '{*}',
    disabled        boolean NOT NULL DEFAULT false,
    headers         jsonb NOT NULL DEFAULT '{}',
    query_params    jsonb NOT NULL DEFAULT '{}',
    auth_type       text NOT NULL DEFAULT 'none'
                    CHECK (auth_type IN ('none', 'bearer', 'basic')),
    auth_token      text,
    auth_username   text,
    auth_password   text,
    secret          text NOT NULL DEFAULT walhook.generate_secret(),
    -- secret rotation: the previous secret keeps signing until this time
    previous_secret            text,
    previous_secret_expires_at timestamptz,
    timeout_ms      integer NOT NULL DEFAULT 3000 CHECK (timeout_ms BETWEEN 1 AND 300000),
    retry_schedule  interval[] NOT NULL DEFAULT '{5s,5min,30min,2h,5h,10h,10h}',
    max_in_flight   integer NOT NULL DEFAULT 32 CHECK (max_in_flight BETWEEN 1 AND 10000),
    ordered         boolean NOT NULL DEFAULT false,
    envelope        text NOT NULL DEFAULT 'none' CHECK (envelope IN ('none', 'standard')),
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);
ALTER TABLE walhook.subscriptions REPLICA IDENTITY FULL;

-- Every event built from a committed change. id is derived from the change's WAL
-- position, so a replayed change is stored once. body is json (not jsonb) so the
-- exact bytes that are signed and sent are the bytes stored.
CREATE TABLE walhook.events (
    id           uuid PRIMARY KEY,
    type         text NOT NULL,
    apiresource  text NOT NULL,
    revision     bigint NOT NULL,
    commit_lsn   pg_lsn NOT NULL,
    commit_time  timestamptz NOT NULL,
    source_table text,
    body         json,
    error        text,
    created_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX events_commit_time_idx ON walhook.events (commit_time);
CREATE INDEX events_apiresource_revision_idx ON walhook.events (apiresource, revision);

-- One row per (event, subscription).
CREATE TABLE walhook.deliveries (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id        uuid NOT NULL REFERENCES walhook.events (id) ON DELETE CASCADE,
    subscription_id uuid NOT NULL REFERENCES walhook.subscriptions (id) ON DELETE CASCADE,
    status          text NOT NULL DEFAULT 'pending'
                    CHECK (status IN ('pending', 'succeeded', 'failed')),
    attempts        integer NOT NULL DEFAULT 0,
    -- attempts made before the last redelivery; the retry schedule restarts there
    retry_base      integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    last_status_code integer,
    last_error      text,
    last_attempt_at timestamptz,
    -- claim lease: a worker owns the delivery until lease_until
    lease_owner     uuid,
    lease_until     timestamptz,
    -- copied from the event for ordered dispatch without a join
    apiresource     text NOT NULL,
    commit_lsn      pg_lsn NOT NULL,
    seq             integer NOT NULL DEFAULT 0,
    created_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (event_id, subscription_id)
);
CREATE INDEX deliveries_due_idx ON walhook.deliveries (next_attempt_at) WHERE status = 'pending';
CREATE INDEX deliveries_ordered_idx ON walhook.deliveries (subscription_id, apiresource, commit_lsn, seq)
    WHERE status = 'pending';
CREATE INDEX deliveries_subscription_idx ON walhook.deliveries (subscription_id, status);
-- live leases, counted per subscription to enforce max_in_flight across instances
CREATE INDEX deliveries_leased_idx ON walhook.deliveries (subscription_id) WHERE lease_until IS NOT NULL;

CREATE TABLE walhook.delivery_attempts (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    delivery_id   bigint NOT NULL REFERENCES walhook.deliveries (id) ON DELETE CASCADE,
    attempt       integer NOT NULL,
    attempted_at  timestamptz NOT NULL,
    duration_ms   integer NOT NULL,
    status_code   integer,
    error         text,
    response_body text,
    instance_id   uuid,
    UNIQUE (delivery_id, attempt)
);
CREATE INDEX delivery_attempts_time_idx ON walhook.delivery_attempts (attempted_at);

-- Ed25519 signing keys. The current key is the newest unretired one; retired keys
-- leave the JWKS.
CREATE TABLE walhook.signing_keys (
    kid         text PRIMARY KEY,
    public_key  bytea NOT NULL,
    private_key bytea NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    retired_at  timestamptz
);

-- Redeliver one delivery: back to pending now, retry schedule restarted.
CREATE FUNCTION walhook.redeliver(delivery_id bigint) RETURNS void
LANGUAGE sql AS $$
    UPDATE walhook.deliveries
       SET status = 'pending', next_attempt_at = now(), lease_owner = NULL, lease_until = NULL
     WHERE id = delivery_id
$$;

-- A delivery put back to pending (redeliver() or a plain UPDATE) restarts its
-- retry schedule, and wakes the dispatchers.
CREATE FUNCTION walhook.deliveries_requeue() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.status = 'pending' AND OLD.status <> 'pending' THEN
        NEW.retry_base := NEW.attempts;
        NEW.lease_owner := NULL;
        NEW.lease_until := NULL;
        PERFORM pg_notify('walhook_deliveries', '');
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER deliveries_requeue BEFORE UPDATE OF status ON walhook.deliveries
    FOR EACH ROW EXECUTE FUNCTION walhook.deliveries_requeue();
