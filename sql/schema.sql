-- The walhook schema as sql/migrations/ build it, generated: do not edit.
-- Read it to see the tables, functions and triggers as they are now; change
-- them with a new migration, then regenerate this file with
--   WALHOOK_WRITE_SCHEMA=1 cargo test --test it schema::
-- (the test schema::schema_sql_is_what_the_migrations_build fails until then).
-- Comments on tables and columns are kept; the migrations say why, as of
-- their time. Where the code has moved on since: 0004 says first attempts'
-- delivery rows are inserted already leased; since 0010 a first attempt's
-- row is written once, with its outcome, and the event's `owed` column holds
-- the obligation until then (README, Guarantees and how they are kept).

CREATE SCHEMA walhook;

CREATE FUNCTION walhook.audit() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
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

CREATE FUNCTION walhook.audit_actor() RETURNS text
    LANGUAGE sql STABLE
    AS $$
    SELECT coalesce(nullif(current_setting('walhook.actor', true), ''),
                    session_user || '/' || coalesce(current_setting('application_name', true), ''))
$$;

CREATE FUNCTION walhook.audit_redact(row_value jsonb) RETURNS jsonb
    LANGUAGE sql IMMUTABLE
    AS $$
    SELECT coalesce(jsonb_object_agg(k, CASE
               WHEN v <> 'null'::jsonb AND k IN ('secret', 'previous_secret', 'auth_token',
                                                  'auth_password', 'token_sha256', 'private_key')
               THEN '"[redacted]"'::jsonb ELSE v END), '{}'::jsonb)
      FROM jsonb_each(row_value) AS e(k, v)
$$;

CREATE FUNCTION walhook.backfills_check() RETURNS trigger
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

CREATE FUNCTION walhook.cascade_delete() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
BEGIN
    -- TG_ARGV: the referring table and its referring column
    EXECUTE format('DELETE FROM walhook.%I c USING removed r WHERE c.%I = r.id',
                   TG_ARGV[0], TG_ARGV[1]);
    RETURN NULL;
END $$;

CREATE FUNCTION walhook.cascade_truncate() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
BEGIN
    EXECUTE format('TRUNCATE walhook.%I', TG_ARGV[0]);
    RETURN NULL;
END $$;

CREATE FUNCTION walhook.check_url(url text) RETURNS void
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

CREATE FUNCTION walhook.deliveries_references_check() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
DECLARE
    locked bigint;
    missing text;
BEGIN
    PERFORM 1
       FROM (SELECT DISTINCT event_id FROM inserted) n,
            LATERAL (SELECT 1 FROM walhook.events e WHERE e.id = n.event_id FOR KEY SHARE) l;
    GET DIAGNOSTICS locked = ROW_COUNT;
    IF locked < (SELECT count(DISTINCT event_id) FROM inserted) THEN
        SELECT n.event_id INTO missing FROM inserted n
         WHERE NOT EXISTS (SELECT 1 FROM walhook.events e WHERE e.id = n.event_id)
         LIMIT 1;
        RAISE EXCEPTION 'insert on table "deliveries" refers to event %, which does not exist', missing
              USING ERRCODE = 'foreign_key_violation', SCHEMA = 'walhook', TABLE = 'deliveries',
                    COLUMN = 'event_id';
    END IF;
    PERFORM 1
       FROM (SELECT DISTINCT subscription_id FROM inserted) n,
            LATERAL (SELECT 1 FROM walhook.subscriptions s
                      WHERE s.id = n.subscription_id FOR KEY SHARE) l;
    GET DIAGNOSTICS locked = ROW_COUNT;
    IF locked < (SELECT count(DISTINCT subscription_id) FROM inserted) THEN
        SELECT n.subscription_id INTO missing FROM inserted n
         WHERE NOT EXISTS (SELECT 1 FROM walhook.subscriptions s WHERE s.id = n.subscription_id)
         LIMIT 1;
        RAISE EXCEPTION 'insert on table "deliveries" refers to subscription %, which does not exist', missing
              USING ERRCODE = 'foreign_key_violation', SCHEMA = 'walhook', TABLE = 'deliveries',
                    COLUMN = 'subscription_id';
    END IF;
    RETURN NULL;
END $$;

CREATE FUNCTION walhook.deliveries_requeue() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
BEGIN
    IF NEW.status = 'pending' AND OLD.status <> 'pending' THEN
        NEW.retry_base := NEW.attempts;
        IF OLD.lease_until IS NOT NULL AND OLD.lease_until >= now()
           AND NEW.lease_owner IS NOT DISTINCT FROM OLD.lease_owner THEN
            NEW.redeliver_requested := true;
        ELSE
            NEW.lease_owner := NULL;
            NEW.lease_until := NULL;
        END IF;
        NEW.ordered := coalesce(
            (SELECT s.ordered FROM walhook.subscriptions s WHERE s.id = NEW.subscription_id), false);
        PERFORM pg_notify('walhook_deliveries', '');
    END IF;
    RETURN NEW;
END
$$;

CREATE FUNCTION walhook.delivery_attempts_references_check() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
DECLARE
    locked bigint;
    missing text;
BEGIN
    PERFORM 1
       FROM (SELECT DISTINCT delivery_id FROM inserted) n,
            LATERAL (SELECT 1 FROM walhook.deliveries d WHERE d.id = n.delivery_id FOR KEY SHARE) l;
    GET DIAGNOSTICS locked = ROW_COUNT;
    IF locked < (SELECT count(DISTINCT delivery_id) FROM inserted) THEN
        SELECT n.delivery_id INTO missing FROM inserted n
         WHERE NOT EXISTS (SELECT 1 FROM walhook.deliveries d WHERE d.id = n.delivery_id)
         LIMIT 1;
        RAISE EXCEPTION 'insert on table "delivery_attempts" refers to delivery %, which does not exist', missing
              USING ERRCODE = 'foreign_key_violation', SCHEMA = 'walhook',
                    TABLE = 'delivery_attempts', COLUMN = 'delivery_id';
    END IF;
    RETURN NULL;
END $$;

