-- The database never waits on a receiver (issue 22).
--
-- The slot's confirmed position follows stored events again. A delivery that
-- the streaming instance attempts from memory has no walhook.deliveries row
-- until its outcome is stored (or it is held in memory past
-- first_attempt_hold, when it gets a pending row); until then its obligation
-- is written on the event itself:
--
-- 1. events.owed: the subscriptions the event must still reach from memory
--    (NULL when every delivery got its row with the event). The column is
--    never updated: it is a record of what was owed when the event was stored.
ALTER TABLE walhook.events ADD COLUMN owed uuid[];
COMMENT ON COLUMN walhook.events.owed IS
    'subscriptions whose delivery was handed to the streaming instance''s memory when the event was stored (no delivery row yet); walhook.delivery_marks says up to where they all have rows';

-- 2. A cheap "every delivery has its row up to here" mark per slot: the
--    streaming instance advances it as outcomes or pending rows are written.
--    Whenever an instance starts streaming it first writes a pending row for
--    every owed delivery of the events at or past the mark that has none (the
--    sweep), so a crash, a kill or a standby taking over loses nothing.
CREATE TABLE walhook.delivery_marks (
    slot_name        text PRIMARY KEY,
    materialised_lsn pg_lsn NOT NULL,
    updated_at       timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE walhook.delivery_marks IS
    'per slot: every owed delivery of an event committed before materialised_lsn has its walhook.deliveries row';

-- The sweep reads events from the mark on; events are inserted in commit order,
-- so a BRIN index finds that range for a few pages' upkeep.
CREATE INDEX events_commit_lsn_brin ON walhook.events USING brin (commit_lsn);

-- 3. first_attempt_hold: how long a delivery may wait in memory for its first
--    attempt before it gets its pending row (and memory is freed). The 0006
--    rules plus this one.
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
    WHEN 'first_attempt_hold' THEN
        BEGIN
            IF NOT (NEW.value::interval > interval '0' AND NEW.value::interval <= interval '1 minute') THEN
                RAISE EXCEPTION 'out of range';
            END IF;
        EXCEPTION WHEN OTHERS THEN
            RAISE EXCEPTION 'setting first_attempt_hold must be an interval above 0 and at most 1 minute, such as ''1 second'', not %', NEW.value;
        END;
    ELSE
        RAISE EXCEPTION 'unknown setting %: known settings are allow_insecure_targets, event_retention, attempt_retention, audit_retention, max_payload_bytes, first_attempt_hold', NEW.key;
    END CASE;
    RETURN NEW;
END
$$;

-- 4. walhook.redeliver on a delivery that is mid-attempt (leased) no longer
--    clears its lease, which let another instance send it at the same time and
--    dropped the running attempt's outcome. It asks for a redelivery instead:
--    the running attempt's outcome is recorded, then the delivery is pending
--    again with its retry schedule restarted.
ALTER TABLE walhook.deliveries ADD COLUMN redeliver_requested boolean NOT NULL DEFAULT false;

CREATE OR REPLACE FUNCTION walhook.redeliver(delivery_id bigint) RETURNS void
LANGUAGE sql AS $$
    UPDATE walhook.deliveries
       SET redeliver_requested = true
     WHERE id = delivery_id AND lease_until IS NOT NULL AND lease_until >= now();
    UPDATE walhook.deliveries
       SET status = 'pending', next_attempt_at = now(), lease_owner = NULL, lease_until = NULL,
           retry_base = attempts
     WHERE id = delivery_id AND (lease_until IS NULL OR lease_until < now());
    SELECT pg_notify('walhook_deliveries', '');
$$;

-- The requeue trigger keeps a live lease: an UPDATE ... SET status = 'pending'
-- on a delivery being attempted asks for a redelivery after that attempt.
CREATE OR REPLACE FUNCTION walhook.deliveries_requeue() RETURNS trigger
LANGUAGE plpgsql AS $$
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
        PERFORM pg_notify('walhook_deliveries', '');
    END IF;
    RETURN NEW;
END
$$;
