-- Configuration rules enforced by the database when config rows are written, and
-- publication membership kept in step with routes inside the route's own
-- transaction (so a route takes effect exactly at its commit position).

-- Publications walhook streams from; `walhook run` registers its --publication.
CREATE TABLE walhook.publications (
    name text PRIMARY KEY
);

-- ---------------------------------------------------------------- settings
CREATE FUNCTION walhook.settings_check() RETURNS trigger
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
    WHEN 'max_payload_bytes' THEN
        IF NEW.value !~ '^[0-9]{1,12}$' OR NEW.value::bigint <= 0 THEN
            RAISE EXCEPTION 'setting max_payload_bytes must be a positive integer, not %', NEW.value;
        END IF;
    ELSE
        RAISE EXCEPTION 'unknown setting %: known settings are allow_insecure_targets, event_retention, attempt_retention, max_payload_bytes', NEW.key;
    END CASE;
    RETURN NEW;
END
$$;
CREATE TRIGGER settings_check BEFORE INSERT OR UPDATE ON walhook.settings
    FOR EACH ROW EXECUTE FUNCTION walhook.settings_check();

CREATE FUNCTION walhook.insecure_targets_allowed() RETURNS boolean
LANGUAGE sql STABLE AS $$
    SELECT coalesce((SELECT value = 'true' FROM walhook.settings WHERE key = 'allow_insecure_targets'), false)
$$;

-- ------------------------------------------------------------ subscriptions
-- The URL rules (README, Subscriptions); each error names its rule.
CREATE FUNCTION walhook.check_url(url text) RETURNS void
LANGUAGE plpgsql STABLE AS $$
DECLARE
    m text[];
    host text;
    insecure boolean := walhook.insecure_targets_allowed();
BEGIN
    IF octet_length(url) > 2048 THEN
        RAISE EXCEPTION 'url rule length: url must be at most 2048 bytes (got %)', octet_length(url);
    END IF;
    m := regexp_match(url, '^([A-Za-z][A-Za-z0-9+.-]*)://([^/?#]*)([^?#]*)(\?[^#]*)?(#.*)?$');
    IF m IS NULL THEN
        RAISE EXCEPTION 'url rule absolute: url must be absolute, like https://receiver.example/hooks (got %)', url;
    END IF;
    IF lower(m[1]) NOT IN ('https', 'http') THEN
        RAISE EXCEPTION 'url rule scheme: url must use https (got %)', m[1];
    END IF;
    IF lower(m[1]) = 'http' AND NOT insecure THEN
        RAISE EXCEPTION 'url rule scheme: url must use https; plain http is allowed only with walhook.settings allow_insecure_targets = true (local development)';
    END IF;
    IF position('@' IN m[2]) > 0 THEN
        RAISE EXCEPTION 'url rule user-info: url must not contain user-info (use auth_type and its columns)';
    END IF;
    IF m[4] IS NOT NULL THEN
        RAISE EXCEPTION 'url rule query: url must not contain a query string (use query_params)';
    END IF;
    IF m[5] IS NOT NULL THEN
        RAISE EXCEPTION 'url rule fragment: url must not contain a fragment';
    END IF;
    host := lower(regexp_replace(m[2], ':[0-9]*$', ''));
    IF host = '' THEN
        RAISE EXCEPTION 'url rule host: url must name a host';
    END IF;
    IF host ~ '[^\x01-\x7f]' THEN
        RAISE EXCEPTION 'url rule host: non-ASCII host %: write it in its IDNA (punycode, xn--) form', host;
    END IF;
    IF (host ~ '^[0-9.]+$' OR host ~ '^\[.*\]$') AND NOT insecure THEN
        RAISE EXCEPTION 'url rule ip-literal: url host must be a DNS name, not the IP literal % (allowed only with allow_insecure_targets = true)', host;
    END IF;
    IF (host = 'localhost' OR host LIKE '%.localhost' OR host LIKE '%.internal') AND NOT insecure THEN
        RAISE EXCEPTION 'url rule private: url host % is a private name (allowed only with allow_insecure_targets = true)', host;
    END IF;
END
$$;

CREATE FUNCTION walhook.subscriptions_check() RETURNS trigger
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
    IF EXISTS (SELECT 1 FROM unnest(NEW.retry_schedule) d WHERE d IS NULL OR d < interval '0') THEN
        RAISE EXCEPTION 'retry_schedule delays must be non-negative intervals';
    END IF;
    NEW.updated_at := now();
    RETURN NEW;
