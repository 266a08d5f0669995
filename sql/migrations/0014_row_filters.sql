-- Row filters and operational events (issue 25), the parts the database keeps.
--
-- 1. A subscription's filter must be a predicate. The jsonpath column type
--    already refuses a path that does not parse; this trigger also refuses a
--    path that parses but cannot answer yes or no over the document walhook
--    evaluates it on (jsonb_path_match says "single boolean result is
--    expected", e.g. `$.new.status`), or that names a variable walhook never
--    passes (`$.new.id == $id`). The error names the rule and, as its COLUMN
--    field, `filter` (the /v1 API reads it to name the field in its 400).
CREATE FUNCTION walhook.subscriptions_filter_check() RETURNS trigger
LANGUAGE plpgsql AS $$
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
$$;
CREATE TRIGGER subscriptions_2_filter_check
    BEFORE INSERT OR UPDATE OF filter ON walhook.subscriptions
    FOR EACH ROW EXECUTE FUNCTION walhook.subscriptions_filter_check();

-- 2. walhook.subscription_health joins walhook's publication beside
--    walhook.routes and walhook.subscriptions: its state transitions become
--    webhook.failing, webhook.recovered and webhook.disabled events. `walhook
--    run` calls this at startup, so an existing publication gains the table
--    there (as the role that keeps the publication, which may not be the one
--    migrating).
CREATE OR REPLACE FUNCTION walhook.register_publication(pub text) RETURNS void
LANGUAGE plpgsql AS $$
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
