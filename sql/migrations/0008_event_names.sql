-- Event vocabulary of a route: per-operation event names, grouped deletes, and
-- payload templates that see what an UPDATE changed.
--   event_names        {"insert": "assigned", "delete": "unassigned"}: the suffix
--                      used instead of created / updated / deleted
--   bulk_delete_event  e.g. 'bulk_deleted': a transaction deleting more than one
--                      row of the table yields one <resource>.<suffix> event
--                      listing them; NULL (default) means one event per delete
-- Payload templates may use "{changed}" and "{old.col}" (README, Routes).

ALTER TABLE walhook.routes
    ADD COLUMN event_names jsonb,
    ADD COLUMN bulk_delete_event text;

CREATE OR REPLACE FUNCTION walhook.routes_check() RETURNS trigger
LANGUAGE plpgsql AS $$
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
$$;
