-- The references of the delivery tables, checked once per statement.
--
-- The foreign keys deliveries -> events, deliveries -> subscriptions and
-- delivery_attempts -> deliveries ran one check query per inserted row (an
-- executor start and an index probe each): three per delivery, a quarter to a
-- third of PostgreSQL's CPU while delivering (BENCHMARKS.md, issue 10 step 5).
-- Statement-level triggers with transition tables keep the same rules at a
-- cost per statement:
--   * an insert locks the rows it refers to FOR KEY SHARE, as a foreign key's
--     check does (a concurrent delete of them waits for this transaction), and
--     fails with SQLSTATE 23503 (foreign_key_violation) when one is missing;
--   * the referencing columns cannot be updated (walhook never does; a
--     delivery for another event or subscription is another row);
--   * deleting or truncating the rows referred to deletes or truncates the
--     rows referring to them (ON DELETE CASCADE, as before).

ALTER TABLE walhook.deliveries DROP CONSTRAINT deliveries_event_id_fkey;
ALTER TABLE walhook.deliveries DROP CONSTRAINT deliveries_subscription_id_fkey;
ALTER TABLE walhook.delivery_attempts DROP CONSTRAINT delivery_attempts_delivery_id_fkey;

-- In each check, the locking subquery is never flattened into a join, so the
-- plan is one index probe per distinct referenced row whatever the statistics
-- say (a cached plan is kept for the session). The three checks are written
-- out rather than one function taking the table names: that would need
-- dynamic SQL, planned on every statement, and live the recorder stores a
-- handful of rows per statement.

CREATE FUNCTION walhook.deliveries_references_check() RETURNS trigger
LANGUAGE plpgsql AS $$
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

CREATE TRIGGER deliveries_references AFTER INSERT ON walhook.deliveries
    REFERENCING NEW TABLE AS inserted
    FOR EACH STATEMENT EXECUTE FUNCTION walhook.deliveries_references_check();

CREATE FUNCTION walhook.delivery_attempts_references_check() RETURNS trigger
LANGUAGE plpgsql AS $$
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

CREATE TRIGGER delivery_attempts_references AFTER INSERT ON walhook.delivery_attempts
    REFERENCING NEW TABLE AS inserted
    FOR EACH STATEMENT EXECUTE FUNCTION walhook.delivery_attempts_references_check();

CREATE FUNCTION walhook.references_unchanged() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'walhook.%.% cannot change: insert another row instead', TG_TABLE_NAME, TG_ARGV[0]
          USING ERRCODE = 'foreign_key_violation';
END $$;

CREATE TRIGGER deliveries_event_unchanged BEFORE UPDATE OF event_id ON walhook.deliveries
    FOR EACH ROW WHEN (OLD.event_id IS DISTINCT FROM NEW.event_id)
    EXECUTE FUNCTION walhook.references_unchanged('event_id');
CREATE TRIGGER deliveries_subscription_unchanged BEFORE UPDATE OF subscription_id ON walhook.deliveries
    FOR EACH ROW WHEN (OLD.subscription_id IS DISTINCT FROM NEW.subscription_id)
    EXECUTE FUNCTION walhook.references_unchanged('subscription_id');
CREATE TRIGGER delivery_attempts_delivery_unchanged BEFORE UPDATE OF delivery_id ON walhook.delivery_attempts
    FOR EACH ROW WHEN (OLD.delivery_id IS DISTINCT FROM NEW.delivery_id)
    EXECUTE FUNCTION walhook.references_unchanged('delivery_id');

-- Cascades. Dynamic SQL, so each delete is planned for the rows removed now
-- (one event by hand, or a retention batch).

CREATE FUNCTION walhook.cascade_delete() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    -- TG_ARGV: the referring table and its referring column
    EXECUTE format('DELETE FROM walhook.%I c USING removed r WHERE c.%I = r.id',
                   TG_ARGV[0], TG_ARGV[1]);
    RETURN NULL;
END $$;

CREATE TRIGGER events_cascade AFTER DELETE ON walhook.events
    REFERENCING OLD TABLE AS removed
    FOR EACH STATEMENT EXECUTE FUNCTION walhook.cascade_delete('deliveries', 'event_id');
CREATE TRIGGER subscriptions_cascade AFTER DELETE ON walhook.subscriptions
    REFERENCING OLD TABLE AS removed
    FOR EACH STATEMENT EXECUTE FUNCTION walhook.cascade_delete('deliveries', 'subscription_id');
CREATE TRIGGER deliveries_cascade AFTER DELETE ON walhook.deliveries
    REFERENCING OLD TABLE AS removed
    FOR EACH STATEMENT EXECUTE FUNCTION walhook.cascade_delete('delivery_attempts', 'delivery_id');

CREATE FUNCTION walhook.cascade_truncate() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE format('TRUNCATE walhook.%I', TG_ARGV[0]);
    RETURN NULL;
END $$;

CREATE TRIGGER events_truncate AFTER TRUNCATE ON walhook.events
    FOR EACH STATEMENT EXECUTE FUNCTION walhook.cascade_truncate('deliveries');
CREATE TRIGGER subscriptions_truncate AFTER TRUNCATE ON walhook.subscriptions
    FOR EACH STATEMENT EXECUTE FUNCTION walhook.cascade_truncate('deliveries');
CREATE TRIGGER deliveries_truncate AFTER TRUNCATE ON walhook.deliveries
    FOR EACH STATEMENT EXECUTE FUNCTION walhook.cascade_truncate('delivery_attempts');