END
$$;
CREATE TRIGGER subscriptions_check BEFORE INSERT OR UPDATE ON walhook.subscriptions
    FOR EACH ROW EXECUTE FUNCTION walhook.subscriptions_check();

-- ------------------------------------------------------------------- routes
-- Columns named by a template: {col} in strings and object keys, "{*}" excluded.
CREATE FUNCTION walhook.template_columns(template text) RETURNS SETOF text
LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    depth int := 0;
    start int;
    c text;
BEGIN
    FOR i IN 1 .. coalesce(length(template), 0) LOOP
        c := substr(template, i, 1);
        IF c = '{' THEN
            IF depth > 0 THEN
                RAISE EXCEPTION 'template % has a nested ''{'' at position %', template, i - 1;
            END IF;
            depth := 1;
            start := i;
        ELSIF c = '}' THEN
            IF depth = 0 THEN
                RAISE EXCEPTION 'template % has an unmatched ''}'' at position %', template, i - 1;
            END IF;
            depth := 0;
            IF btrim(substr(template, start + 1, i - start - 1)) = '' THEN
                RAISE EXCEPTION 'template % has an empty {} at position %', template, start - 1;
            END IF;
            RETURN NEXT btrim(substr(template, start + 1, i - start - 1));
        END IF;
    END LOOP;
    IF depth > 0 THEN
        RAISE EXCEPTION 'template % has an unclosed ''{'' at position %', template, start - 1;
    END IF;
END
$$;

-- Every string and key of a payload template, recursively.
CREATE FUNCTION walhook.payload_strings(payload jsonb) RETURNS SETOF text
LANGUAGE sql IMMUTABLE AS $$
    WITH RECURSIVE walk(v) AS (
        SELECT payload
        UNION ALL
        SELECT x.v FROM walk,
               LATERAL (SELECT e.value AS v FROM jsonb_each(CASE WHEN jsonb_typeof(walk.v) = 'object' THEN walk.v END) e
                        UNION ALL
                        SELECT a.value FROM jsonb_array_elements(CASE WHEN jsonb_typeof(walk.v) = 'array' THEN walk.v END) a) x
    )
    SELECT v #>> '{}' FROM walk WHERE jsonb_typeof(v) = 'string'
    UNION ALL
    SELECT k FROM walk, LATERAL jsonb_object_keys(CASE WHEN jsonb_typeof(walk.v) = 'object' THEN walk.v END) k
$$;

CREATE FUNCTION walhook.routes_check() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    col text;
    what text;
    s text;
    k text;
    v jsonb;
BEGIN
    NEW.source_oid := NEW.source_table::oid;
    IF NEW.resource !~ '^[A-Za-z0-9_]+(\.[A-Za-z0-9_]+)*$' THEN
        RAISE EXCEPTION 'route for %: resource % must be letters, digits, _ and dots', NEW.source_table, NEW.resource;
    END IF;
    FOR col IN SELECT unnest(NEW.exclude_columns) LOOP
        PERFORM walhook.require_column(NEW.source_table, col, 'exclude_columns');
    END LOOP;
    FOR col IN SELECT walhook.template_columns(NEW.apiresource) LOOP
        PERFORM walhook.require_column(NEW.source_table, col, 'apiresource');
        IF col = ANY (NEW.exclude_columns) THEN
            RAISE EXCEPTION 'route for %: apiresource uses excluded column %', NEW.source_table, col;
        END IF;
    END LOOP;
    IF NEW.payload IS NOT NULL THEN
        FOR s IN SELECT walhook.payload_strings(NEW.payload) LOOP
            CONTINUE WHEN s = '{*}';
            FOR col IN SELECT walhook.template_columns(s) LOOP
                CONTINUE WHEN col = '*';
                PERFORM walhook.require_column(NEW.source_table, col, 'payload');
                IF col = ANY (NEW.exclude_columns) THEN
                    RAISE EXCEPTION 'route for %: payload uses excluded column %', NEW.source_table, col;
                END IF;
            END LOOP;
        END LOOP;
    END IF;
    IF NEW.revision_column IS NOT NULL THEN
        PERFORM walhook.require_column(NEW.source_table, NEW.revision_column, 'revision_column');
    END IF;
    IF NEW.status_column IS NOT NULL THEN
        PERFORM walhook.require_column(NEW.source_table, NEW.status_column, 'status_column');
    END IF;
    IF NEW.status_events IS NOT NULL THEN
        IF NEW.status_column IS NULL THEN
            RAISE EXCEPTION 'route for %: status_events needs status_column', NEW.source_table;
        END IF;
        IF jsonb_typeof(NEW.status_events) <> 'object' THEN
            RAISE EXCEPTION 'route for %: status_events must be an object like {"suspended":"suspended","suspended->active":"suspension_lifted"}', NEW.source_table;
        END IF;
        FOR k, v IN SELECT * FROM jsonb_each(NEW.status_events) LOOP
            IF jsonb_typeof(v) <> 'string' OR (v #>> '{}') !~ '^[A-Za-z0-9_]+$' THEN
                RAISE EXCEPTION 'route for %: status_events value for key % must be an event suffix (letters, digits, _)', NEW.source_table, k;
            END IF;
            IF k ~ '->' AND k !~ '^[^>]*->[^>]*$' THEN
                RAISE EXCEPTION 'route for %: status_events key % must be new or old->new', NEW.source_table, k;
            END IF;
        END LOOP;
    END IF;
    NEW.updated_at := now();
    RETURN NEW;
END
$$;

CREATE FUNCTION walhook.require_column(tbl regclass, col text, what text) RETURNS void
LANGUAGE plpgsql STABLE AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_attribute
                    WHERE attrelid = tbl AND attname = col AND attnum > 0 AND NOT attisdropped) THEN
        RAISE EXCEPTION 'route for %: % names unknown column % (columns of %: %)', tbl, what, col, tbl,
            (SELECT string_agg(attname, ', ' ORDER BY attnum) FROM pg_attribute
              WHERE attrelid = tbl AND attnum > 0 AND NOT attisdropped);
    END IF;
