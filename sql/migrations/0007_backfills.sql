-- Backfills: the current rows of a routed table sent to one subscription as
-- `<resource>.snapshot` events, read in primary-key chunks bracketed by WAL
-- watermarks (see src/backfill/). Start one with an INSERT (or `walhook
-- backfill`), cancel it with UPDATE ... SET status = 'cancelled'.

CREATE TABLE walhook.backfills (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    subscription_id uuid NOT NULL REFERENCES walhook.subscriptions (id) ON DELETE CASCADE,
    source_table    regclass NOT NULL,
    where_clause    text,
    status          text NOT NULL DEFAULT 'pending'
                    CHECK (status IN ('pending', 'running', 'done', 'cancelled', 'failed')),
    -- snapshot events stored so far
    rows_sent       bigint NOT NULL DEFAULT 0,
    -- primary key of the last row of the last stored chunk (a JSON array of
    -- the key columns' text values); NULL before the first chunk
    cursor          jsonb,
    -- optional cap on the rows read per second
    rows_per_second integer CHECK (rows_per_second > 0),
    created_at      timestamptz NOT NULL DEFAULT now(),
    started_at      timestamptz,
    finished_at     timestamptz,
    error           text
);
CREATE INDEX backfills_unfinished_idx ON walhook.backfills (created_at)
    WHERE status IN ('pending', 'running');

-- The rules of a backfill row, each refusal naming its cause: the table must
-- have a route and a primary key, and where_clause must be one boolean
-- expression over the table's columns.
CREATE FUNCTION walhook.backfills_check() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' OR NEW.source_table IS DISTINCT FROM OLD.source_table
       OR NEW.where_clause IS DISTINCT FROM OLD.where_clause THEN
        IF NOT EXISTS (SELECT 1 FROM walhook.subscriptions WHERE id = NEW.subscription_id) THEN
            RAISE EXCEPTION 'backfill of %: subscription % does not exist', NEW.source_table, NEW.subscription_id;
        END IF;
        IF NOT EXISTS (SELECT 1 FROM walhook.routes WHERE source_table = NEW.source_table) THEN
            RAISE EXCEPTION 'backfill of %: the table has no route (INSERT INTO walhook.routes first)', NEW.source_table;
        END IF;
        IF NOT EXISTS (SELECT 1 FROM pg_index WHERE indrelid = NEW.source_table AND indisprimary) THEN
            RAISE EXCEPTION 'backfill of %: the table has no primary key (backfills read it in primary-key order)', NEW.source_table;
        END IF;
        IF NEW.where_clause IS NOT NULL THEN
            IF btrim(NEW.where_clause) = '' THEN
                RAISE EXCEPTION 'backfill of %: where_clause is empty (use NULL for every row)', NEW.source_table;
            END IF;
            -- inside parentheses a ';' outside a literal cannot parse: one
            -- expression only
            BEGIN
                EXECUTE format('SELECT 1 FROM %s WHERE (%s) LIMIT 0', NEW.source_table, NEW.where_clause);
                -- a second context, so that text closing the parenthesis
                -- (`true) UNION SELECT ...`) cannot parse in both
                EXECUTE format('SELECT ARRAY[(%s)::boolean] FROM %s LIMIT 0', NEW.where_clause, NEW.source_table);
            EXCEPTION WHEN OTHERS THEN
                RAISE EXCEPTION 'backfill of %: where_clause must be one boolean expression over the table''s columns: %', NEW.source_table, SQLERRM;
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
CREATE TRIGGER backfills_check BEFORE INSERT OR UPDATE ON walhook.backfills
    FOR EACH ROW EXECUTE FUNCTION walhook.backfills_check();
