-- Every rule of walhook's checks on what a client writes names its column
-- the way PostgreSQL's own errors do: RAISE ... USING COLUMN = '<column>',
-- with the rule in the message. A client reads the column from the error's
-- fields (libpq's PG_DIAG_COLUMN_NAME, `DbError::column()` in Rust) instead
-- of parsing the message; walhook's /v1 API turns it into the 400's field.
-- The functions below are those of migrations 0002, 0005, 0007 and 0011 with
-- only that added (0013's filter check had it already).

CREATE OR REPLACE FUNCTION walhook.check_url(url text) RETURNS void
    LANGUAGE plpgsql STABLE
    AS $_$
DECLARE
    m text[];
    host text;
    insecure boolean := walhook.insecure_targets_allowed();
BEGIN
    IF octet_length(url) > 2048 THEN
        RAISE EXCEPTION 'url rule length: url must be at most 2048 bytes (got %)', octet_length(url) USING COLUMN = 'url';
    END IF;
    m := regexp_match(url, '^([A-Za-z][A-Za-z0-9+.-]*)://([^/?#]*)([^?#]*)(\?[^#]*)?(#.*)?$');
    IF m IS NULL THEN
        RAISE EXCEPTION 'url rule absolute: url must be absolute, like https://receiver.example/hooks (got %)', url USING COLUMN = 'url';
    END IF;
    IF lower(m[1]) NOT IN ('https', 'http') THEN
        RAISE EXCEPTION 'url rule scheme: url must use https (got %)', m[1] USING COLUMN = 'url';
    END IF;
    IF lower(m[1]) = 'http' AND NOT insecure THEN
        RAISE EXCEPTION 'url rule scheme: url must use https; plain http is allowed only with walhook.settings allow_insecure_targets = true (local development)' USING COLUMN = 'url';
    END IF;
    IF position('@' IN m[2]) > 0 THEN
        RAISE EXCEPTION 'url rule user-info: url must not contain user-info (use auth_type and its columns)' USING COLUMN = 'url';
    END IF;
    IF m[4] IS NOT NULL THEN
        RAISE EXCEPTION 'url rule query: url must not contain a query string (use query_params)' USING COLUMN = 'url';
    END IF;
    IF m[5] IS NOT NULL THEN
        RAISE EXCEPTION 'url rule fragment: url must not contain a fragment' USING COLUMN = 'url';
    END IF;
    host := lower(regexp_replace(m[2], ':[0-9]*$', ''));
    IF host = '' THEN
        RAISE EXCEPTION 'url rule host: url must name a host' USING COLUMN = 'url';
    END IF;
    IF host ~ '[^\x01-\x7f]' THEN
        RAISE EXCEPTION 'url rule host: non-ASCII host %: write it in its IDNA (punycode, xn--) form', host USING COLUMN = 'url';
    END IF;
    IF (host ~ '^[0-9.]+$' OR host ~ '^\[.*\]$') AND NOT insecure THEN
        RAISE EXCEPTION 'url rule ip-literal: url host must be a DNS name, not the IP literal % (allowed only with allow_insecure_targets = true)', host USING COLUMN = 'url';
    END IF;
    IF (host = 'localhost' OR host LIKE '%.localhost' OR host LIKE '%.internal') AND NOT insecure THEN
        RAISE EXCEPTION 'url rule private: url host % is a private name (allowed only with allow_insecure_targets = true)', host USING COLUMN = 'url';
    END IF;
END
$_$;

CREATE OR REPLACE FUNCTION walhook.idna_host(host text) RETURNS text
    LANGUAGE plpgsql IMMUTABLE STRICT
    AS $$
DECLARE
    mapped text;
    label text;
    labels text[] := '{}';
BEGIN
    IF host !~ '[^\x01-\x7f]' THEN
        RETURN host;
    END IF;
    mapped := walhook.unicode_lower(normalize(host, NFKC));
    mapped := translate(mapped, U&'\3002\FF0E\FF61', '...');
    IF mapped ~ '[\x01-\x20#%/:<>?@\[\\\]^|\x7f-\x9f]' THEN
        RAISE EXCEPTION 'url rule host: host % contains a character IDNA does not allow in a host name (space, control or one of #%%/:<>?@[\]^|)', host USING COLUMN = 'url';
    END IF;
    IF mapped ~ U&'[\E000-\F8FF\FDD0-\FDEF\FFFD\FFFE\FFFF]' OR mapped ~ U&'[\+0F0000-\+10FFFF]' THEN
        RAISE EXCEPTION 'url rule host: host % contains a code point IDNA disallows (private use, non-character or U+FFFD)', host USING COLUMN = 'url';
    END IF;
    FOREACH label IN ARRAY string_to_array(mapped, '.') LOOP
        IF label ~ '[^\x01-\x7f]' THEN
            label := 'xn--' || walhook.punycode_encode(label);
        END IF;
        labels := labels || label;
    END LOOP;
    RETURN array_to_string(labels, '.');
END
$$;

CREATE OR REPLACE FUNCTION walhook.subscriptions_check() RETURNS trigger
    LANGUAGE plpgsql
    AS $_$
DECLARE
    pattern text;
    k text;
    v jsonb;
    raw bytea;
BEGIN
    PERFORM walhook.check_url(NEW.url);
    IF cardinality(NEW.events) = 0 THEN
        RAISE EXCEPTION 'events must list at least one pattern: an exact type, prefix.* or *' USING COLUMN = 'events';
    END IF;
    FOREACH pattern IN ARRAY NEW.events LOOP
        IF pattern IS NULL OR pattern !~ '^(\*|[A-Za-z0-9_]+(\.[A-Za-z0-9_]+)*(\.\*)?)$' THEN
            RAISE EXCEPTION 'events pattern % is not an exact type, prefix.* or *', coalesce(pattern, 'NULL') USING COLUMN = 'events';
        END IF;
    END LOOP;
    IF jsonb_typeof(NEW.headers) <> 'object' THEN
        RAISE EXCEPTION 'headers must be a JSON object of strings' USING COLUMN = 'headers';
    END IF;
    FOR k, v IN SELECT * FROM jsonb_each(NEW.headers) LOOP
        IF jsonb_typeof(v) <> 'string' THEN
            RAISE EXCEPTION 'headers value of % must be a string', k USING COLUMN = 'headers';
        END IF;
        IF lower(k) IN ('content-type', 'content-length', 'content-digest', 'authorization', 'host', 'signature', 'signature-input')
           OR lower(k) LIKE 'webhook-%' THEN
            RAISE EXCEPTION 'headers must not set %: walhook sets it', k USING COLUMN = 'headers';
        END IF;
    END LOOP;
    IF jsonb_typeof(NEW.query_params) <> 'object'
       OR EXISTS (SELECT 1 FROM jsonb_each(NEW.query_params) e WHERE jsonb_typeof(e.value) <> 'string') THEN
        RAISE EXCEPTION 'query_params must be a JSON object of strings' USING COLUMN = 'query_params';
    END IF;
    IF NEW.auth_type = 'bearer' AND NEW.auth_token IS NULL THEN
        RAISE EXCEPTION 'auth_type bearer needs auth_token' USING COLUMN = 'auth_type';
    END IF;
    IF NEW.auth_type = 'basic' AND (NEW.auth_username IS NULL OR NEW.auth_password IS NULL) THEN
        RAISE EXCEPTION 'auth_type basic needs auth_username and auth_password' USING COLUMN = 'auth_type';
    END IF;
    FOREACH pattern IN ARRAY ARRAY[NEW.secret, NEW.previous_secret] LOOP
        CONTINUE WHEN pattern IS NULL;
        IF pattern !~ '^whsec_[A-Za-z0-9+/=]+$' THEN
            RAISE EXCEPTION 'secret must be whsec_ followed by base64' USING COLUMN = 'secret';
        END IF;
        BEGIN
            raw := decode(substr(pattern, 7), 'base64');
        EXCEPTION WHEN OTHERS THEN
            RAISE EXCEPTION 'secret must be whsec_ followed by valid base64' USING COLUMN = 'secret';
        END;
        IF length(raw) NOT BETWEEN 24 AND 64 THEN
            RAISE EXCEPTION 'secret must decode to 24..64 bytes (got %)', length(raw) USING COLUMN = 'secret';
        END IF;
    END LOOP;
    IF EXISTS (SELECT 1 FROM unnest(NEW.retry_schedule) d WHERE d IS NULL OR d < interval '0') THEN
        RAISE EXCEPTION 'retry_schedule delays must be non-negative intervals' USING COLUMN = 'retry_schedule';
    END IF;
    NEW.updated_at := now();
    RETURN NEW;
END
$_$;

CREATE OR REPLACE FUNCTION walhook.subscriptions_retry_schedule_check() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
DECLARE
    step interval;
BEGIN
    FOREACH step IN ARRAY NEW.retry_schedule LOOP
        IF step IS NULL THEN
            RAISE EXCEPTION 'retry_schedule rule step: every step must be an interval (got NULL)' USING COLUMN = 'retry_schedule';
        END IF;
        IF NOT isfinite(step) THEN
            RAISE EXCEPTION 'retry_schedule rule finite: step % is not a finite interval: use steps of at most 365 days, and end the schedule to stop retrying', step USING COLUMN = 'retry_schedule';
        END IF;
        IF step < interval '0' THEN
            RAISE EXCEPTION 'retry_schedule rule non-negative: step % is negative', step USING COLUMN = 'retry_schedule';
        END IF;
        IF step > interval '365 days' THEN
            RAISE EXCEPTION 'retry_schedule rule maximum: step % is longer than 365 days, the longest wait before a retry', step USING COLUMN = 'retry_schedule';
        END IF;
    END LOOP;
    RETURN NEW;
END
$$;

CREATE OR REPLACE FUNCTION walhook.subscriptions_signature_schemes_check() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
DECLARE
    scheme text;
BEGIN
    IF cardinality(NEW.signature_schemes) IS NULL OR cardinality(NEW.signature_schemes) = 0 THEN
        RAISE EXCEPTION 'signature_schemes must list at least one of v1, v1a, rfc9421' USING COLUMN = 'signature_schemes';
    END IF;
    FOREACH scheme IN ARRAY NEW.signature_schemes LOOP
        IF scheme IS NULL OR scheme NOT IN ('v1', 'v1a', 'rfc9421') THEN
            RAISE EXCEPTION 'signature_schemes entry % is unknown: known schemes are v1 (HMAC-SHA256), v1a (Ed25519) and rfc9421 (HTTP Message Signatures)',
                coalesce(scheme, 'NULL') USING COLUMN = 'signature_schemes';
        END IF;
    END LOOP;
    RETURN NEW;
END
$$;

CREATE OR REPLACE FUNCTION walhook.backfills_check() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
BEGIN
    IF TG_OP = 'INSERT' OR NEW.source_table IS DISTINCT FROM OLD.source_table
       OR NEW.where_clause IS DISTINCT FROM OLD.where_clause THEN
        IF NOT EXISTS (SELECT 1 FROM walhook.subscriptions WHERE id = NEW.subscription_id) THEN
            RAISE EXCEPTION 'backfill of %: subscription % does not exist', NEW.source_table, NEW.subscription_id USING COLUMN = 'subscription_id';
        END IF;
        IF NOT EXISTS (SELECT 1 FROM walhook.routes WHERE source_table = NEW.source_table) THEN
            RAISE EXCEPTION 'backfill of %: the table has no route (INSERT INTO walhook.routes first)', NEW.source_table USING COLUMN = 'source_table';
        END IF;
        IF NOT EXISTS (SELECT 1 FROM pg_index WHERE indrelid = NEW.source_table AND indisprimary) THEN
            RAISE EXCEPTION 'backfill of %: the table has no primary key (backfills read it in primary-key order)', NEW.source_table USING COLUMN = 'source_table';
        END IF;
        IF NEW.where_clause IS NOT NULL THEN
            IF btrim(NEW.where_clause) = '' THEN
                RAISE EXCEPTION 'backfill of %: where_clause is empty (use NULL for every row)', NEW.source_table USING COLUMN = 'where_clause';
            END IF;
            -- inside parentheses a ';' outside a literal cannot parse: one
            -- expression only
            BEGIN
                EXECUTE format('SELECT 1 FROM %s WHERE (%s) LIMIT 0', NEW.source_table, NEW.where_clause);
                -- a second context, so that text closing the parenthesis
                -- (`true) UNION SELECT ...`) cannot parse in both
                EXECUTE format('SELECT ARRAY[(%s)::boolean] FROM %s LIMIT 0', NEW.where_clause, NEW.source_table);
            EXCEPTION WHEN OTHERS THEN
                RAISE EXCEPTION 'backfill of %: where_clause must be one boolean expression over the table''s columns: %', NEW.source_table, SQLERRM USING COLUMN = 'where_clause';
            END;
        END IF;
    END IF;
    IF NEW.status IN ('done', 'cancelled', 'failed') AND NEW.finished_at IS NULL THEN
        NEW.finished_at := now();
    END IF;
    IF NEW.status = 'running' AND NEW.started_at IS NULL THEN
        NEW.started_at := now();
    END IF;
    -- set back to pending: resumes from its cursor
    IF TG_OP = 'UPDATE' AND NEW.status = 'pending' AND OLD.status <> 'pending' THEN
        NEW.finished_at := NULL;
        NEW.error := NULL;
    END IF;
    RETURN NEW;
END
$$;
