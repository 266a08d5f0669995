-- Retry schedules a delivery can follow (issue 22).
--
-- A step too long to add to a timestamp made the delivery path panic, and a
-- retry step is no way to park a delivery: each step of retry_schedule must
-- be a finite, non-negative interval of at most 365 days, the longest wait
-- walhook makes before a retry (MAX_RETRY_DELAY in src/delivery/retry.rs,
-- which also clamps a Retry-After and rows written before this rule). Steps
-- compare as PostgreSQL compares intervals (a month as 30 days), so
-- '1 year' passes; walhook waits at most 365 days. PostgreSQL 17's
-- 'infinity' and '-infinity' intervals are refused by name (isfinite is
-- always true for an interval before 17, where they cannot be written).
-- Each error names its rule, as the URL rules do.
CREATE FUNCTION walhook.check_retry_schedule(schedule interval[]) RETURNS void
LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    step interval;
BEGIN
    FOREACH step IN ARRAY schedule LOOP
        IF step IS NULL THEN
            RAISE EXCEPTION 'retry_schedule rule step: every step must be an interval (got NULL)';
        END IF;
        IF NOT isfinite(step) THEN
            RAISE EXCEPTION 'retry_schedule rule finite: step % is not a finite interval: use steps of at most 365 days, and end the schedule to stop retrying', step;
        END IF;
        IF step < interval '0' THEN
            RAISE EXCEPTION 'retry_schedule rule non-negative: step % is negative', step;
        END IF;
        IF step > interval '365 days' THEN
            RAISE EXCEPTION 'retry_schedule rule maximum: step % is longer than 365 days, the longest wait before a retry', step;
        END IF;
    END LOOP;
END
$$;

-- The 0002 rules, the retry_schedule one replaced by check_retry_schedule,
-- applied when the schedule is written: a row stored before this rule with a
-- longer step can still be updated otherwise (disabled, say), and walhook
-- waits at most 365 days on it.
CREATE OR REPLACE FUNCTION walhook.subscriptions_check() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    pattern text;
    k text;
    v jsonb;
    raw bytea;
BEGIN
    PERFORM walhook.check_url(NEW.url);
    IF cardinality(NEW.events) = 0 THEN
        RAISE EXCEPTION 'events must list at least one pattern: an exact type, prefix.* or *';
    END IF;
    FOREACH pattern IN ARRAY NEW.events LOOP
        IF pattern IS NULL OR pattern !~ '^(\*|[A-Za-z0-9_]+(\.[A-Za-z0-9_]+)*(\.\*)?)$' THEN
            RAISE EXCEPTION 'events pattern % is not an exact type, prefix.* or *', coalesce(pattern, 'NULL');
        END IF;
    END LOOP;
    IF jsonb_typeof(NEW.headers) <> 'object' THEN
        RAISE EXCEPTION 'headers must be a JSON object of strings';
    END IF;
    FOR k, v IN SELECT * FROM jsonb_each(NEW.headers) LOOP
        IF jsonb_typeof(v) <> 'string' THEN
            RAISE EXCEPTION 'headers value of % must be a string', k;
        END IF;
        IF lower(k) IN ('content-type', 'content-length', 'content-digest', 'authorization', 'host', 'signature', 'signature-input')
           OR lower(k) LIKE 'webhook-%' THEN
            RAISE EXCEPTION 'headers must not set %: walhook sets it', k;
        END IF;
    END LOOP;
    IF jsonb_typeof(NEW.query_params) <> 'object'
       OR EXISTS (SELECT 1 FROM jsonb_each(NEW.query_params) e WHERE jsonb_typeof(e.value) <> 'string') THEN
        RAISE EXCEPTION 'query_params must be a JSON object of strings';
    END IF;
    IF NEW.auth_type = 'bearer' AND NEW.auth_token IS NULL THEN
        RAISE EXCEPTION 'auth_type bearer needs auth_token';
    END IF;
    IF NEW.auth_type = 'basic' AND (NEW.auth_username IS NULL OR NEW.auth_password IS NULL) THEN
        RAISE EXCEPTION 'auth_type basic needs auth_username and auth_password';
    END IF;
    FOREACH pattern IN ARRAY ARRAY[NEW.secret, NEW.previous_secret] LOOP
        CONTINUE WHEN pattern IS NULL;
        IF pattern !~ '^whsec_[A-Za-z0-9+/=]+$' THEN
            RAISE EXCEPTION 'secret must be whsec_ followed by base64';
        END IF;
        BEGIN
            raw := decode(substr(pattern, 7), 'base64');
        EXCEPTION WHEN OTHERS THEN
            RAISE EXCEPTION 'secret must be whsec_ followed by valid base64';
        END;
        IF length(raw) NOT BETWEEN 24 AND 64 THEN
            RAISE EXCEPTION 'secret must decode to 24..64 bytes (got %)', length(raw);
        END IF;
    END LOOP;
    IF TG_OP = 'INSERT' OR NEW.retry_schedule IS DISTINCT FROM OLD.retry_schedule THEN
        PERFORM walhook.check_retry_schedule(NEW.retry_schedule);
    END IF;
    NEW.updated_at := now();
    RETURN NEW;
END
$$;