CREATE FUNCTION walhook.disable_failing_subscriptions() RETURNS TABLE(subscription_id uuid, reason text)
    LANGUAGE sql
    AS $$
    WITH expired AS (
        SELECT h.subscription_id, h.failing_since, h.last_error
          FROM walhook.subscription_health h
          JOIN walhook.subscriptions s ON s.id = h.subscription_id
         WHERE h.state = 'failing' AND NOT s.disabled AND s.disable_after IS NOT NULL
           AND h.failing_since + s.disable_after <= now()
           FOR UPDATE OF h, s SKIP LOCKED
    ), health AS (
        UPDATE walhook.subscription_health h
           SET state = 'disabled', next_probe_at = NULL, updated_at = now()
          FROM expired e
         WHERE h.subscription_id = e.subscription_id
    )
    UPDATE walhook.subscriptions s
       SET disabled = true, disabled_at = now(),
           disabled_reason = format('failing since %s: %s',
               to_char(e.failing_since AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'),
               coalesce(e.last_error, 'no error recorded'))
      FROM expired e
     WHERE s.id = e.subscription_id
    RETURNING s.id, s.disabled_reason
$$;

CREATE FUNCTION walhook.generate_secret() RETURNS text
    LANGUAGE sql
    AS $$
    SELECT 'whsec_' || encode(decode(replace(gen_random_uuid()::text, '-', '')
                                  || replace(gen_random_uuid()::text, '-', ''), 'hex'), 'base64')
$$;

CREATE FUNCTION walhook.idna_host(host text) RETURNS text
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

CREATE FUNCTION walhook.idna_url(url text) RETURNS text
    LANGUAGE plpgsql IMMUTABLE STRICT
    AS $_$
DECLARE
    m text[];
    host text;
    port text;
BEGIN
    m := regexp_match(url, '^([A-Za-z][A-Za-z0-9+.-]*://)([^/?#]*)(.*)$');
    IF m IS NULL OR position('@' IN m[2]) > 0 OR m[2] !~ '[^\x01-\x7f]' THEN
        RETURN url;
    END IF;
    host := regexp_replace(m[2], ':[0-9]*$', '');
    port := substr(m[2], length(host) + 1);
    RETURN m[1] || walhook.idna_host(host) || port || m[3];
END
$_$;

CREATE FUNCTION walhook.insecure_targets_allowed() RETURNS boolean
    LANGUAGE sql STABLE
    AS $$
    SELECT coalesce((SELECT value = 'true' FROM walhook.settings WHERE key = 'allow_insecure_targets'), false)
$$;

CREATE FUNCTION walhook.observe_health(ids uuid[], reset boolean[], failures integer[], probes_failed integer[], errors text[], failed_at timestamp with time zone[], succeeded_at timestamp with time zone[], rate_tripped boolean[]) RETURNS TABLE(subscription_id uuid, from_state text, to_state text)
    LANGUAGE plpgsql
    AS $$
DECLARE
    o record;
    h walhook.subscription_health;
    s walhook.subscriptions;
    consecutive integer;
    probe_count integer;
BEGIN
    FOR o IN
        SELECT * FROM unnest(ids, reset, failures, probes_failed, errors, failed_at,
                             succeeded_at, rate_tripped)
               AS u(id, reset, failures, probes_failed, error, failed_at, succeeded_at, rate_tripped)
         ORDER BY u.id   -- one lock order for every instance
    LOOP
        SELECT * INTO s FROM walhook.subscriptions WHERE id = o.id;
        CONTINUE WHEN NOT FOUND;
        INSERT INTO walhook.subscription_health AS x (subscription_id) VALUES (o.id)
            ON CONFLICT ON CONSTRAINT subscription_health_pkey DO NOTHING;
        SELECT * INTO h FROM walhook.subscription_health x WHERE x.subscription_id = o.id FOR UPDATE;
        consecutive := CASE WHEN o.reset THEN o.failures ELSE h.consecutive_failures + o.failures END;
        IF h.state = 'healthy' AND NOT s.disabled AND o.failures > 0
           AND (consecutive >= s.failure_threshold OR o.rate_tripped) THEN
            -- healthy -> failing: new deliveries wait in PostgreSQL, one probe
            -- after probe_interval
            UPDATE walhook.subscription_health x
               SET state = 'failing', failing_since = now(), consecutive_failures = consecutive,
                   last_error = coalesce(o.error, h.last_error),
                   last_failure_at = coalesce(o.failed_at, h.last_failure_at),
                   last_success_at = coalesce(o.succeeded_at, h.last_success_at),
                   next_probe_at = now() + s.probe_interval, probes = 0, updated_at = now()
             WHERE x.subscription_id = o.id;
            subscription_id := o.id; from_state := 'healthy'; to_state := 'failing';
            RETURN NEXT;
        ELSIF h.state = 'failing' AND o.reset AND o.failures = 0 THEN
            -- failing -> healthy on the first success; its backlog is due now,
            -- oldest first (creation order), not at each delivery's next retry
            UPDATE walhook.subscription_health x
               SET state = 'healthy', failing_since = NULL, consecutive_failures = 0,
                   last_success_at = coalesce(o.succeeded_at, now()),
                   next_probe_at = NULL, probes = 0, updated_at = now()
             WHERE x.subscription_id = o.id;
            UPDATE walhook.deliveries d
               SET next_attempt_at = least(d.next_attempt_at, d.created_at)
             WHERE d.subscription_id = o.id AND d.status = 'pending' AND d.next_attempt_at > now();
            PERFORM pg_notify('walhook_deliveries', '');
            subscription_id := o.id; from_state := 'failing'; to_state := 'healthy';
            RETURN NEXT;
        ELSE
            -- counters only; a failed probe doubles the wait for the next one
            -- (at most 32 times probe_interval)
            probe_count := h.probes + CASE WHEN h.state = 'failing' THEN o.probes_failed ELSE 0 END;
            UPDATE walhook.subscription_health x
               SET consecutive_failures = consecutive,
                   last_error = coalesce(o.error, h.last_error),
                   last_failure_at = coalesce(o.failed_at, h.last_failure_at),
                   last_success_at = coalesce(o.succeeded_at, h.last_success_at),
                   probes = probe_count,
                   next_probe_at = CASE
                       WHEN h.state = 'failing' AND o.probes_failed > 0
                       THEN now() + s.probe_interval * power(2, least(probe_count, 5))
                       ELSE h.next_probe_at END,
                   updated_at = now()
             WHERE x.subscription_id = o.id;
        END IF;
    END LOOP;
END
$$;

CREATE FUNCTION walhook.payload_strings(payload jsonb) RETURNS SETOF text
    LANGUAGE sql IMMUTABLE
    AS $$
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

CREATE FUNCTION walhook.publish_table(tbl regclass) RETURNS void
    LANGUAGE plpgsql
    AS $$
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

CREATE FUNCTION walhook.punycode_encode(label text) RETURNS text
    LANGUAGE plpgsql IMMUTABLE STRICT
    AS $$
DECLARE
    base  CONSTANT int := 36;
    tmin  CONSTANT int := 1;
    tmax  CONSTANT int := 26;
    skew  CONSTANT int := 38;
    damp  CONSTANT int := 700;
    cps   int[] := '{}';
    len   int := length(label);
    n     int := 128;
    delta bigint := 0;
    bias  int := 72;
    h     int;
    b     int;
    m     int;
    q     bigint;
    k     int;
    t     int;
    d     int;
    c     int;
    out   text := '';
BEGIN
    FOR i IN 1 .. len LOOP
        cps := cps || ascii(substr(label, i, 1));
    END LOOP;
    FOREACH c IN ARRAY cps LOOP
        IF c < 128 THEN
            out := out || chr(c);
        END IF;
    END LOOP;
    b := length(out);
    h := b;
    IF b > 0 THEN
        out := out || '-';
    END IF;
    WHILE h < len LOOP
        SELECT min(x) INTO m FROM unnest(cps) x WHERE x >= n;
        delta := delta + (m - n)::bigint * (h + 1);
        n := m;
        FOREACH c IN ARRAY cps LOOP
            IF c < n THEN
                delta := delta + 1;
            ELSIF c = n THEN
                q := delta;
                k := base;
                LOOP
                    t := CASE WHEN k <= bias THEN tmin WHEN k >= bias + tmax THEN tmax ELSE k - bias END;
                    EXIT WHEN q < t;
                    d := t + ((q - t) % (base - t))::int;
                    out := out || chr(CASE WHEN d < 26 THEN 97 + d ELSE 22 + d END);
                    q := (q - t) / (base - t);
                    k := k + base;
                END LOOP;
                out := out || chr(CASE WHEN q < 26 THEN 97 + q::int ELSE 22 + q::int END);
                -- adapt(delta, h + 1, h = b)
                delta := CASE WHEN h = b THEN delta / damp ELSE delta / 2 END;
                delta := delta + delta / (h + 1);
                k := 0;
                WHILE delta > ((base - tmin) * tmax) / 2 LOOP
                    delta := delta / (base - tmin);
                    k := k + base;
                END LOOP;
                bias := k + ((base - tmin + 1) * delta) / (delta + skew);
                delta := 0;
                h := h + 1;
            END IF;
        END LOOP;
        delta := delta + 1;
        n := n + 1;
    END LOOP;
    RETURN out;
END
$$;

CREATE FUNCTION walhook.redeliver(delivery_id bigint) RETURNS void
    LANGUAGE sql
    AS $$
    UPDATE walhook.deliveries
       SET redeliver_requested = true
     WHERE id = delivery_id AND lease_until IS NOT NULL AND lease_until >= now();
    UPDATE walhook.deliveries
       SET status = 'pending', next_attempt_at = now(), lease_owner = NULL, lease_until = NULL,
           retry_base = attempts
     WHERE id = delivery_id AND (lease_until IS NULL OR lease_until < now());
    SELECT pg_notify('walhook_deliveries', '');
$$;

CREATE FUNCTION walhook.references_unchanged() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
BEGIN
    RAISE EXCEPTION 'walhook.%.% cannot change: insert another row instead', TG_TABLE_NAME, TG_ARGV[0]
          USING ERRCODE = 'foreign_key_violation';
END $$;

CREATE FUNCTION walhook.register_publication(pub text) RETURNS void
    LANGUAGE plpgsql
    AS $$
DECLARE
    tbl regclass;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_publication WHERE pubname = pub) THEN
        EXECUTE format('CREATE PUBLICATION %I FOR TABLE walhook.routes, walhook.subscriptions, walhook.subscription_health', pub);
        RAISE NOTICE 'walhook: created publication %', pub;
    END IF;
    INSERT INTO walhook.publications (name) VALUES (pub) ON CONFLICT DO NOTHING;
    PERFORM walhook.publish_table('walhook.subscription_health');
    FOR tbl IN SELECT source_table FROM walhook.routes LOOP
        PERFORM walhook.publish_table(tbl);
    END LOOP;