END
$$;

CREATE TRIGGER routes_check BEFORE INSERT OR UPDATE ON walhook.routes
    FOR EACH ROW EXECUTE FUNCTION walhook.routes_check();

-- Put a routed table in every registered publication, with REPLICA IDENTITY FULL.
CREATE FUNCTION walhook.publish_table(tbl regclass) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    pub text;
BEGIN
    IF (SELECT relreplident FROM pg_class WHERE oid = tbl) <> 'f' THEN
        EXECUTE format('ALTER TABLE %s REPLICA IDENTITY FULL', tbl);
        RAISE NOTICE 'walhook: set REPLICA IDENTITY FULL on %', tbl;
    END IF;
    FOR pub IN SELECT name FROM walhook.publications LOOP
        IF NOT EXISTS (SELECT 1 FROM pg_publication_rel pr JOIN pg_publication p ON p.oid = pr.prpubid
                        WHERE p.pubname = pub AND pr.prrelid = tbl) THEN
            EXECUTE format('ALTER PUBLICATION %I ADD TABLE %s', pub, tbl);
            RAISE NOTICE 'walhook: added % to publication %', tbl, pub;
        END IF;
    END LOOP;
END
$$;

CREATE FUNCTION walhook.unpublish_table(tbl regclass) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    pub text;
BEGIN
    FOR pub IN SELECT name FROM walhook.publications LOOP
        IF EXISTS (SELECT 1 FROM pg_publication_rel pr JOIN pg_publication p ON p.oid = pr.prpubid
                    WHERE p.pubname = pub AND pr.prrelid = tbl) THEN
            EXECUTE format('ALTER PUBLICATION %I DROP TABLE %s', pub, tbl);
            RAISE NOTICE 'walhook: removed % from publication %', tbl, pub;
        END IF;
    END LOOP;
END
$$;

CREATE FUNCTION walhook.routes_publish() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP IN ('UPDATE', 'DELETE') AND (TG_OP = 'DELETE' OR OLD.source_table <> NEW.source_table) THEN
        PERFORM walhook.unpublish_table(OLD.source_table);
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        PERFORM walhook.publish_table(NEW.source_table);
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER routes_publish AFTER INSERT OR UPDATE OR DELETE ON walhook.routes
    FOR EACH ROW EXECUTE FUNCTION walhook.routes_publish();

-- Called by `walhook run` at startup: the publication exists, holds walhook's
-- config tables and every routed table, and is registered for future routes.
CREATE FUNCTION walhook.register_publication(pub text) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    tbl regclass;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_publication WHERE pubname = pub) THEN
        EXECUTE format('CREATE PUBLICATION %I FOR TABLE walhook.routes, walhook.subscriptions', pub);
        RAISE NOTICE 'walhook: created publication %', pub;
    END IF;
    INSERT INTO walhook.publications (name) VALUES (pub) ON CONFLICT DO NOTHING;
    FOR tbl IN SELECT source_table FROM walhook.routes LOOP
        PERFORM walhook.publish_table(tbl);
    END LOOP;
END
$$;