END
$$;

CREATE FUNCTION walhook.require_column(tbl regclass, col text, what text) RETURNS void
    LANGUAGE plpgsql STABLE
    AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_attribute
                    WHERE attrelid = tbl AND attname = col AND attnum > 0 AND NOT attisdropped) THEN
        RAISE EXCEPTION 'route for %: % names unknown column % (columns of %: %)', tbl, what, col, tbl,
            (SELECT string_agg(attname, ', ' ORDER BY attnum) FROM pg_attribute
              WHERE attrelid = tbl AND attnum > 0 AND NOT attisdropped);
    END IF;
END
$$;

CREATE FUNCTION walhook.routes_check() RETURNS trigger
    LANGUAGE plpgsql
    AS $_$
DECLARE
    col text;
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
                -- {changed} is the list of changed columns, {old.col} a column's previous value
                CONTINUE WHEN col IN ('*', 'changed');
                IF left(col, 4) = 'old.' AND length(col) > 4 THEN
                    col := substr(col, 5);
                END IF;
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
    IF NEW.event_names IS NOT NULL THEN
        IF jsonb_typeof(NEW.event_names) <> 'object' THEN
            RAISE EXCEPTION 'route for %: event_names must be an object like {"insert":"assigned","delete":"unassigned"}', NEW.source_table;
        END IF;
        FOR k, v IN SELECT * FROM jsonb_each(NEW.event_names) LOOP
            IF k NOT IN ('insert', 'update', 'delete') THEN
                RAISE EXCEPTION 'route for %: event_names key % must be insert, update or delete', NEW.source_table, k;
            END IF;
            IF jsonb_typeof(v) <> 'string' OR (v #>> '{}') !~ '^[A-Za-z0-9_]+$' THEN
                RAISE EXCEPTION 'route for %: event_names value for key % must be an event suffix (letters, digits, _), not %', NEW.source_table, k, v;
            END IF;
        END LOOP;
    END IF;
    IF NEW.bulk_delete_event IS NOT NULL AND NEW.bulk_delete_event !~ '^[A-Za-z0-9_]+$' THEN
        RAISE EXCEPTION 'route for %: bulk_delete_event must be an event suffix (letters, digits, _) such as bulk_deleted, not %', NEW.source_table, NEW.bulk_delete_event;
    END IF;
    NEW.updated_at := now();
    RETURN NEW;
END
$_$;

CREATE FUNCTION walhook.routes_publish() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
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

CREATE FUNCTION walhook.settings_check() RETURNS trigger
    LANGUAGE plpgsql
    AS $_$
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
    WHEN 'attempt_request_headers' THEN
        IF lower(NEW.value) NOT IN ('all', 'failed', 'none') THEN
            RAISE EXCEPTION 'setting attempt_request_headers must be all, failed or none, not %', NEW.value;
        END IF;
        NEW.value := lower(NEW.value);
    WHEN 'max_pending_rows' THEN
        IF NEW.value !~ '^[0-9]{1,9}$' OR NEW.value::int < 100 THEN
            RAISE EXCEPTION 'setting max_pending_rows must be an integer from 100 to 999999999, such as 10000, not %', NEW.value;
        END IF;
    WHEN 'first_attempt_hold' THEN
        BEGIN
            IF NOT (NEW.value::interval > interval '0' AND NEW.value::interval <= interval '1 minute') THEN
                RAISE EXCEPTION 'out of range';
            END IF;
        EXCEPTION WHEN OTHERS THEN
            RAISE EXCEPTION 'setting first_attempt_hold must be an interval above 0 and at most 1 minute, such as ''1 second'', not %', NEW.value;
        END;
    ELSE
        RAISE EXCEPTION 'unknown setting %: known settings are allow_insecure_targets, event_retention, attempt_retention, audit_retention, max_payload_bytes, first_attempt_hold, attempt_request_headers, max_pending_rows', NEW.key;
    END CASE;
    RETURN NEW;
END
$_$;

CREATE FUNCTION walhook.subscriptions_check() RETURNS trigger
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

CREATE FUNCTION walhook.subscriptions_filter_check() RETURNS trigger
    LANGUAGE plpgsql
    AS $_$
DECLARE
    -- the document's shape, with every part present and empty
    sample constant jsonb := '{"new": {}, "old": {}, "changed": [], "type": "resource.updated", "apiresource": "/"}';
    problem text;
BEGIN
    IF NEW.filter IS NULL THEN
        RETURN NEW;
    END IF;
    BEGIN
        PERFORM jsonb_path_match(sample, NEW.filter);
    EXCEPTION WHEN OTHERS THEN
        GET STACKED DIAGNOSTICS problem = MESSAGE_TEXT;
        RAISE EXCEPTION USING
            ERRCODE = 'check_violation',
            COLUMN = 'filter',
            MESSAGE = format('filter rule predicate: %L is not a predicate over {new, old, changed, type, apiresource} (%s)',
                             NEW.filter, problem),
            HINT = 'write a condition such as $.new.status == "suspended" && $.old.status != "suspended", '
                   'exists($.changed ? (@ == "email")) or $.type starts with "organisation."';
    END;
    RETURN NEW;
END
$_$;

CREATE FUNCTION walhook.subscriptions_health_reset() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
BEGIN
    IF OLD.disabled AND NOT NEW.disabled THEN
        NEW.disabled_reason := NULL;
        NEW.disabled_at := NULL;
        UPDATE walhook.subscription_health
           SET state = 'healthy', failing_since = NULL, consecutive_failures = 0,
               next_probe_at = NULL, probes = 0, updated_at = now()
         WHERE subscription_id = NEW.id AND state <> 'healthy';
    ELSIF NEW.disabled AND NOT OLD.disabled AND NEW.disabled_at IS NULL THEN
        NEW.disabled_at := now();
    END IF;
    RETURN NEW;
END
$$;

CREATE FUNCTION walhook.subscriptions_idna() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
BEGIN
    NEW.url := walhook.idna_url(NEW.url);
    RETURN NEW;
END
$$;

CREATE FUNCTION walhook.subscriptions_ordered_pending() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
BEGIN
    UPDATE walhook.deliveries SET ordered = NEW.ordered
     WHERE subscription_id = NEW.id AND status = 'pending';
    RETURN NULL;
END
$$;

CREATE FUNCTION walhook.subscriptions_retry_schedule_check() RETURNS trigger
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

CREATE FUNCTION walhook.subscriptions_signature_schemes_check() RETURNS trigger
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

CREATE FUNCTION walhook.template_columns(template text) RETURNS SETOF text
    LANGUAGE plpgsql IMMUTABLE
    AS $$
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

CREATE FUNCTION walhook.unicode_lower(s text) RETURNS text
    LANGUAGE plpgsql IMMUTABLE STRICT
    AS $$
BEGIN
    RETURN lower(s COLLATE "und-x-icu");
EXCEPTION WHEN undefined_object OR feature_not_supported THEN
    RETURN lower(s);
END
$$;

CREATE FUNCTION walhook.unpublish_table(tbl regclass) RETURNS void
    LANGUAGE plpgsql
    AS $$
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

CREATE TABLE walhook.api_tokens (
    name text NOT NULL,
    token_sha256 text NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT api_tokens_name_check CHECK ((name ~ '^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$'::text)),
    CONSTRAINT api_tokens_token_sha256_check CHECK ((token_sha256 ~ '^[0-9a-f]{64}$'::text))
);

CREATE TABLE walhook.audit_log (
    id bigint NOT NULL,
    at timestamp with time zone DEFAULT now() NOT NULL,
    actor text NOT NULL,
    action text NOT NULL,
    object text NOT NULL,
    object_id text,
    before jsonb,
    after jsonb,
    CONSTRAINT audit_log_action_check CHECK ((action = ANY (ARRAY['insert'::text, 'update'::text, 'delete'::text, 'slot_recreate'::text])))
);

ALTER TABLE walhook.audit_log ALTER COLUMN id ADD GENERATED ALWAYS AS IDENTITY (
    SEQUENCE NAME walhook.audit_log_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1
);

CREATE TABLE walhook.backfills (
    id uuid DEFAULT gen_random_uuid() NOT NULL,
    subscription_id uuid NOT NULL,
    source_table regclass NOT NULL,
    where_clause text,
    status text DEFAULT 'pending'::text NOT NULL,
    rows_sent bigint DEFAULT 0 NOT NULL,
    cursor jsonb,
    rows_per_second integer,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    started_at timestamp with time zone,
    finished_at timestamp with time zone,
    error text,
    CONSTRAINT backfills_rows_per_second_check CHECK ((rows_per_second > 0)),
    CONSTRAINT backfills_status_check CHECK ((status = ANY (ARRAY['pending'::text, 'running'::text, 'done'::text, 'cancelled'::text, 'failed'::text])))
);

CREATE TABLE walhook.deferrals (
    subscription_id uuid NOT NULL,
    after_lsn pg_lsn NOT NULL,
    after_seq integer NOT NULL,
    after_id uuid NOT NULL,
    last_lsn pg_lsn NOT NULL,
    last_seq integer NOT NULL,
    last_id uuid NOT NULL,
    deferred bigint DEFAULT 0 NOT NULL,
    materialised bigint DEFAULT 0 NOT NULL,
    generation bigint NOT NULL,
    since timestamp with time zone DEFAULT now() NOT NULL,
    updated_at timestamp with time zone DEFAULT now() NOT NULL
);

COMMENT ON TABLE walhook.deferrals IS 'a slow or failing subscription whose deliveries wait in walhook.events.deferred: they have rows up to (after_lsn, after_seq, after_id)';

COMMENT ON COLUMN walhook.deferrals.after_lsn IS 'with after_seq and after_id: the deferred deliveries up to this event (commit_lsn, seq, id) have rows';

COMMENT ON COLUMN walhook.deferrals.last_lsn IS 'with last_seq and last_id: the last event (commit_lsn, seq, id) that deferred a delivery';

COMMENT ON COLUMN walhook.deferrals.deferred IS 'deliveries deferred in all (events stored naming the subscription)';

COMMENT ON COLUMN walhook.deferrals.materialised IS 'deferred deliveries given their rows in all';

COMMENT ON COLUMN walhook.deferrals.generation IS 'new for every deferral: ending one names it, so a deferral begun again since is kept';

ALTER TABLE walhook.deferrals ALTER COLUMN generation ADD GENERATED ALWAYS AS IDENTITY (
    SEQUENCE NAME walhook.deferrals_generation_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1
);

CREATE TABLE walhook.deliveries (
    id bigint NOT NULL,
    event_id uuid NOT NULL,
    subscription_id uuid NOT NULL,
    status text DEFAULT 'pending'::text NOT NULL,
    attempts integer DEFAULT 0 NOT NULL,
    retry_base integer DEFAULT 0 NOT NULL,
    next_attempt_at timestamp with time zone DEFAULT now() NOT NULL,
    last_status_code integer,
    last_error text,
    last_attempt_at timestamp with time zone,
    lease_owner uuid,
    lease_until timestamp with time zone,
    apiresource text NOT NULL,
    commit_lsn pg_lsn NOT NULL,
    seq integer DEFAULT 0 NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    redeliver_requested boolean DEFAULT false NOT NULL,
    ordered boolean DEFAULT false NOT NULL,
    CONSTRAINT deliveries_status_check CHECK ((status = ANY (ARRAY['pending'::text, 'succeeded'::text, 'failed'::text])))
)
WITH (fillfactor='70');

COMMENT ON COLUMN walhook.deliveries.ordered IS 'its subscription is ordered (kept for pending rows): the delivery is in deliveries_ordered_idx';

ALTER TABLE walhook.deliveries ALTER COLUMN id ADD GENERATED ALWAYS AS IDENTITY (
    SEQUENCE NAME walhook.deliveries_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1
);

CREATE TABLE walhook.delivery_attempts (
    id bigint NOT NULL,
    delivery_id bigint NOT NULL,
    attempt integer NOT NULL,
    attempted_at timestamp with time zone NOT NULL,
    duration_ms integer NOT NULL,
    status_code integer,
    error text,
    response_body text,
    instance_id uuid,
    request_headers jsonb
);

COMMENT ON COLUMN walhook.delivery_attempts.request_headers IS 'headers the attempt sent that walhook sets (signatures, webhook-id, timestamp, ...), without authorization or the subscription''s own headers; NULL when no request was built';

ALTER TABLE walhook.delivery_attempts ALTER COLUMN id ADD GENERATED ALWAYS AS IDENTITY (
    SEQUENCE NAME walhook.delivery_attempts_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1
);

CREATE TABLE walhook.delivery_marks (
    slot_name text NOT NULL,
    materialised_lsn pg_lsn NOT NULL,
    updated_at timestamp with time zone DEFAULT now() NOT NULL
);

COMMENT ON TABLE walhook.delivery_marks IS 'per slot: every owed delivery of an event committed before materialised_lsn has its walhook.deliveries row';

CREATE TABLE walhook.events (
    id uuid NOT NULL,
    type text NOT NULL,
    apiresource text NOT NULL,
    revision bigint NOT NULL,
    commit_lsn pg_lsn NOT NULL,
    commit_time timestamp with time zone NOT NULL,
    source_table text,
    body json,
    error text,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    seq integer,
    owed uuid[],
    deferred uuid[]
);

COMMENT ON COLUMN walhook.events.owed IS 'subscriptions whose delivery was handed to the streaming instance''s memory when the event was stored (no delivery row yet); walhook.delivery_marks says up to where they all have rows';

COMMENT ON COLUMN walhook.events.deferred IS 'subscriptions this event owes a delivery that gets its row later (walhook.deferrals)';

CREATE TABLE walhook.publications (
    name text NOT NULL
);

CREATE TABLE walhook.routes (
    source_table regclass NOT NULL,
    resource text NOT NULL,
    apiresource text NOT NULL,
    payload jsonb,
    revision_column text,
    status_column text,
    status_events jsonb,
    exclude_columns text[] DEFAULT '{}'::text[] NOT NULL,
    enabled boolean DEFAULT true NOT NULL,
    source_oid oid,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    updated_at timestamp with time zone DEFAULT now() NOT NULL,
    event_names jsonb,
    bulk_delete_event text
);

ALTER TABLE ONLY walhook.routes REPLICA IDENTITY FULL;

CREATE TABLE walhook.schema_migrations (
    version integer NOT NULL,
    name text NOT NULL,
    applied_at timestamp with time zone DEFAULT now() NOT NULL
);

CREATE TABLE walhook.settings (
    key text NOT NULL,
    value text NOT NULL
);

CREATE TABLE walhook.signing_keys (
    kid text NOT NULL,
    public_key bytea NOT NULL,
    private_key bytea NOT NULL,
    created_at timestamp with time zone DEFAULT clock_timestamp() NOT NULL,
    retired_at timestamp with time zone
);

CREATE TABLE walhook.slot_identity (
    slot_name text NOT NULL,
    system_identifier text NOT NULL,
    created_lsn pg_lsn NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    confirmed_lsn pg_lsn NOT NULL,
    confirmed_at timestamp with time zone DEFAULT now() NOT NULL,
    lost_wal_bytes bigint DEFAULT 0 NOT NULL,
    recreations integer DEFAULT 0 NOT NULL,
    CONSTRAINT slot_identity_lost_wal_bytes_check CHECK ((lost_wal_bytes >= 0)),
    CONSTRAINT slot_identity_recreations_check CHECK ((recreations >= 0))
);

COMMENT ON TABLE walhook.slot_identity IS 'per slot: the slot walhook consumes and the highest position it may have confirmed on it; a missing slot, or one confirmed past confirmed_lsn, stops walhook (walhook slot recreate)';

CREATE TABLE walhook.subscription_health (
    subscription_id uuid NOT NULL,
    state text DEFAULT 'healthy'::text NOT NULL,
    failing_since timestamp with time zone,
    consecutive_failures integer DEFAULT 0 NOT NULL,
    last_error text,
    last_failure_at timestamp with time zone,
    last_success_at timestamp with time zone,
    next_probe_at timestamp with time zone,
    probes integer DEFAULT 0 NOT NULL,
    updated_at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT subscription_health_state_check CHECK ((state = ANY (ARRAY['healthy'::text, 'failing'::text, 'disabled'::text])))
);

ALTER TABLE ONLY walhook.subscription_health REPLICA IDENTITY FULL;

COMMENT ON TABLE walhook.subscription_health IS 'endpoint health per subscription, kept by the delivering instances (no row: healthy)';

CREATE TABLE walhook.subscriptions (
    id uuid DEFAULT gen_random_uuid() NOT NULL,
    name text,
    description text,
    url text NOT NULL,
    events text[] DEFAULT '{*}'::text[] NOT NULL,
    disabled boolean DEFAULT false NOT NULL,
    headers jsonb DEFAULT '{}'::jsonb NOT NULL,
    query_params jsonb DEFAULT '{}'::jsonb NOT NULL,
    auth_type text DEFAULT 'none'::text NOT NULL,
    auth_token text,
    auth_username text,
    auth_password text,
    secret text DEFAULT walhook.generate_secret() NOT NULL,
    previous_secret text,
    previous_secret_expires_at timestamp with time zone,
    timeout_ms integer DEFAULT 3000 NOT NULL,
    retry_schedule interval[] DEFAULT '{00:00:05,00:05:00,00:30:00,02:00:00,05:00:00,10:00:00,10:00:00}'::interval[] NOT NULL,
    max_in_flight integer DEFAULT 32 NOT NULL,
    ordered boolean DEFAULT false NOT NULL,
    envelope text DEFAULT 'none'::text NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    updated_at timestamp with time zone DEFAULT now() NOT NULL,
    signature_schemes text[] DEFAULT '{v1,v1a,rfc9421}'::text[] NOT NULL,
    filter jsonpath,
    rate_limit double precision,
    failure_threshold integer DEFAULT 5 NOT NULL,
    failure_rate_threshold double precision DEFAULT 0.5 NOT NULL,
    failure_window interval DEFAULT '00:05:00'::interval NOT NULL,
    failure_window_min_attempts integer DEFAULT 10 NOT NULL,
    probe_interval interval DEFAULT '00:00:30'::interval NOT NULL,
    disable_after interval DEFAULT '5 days'::interval,
    disabled_reason text,
    disabled_at timestamp with time zone,
    CONSTRAINT subscriptions_auth_type_check CHECK ((auth_type = ANY (ARRAY['none'::text, 'bearer'::text, 'basic'::text]))),
    CONSTRAINT subscriptions_disable_after_check CHECK (((disable_after IS NULL) OR ((disable_after >= '00:00:01'::interval) AND (disable_after <= '365 days'::interval)))),
    CONSTRAINT subscriptions_envelope_check CHECK ((envelope = ANY (ARRAY['none'::text, 'standard'::text]))),
    CONSTRAINT subscriptions_failure_rate_threshold_check CHECK (((failure_rate_threshold > (0)::double precision) AND (failure_rate_threshold <= (1)::double precision))),
    CONSTRAINT subscriptions_failure_threshold_check CHECK (((failure_threshold >= 1) AND (failure_threshold <= 10000))),
    CONSTRAINT subscriptions_failure_window_check CHECK (((failure_window >= '00:00:01'::interval) AND (failure_window <= '1 day'::interval))),
    CONSTRAINT subscriptions_failure_window_min_attempts_check CHECK (((failure_window_min_attempts >= 1) AND (failure_window_min_attempts <= 1000000))),
    CONSTRAINT subscriptions_max_in_flight_check CHECK (((max_in_flight >= 1) AND (max_in_flight <= 10000))),
    CONSTRAINT subscriptions_probe_interval_check CHECK (((probe_interval >= '00:00:00.1'::interval) AND (probe_interval <= '01:00:00'::interval))),
    CONSTRAINT subscriptions_rate_limit_check CHECK (((rate_limit IS NULL) OR ((rate_limit > (0)::double precision) AND (rate_limit <= (100000)::double precision)))),
    CONSTRAINT subscriptions_timeout_ms_check CHECK (((timeout_ms >= 1) AND (timeout_ms <= 300000)))
);

ALTER TABLE ONLY walhook.subscriptions REPLICA IDENTITY FULL;

COMMENT ON COLUMN walhook.subscriptions.filter IS 'SQL/JSON path predicate over {new, old, changed, type, apiresource}; an event that does not match creates no delivery for this subscription (NULL: all)';

COMMENT ON COLUMN walhook.subscriptions.rate_limit IS 'deliveries per second, per instance (NULL: no limit); excess deliveries wait without using retries';

COMMENT ON COLUMN walhook.subscriptions.disabled_reason IS 'why walhook disabled it (failing since <time>: <last error>); cleared when enabled again';

COMMENT ON COLUMN walhook.subscriptions.disabled_at IS 'when it was disabled (by walhook or by hand); cleared when enabled again';

ALTER TABLE ONLY walhook.api_tokens
    ADD CONSTRAINT api_tokens_pkey PRIMARY KEY (name);

ALTER TABLE ONLY walhook.api_tokens
    ADD CONSTRAINT api_tokens_token_sha256_key UNIQUE (token_sha256);

ALTER TABLE ONLY walhook.audit_log
    ADD CONSTRAINT audit_log_pkey PRIMARY KEY (id);

ALTER TABLE ONLY walhook.backfills
    ADD CONSTRAINT backfills_pkey PRIMARY KEY (id);

ALTER TABLE ONLY walhook.deferrals
    ADD CONSTRAINT deferrals_pkey PRIMARY KEY (subscription_id);

ALTER TABLE ONLY walhook.deliveries
    ADD CONSTRAINT deliveries_event_id_subscription_id_key UNIQUE (event_id, subscription_id);

ALTER TABLE ONLY walhook.deliveries
    ADD CONSTRAINT deliveries_pkey PRIMARY KEY (id);

ALTER TABLE ONLY walhook.delivery_attempts
    ADD CONSTRAINT delivery_attempts_delivery_id_attempt_key UNIQUE (delivery_id, attempt);

ALTER TABLE ONLY walhook.delivery_attempts
    ADD CONSTRAINT delivery_attempts_pkey PRIMARY KEY (id);

ALTER TABLE ONLY walhook.delivery_marks
    ADD CONSTRAINT delivery_marks_pkey PRIMARY KEY (slot_name);

ALTER TABLE ONLY walhook.events
    ADD CONSTRAINT events_pkey PRIMARY KEY (id);

ALTER TABLE ONLY walhook.publications
    ADD CONSTRAINT publications_pkey PRIMARY KEY (name);

ALTER TABLE ONLY walhook.routes
    ADD CONSTRAINT routes_pkey PRIMARY KEY (source_table);

ALTER TABLE ONLY walhook.schema_migrations
    ADD CONSTRAINT schema_migrations_pkey PRIMARY KEY (version);

ALTER TABLE ONLY walhook.settings
    ADD CONSTRAINT settings_pkey PRIMARY KEY (key);

ALTER TABLE ONLY walhook.signing_keys
    ADD CONSTRAINT signing_keys_pkey PRIMARY KEY (kid);

ALTER TABLE ONLY walhook.slot_identity
    ADD CONSTRAINT slot_identity_pkey PRIMARY KEY (slot_name);

ALTER TABLE ONLY walhook.subscription_health
    ADD CONSTRAINT subscription_health_pkey PRIMARY KEY (subscription_id);

ALTER TABLE ONLY walhook.subscriptions
    ADD CONSTRAINT subscriptions_pkey PRIMARY KEY (id);

CREATE INDEX audit_log_at_idx ON walhook.audit_log USING btree (at);

CREATE INDEX audit_log_object_idx ON walhook.audit_log USING btree (object, object_id);

CREATE INDEX backfills_unfinished_idx ON walhook.backfills USING btree (created_at) WHERE (status = ANY (ARRAY['pending'::text, 'running'::text]));

CREATE INDEX deliveries_claim_idx ON walhook.deliveries USING btree (subscription_id, next_attempt_at, id) WHERE (status = 'pending'::text);

CREATE INDEX deliveries_ordered_idx ON walhook.deliveries USING btree (subscription_id, apiresource, commit_lsn, seq) WHERE ((status = 'pending'::text) AND ordered);

CREATE INDEX deliveries_subscription_id_idx ON walhook.deliveries USING btree (subscription_id, id);

CREATE INDEX deliveries_unfinished_idx ON walhook.deliveries USING btree (subscription_id, status) WHERE (status <> 'succeeded'::text);

CREATE INDEX delivery_attempts_time_idx ON walhook.delivery_attempts USING btree (attempted_at);

CREATE INDEX events_apiresource_revision_idx ON walhook.events USING btree (apiresource, revision);

CREATE INDEX events_commit_lsn_brin ON walhook.events USING brin (commit_lsn);

CREATE INDEX events_commit_time_idx ON walhook.events USING btree (commit_time);

CREATE INDEX events_deferred_idx ON walhook.events USING btree (commit_lsn, seq, id) WHERE (deferred IS NOT NULL);

CREATE TRIGGER audit AFTER INSERT OR DELETE OR UPDATE ON walhook.api_tokens FOR EACH ROW EXECUTE FUNCTION walhook.audit('name');

CREATE TRIGGER audit AFTER INSERT OR DELETE OR UPDATE ON walhook.routes FOR EACH ROW EXECUTE FUNCTION walhook.audit('source_table');

CREATE TRIGGER audit AFTER INSERT OR DELETE OR UPDATE ON walhook.settings FOR EACH ROW EXECUTE FUNCTION walhook.audit('key');

CREATE TRIGGER audit AFTER INSERT OR DELETE OR UPDATE ON walhook.signing_keys FOR EACH ROW EXECUTE FUNCTION walhook.audit('kid');

CREATE TRIGGER audit AFTER INSERT OR DELETE OR UPDATE ON walhook.subscriptions FOR EACH ROW EXECUTE FUNCTION walhook.audit('id');

CREATE TRIGGER backfills_check BEFORE INSERT OR UPDATE ON walhook.backfills FOR EACH ROW EXECUTE FUNCTION walhook.backfills_check();

CREATE TRIGGER deliveries_cascade AFTER DELETE ON walhook.deliveries REFERENCING OLD TABLE AS removed FOR EACH STATEMENT EXECUTE FUNCTION walhook.cascade_delete('delivery_attempts', 'delivery_id');

CREATE TRIGGER deliveries_event_unchanged BEFORE UPDATE OF event_id ON walhook.deliveries FOR EACH ROW WHEN ((old.event_id IS DISTINCT FROM new.event_id)) EXECUTE FUNCTION walhook.references_unchanged('event_id');

CREATE TRIGGER deliveries_references AFTER INSERT ON walhook.deliveries REFERENCING NEW TABLE AS inserted FOR EACH STATEMENT EXECUTE FUNCTION walhook.deliveries_references_check();

CREATE TRIGGER deliveries_requeue BEFORE UPDATE OF status ON walhook.deliveries FOR EACH ROW EXECUTE FUNCTION walhook.deliveries_requeue();

CREATE TRIGGER deliveries_subscription_unchanged BEFORE UPDATE OF subscription_id ON walhook.deliveries FOR EACH ROW WHEN ((old.subscription_id IS DISTINCT FROM new.subscription_id)) EXECUTE FUNCTION walhook.references_unchanged('subscription_id');

CREATE TRIGGER deliveries_truncate AFTER TRUNCATE ON walhook.deliveries FOR EACH STATEMENT EXECUTE FUNCTION walhook.cascade_truncate('delivery_attempts');

CREATE TRIGGER delivery_attempts_delivery_unchanged BEFORE UPDATE OF delivery_id ON walhook.delivery_attempts FOR EACH ROW WHEN ((old.delivery_id IS DISTINCT FROM new.delivery_id)) EXECUTE FUNCTION walhook.references_unchanged('delivery_id');

CREATE TRIGGER delivery_attempts_references AFTER INSERT ON walhook.delivery_attempts REFERENCING NEW TABLE AS inserted FOR EACH STATEMENT EXECUTE FUNCTION walhook.delivery_attempts_references_check();

CREATE TRIGGER events_cascade AFTER DELETE ON walhook.events REFERENCING OLD TABLE AS removed FOR EACH STATEMENT EXECUTE FUNCTION walhook.cascade_delete('deliveries', 'event_id');

CREATE TRIGGER events_truncate AFTER TRUNCATE ON walhook.events FOR EACH STATEMENT EXECUTE FUNCTION walhook.cascade_truncate('deliveries');

CREATE TRIGGER routes_check BEFORE INSERT OR UPDATE ON walhook.routes FOR EACH ROW EXECUTE FUNCTION walhook.routes_check();

CREATE TRIGGER routes_publish AFTER INSERT OR DELETE OR UPDATE ON walhook.routes FOR EACH ROW EXECUTE FUNCTION walhook.routes_publish();

CREATE TRIGGER settings_check BEFORE INSERT OR UPDATE ON walhook.settings FOR EACH ROW EXECUTE FUNCTION walhook.settings_check();

CREATE TRIGGER subscriptions_0_idna BEFORE INSERT OR UPDATE ON walhook.subscriptions FOR EACH ROW EXECUTE FUNCTION walhook.subscriptions_idna();

CREATE TRIGGER subscriptions_1_retry_schedule_check BEFORE INSERT OR UPDATE OF retry_schedule ON walhook.subscriptions FOR EACH ROW EXECUTE FUNCTION walhook.subscriptions_retry_schedule_check();

CREATE TRIGGER subscriptions_2_filter_check BEFORE INSERT OR UPDATE OF filter ON walhook.subscriptions FOR EACH ROW EXECUTE FUNCTION walhook.subscriptions_filter_check();

CREATE TRIGGER subscriptions_cascade AFTER DELETE ON walhook.subscriptions REFERENCING OLD TABLE AS removed FOR EACH STATEMENT EXECUTE FUNCTION walhook.cascade_delete('deliveries', 'subscription_id');

CREATE TRIGGER subscriptions_check BEFORE INSERT OR UPDATE ON walhook.subscriptions FOR EACH ROW EXECUTE FUNCTION walhook.subscriptions_check();

CREATE TRIGGER subscriptions_health_reset BEFORE UPDATE OF disabled ON walhook.subscriptions FOR EACH ROW EXECUTE FUNCTION walhook.subscriptions_health_reset();

CREATE TRIGGER subscriptions_ordered_pending AFTER UPDATE OF ordered ON walhook.subscriptions FOR EACH ROW WHEN ((old.ordered IS DISTINCT FROM new.ordered)) EXECUTE FUNCTION walhook.subscriptions_ordered_pending();

CREATE TRIGGER subscriptions_signature_schemes_check BEFORE INSERT OR UPDATE OF signature_schemes ON walhook.subscriptions FOR EACH ROW EXECUTE FUNCTION walhook.subscriptions_signature_schemes_check();

CREATE TRIGGER subscriptions_truncate AFTER TRUNCATE ON walhook.subscriptions FOR EACH STATEMENT EXECUTE FUNCTION walhook.cascade_truncate('deliveries');

ALTER TABLE ONLY walhook.backfills
    ADD CONSTRAINT backfills_subscription_id_fkey FOREIGN KEY (subscription_id) REFERENCES walhook.subscriptions(id) ON DELETE CASCADE;

ALTER TABLE ONLY walhook.deferrals
    ADD CONSTRAINT deferrals_subscription_id_fkey FOREIGN KEY (subscription_id) REFERENCES walhook.subscriptions(id) ON DELETE CASCADE;

ALTER TABLE ONLY walhook.subscription_health
    ADD CONSTRAINT subscription_health_subscription_id_fkey FOREIGN KEY (subscription_id) REFERENCES walhook.subscriptions(id) ON DELETE CASCADE;

