-- A slow or failing subscription's backlog waits in its events, not in a
-- pending row per event.
--
-- A pending row costs PostgreSQL about 35 µs of CPU (heap, primary key,
-- reference check, four index entries). A subscription whose receiver is
-- hung or down would get one for every event, so the ingestion of every
-- other subscription paid for it: with one hung receiver beside a healthy
-- one, events were stored at about 0.75 of the rate without it. Now:
--
-- * `events.deferred` names the subscriptions an event owes a delivery that
--   has no row yet because the subscription was slow or failing when the
--   event was stored (written with the event, in the same statement; about
--   40 bytes and one entry in events_deferred_idx);
-- * `walhook.deferrals` has a row per such subscription: the position up to
--   which its deferred deliveries have rows (after_lsn, after_seq,
--   after_id; moved back when an event stored later sorts before it, as a
--   transaction's grouped deletes do), the last event that deferred one,
--   and how many were deferred and given rows in all;
-- * walhook gives a deferred subscription pending rows in event order, as
--   many as `max_pending_rows` at a time (10000 unless set), as its receiver
--   takes them; the deferral ends when every deferred delivery has its row
--   and the receiver is well again.
--
-- Retention keeps an event while it owes a deferred delivery without a row.
ALTER TABLE walhook.events ADD COLUMN deferred uuid[];
COMMENT ON COLUMN walhook.events.deferred IS
    'subscriptions this event owes a delivery that gets its row later (walhook.deferrals)';
CREATE INDEX events_deferred_idx ON walhook.events (commit_lsn, seq, id)
    WHERE deferred IS NOT NULL;

CREATE TABLE walhook.deferrals (
    subscription_id uuid PRIMARY KEY REFERENCES walhook.subscriptions (id) ON DELETE CASCADE,
    after_lsn pg_lsn NOT NULL,
    after_seq int NOT NULL,
    after_id uuid NOT NULL,
    last_lsn pg_lsn NOT NULL,
    last_seq int NOT NULL,
    last_id uuid NOT NULL,
    deferred bigint NOT NULL DEFAULT 0,
    materialised bigint NOT NULL DEFAULT 0,
    generation bigint GENERATED ALWAYS AS IDENTITY,
    since timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE walhook.deferrals IS
    'a slow or failing subscription whose deliveries wait in walhook.events.deferred: they have rows up to (after_lsn, after_seq, after_id)';
COMMENT ON COLUMN walhook.deferrals.after_lsn IS
    'with after_seq and after_id: the deferred deliveries up to this event (commit_lsn, seq, id) have rows';
COMMENT ON COLUMN walhook.deferrals.last_lsn IS
    'with last_seq and last_id: the last event (commit_lsn, seq, id) that deferred a delivery';
COMMENT ON COLUMN walhook.deferrals.generation IS
    'new for every deferral: ending one names it, so a deferral begun again since is kept';
COMMENT ON COLUMN walhook.deferrals.deferred IS 'deliveries deferred in all (events stored naming the subscription)';
COMMENT ON COLUMN walhook.deferrals.materialised IS 'deferred deliveries given their rows in all';

-- max_pending_rows: the pending rows a deferred subscription is given at once.
CREATE OR REPLACE FUNCTION walhook.settings_check() RETURNS trigger
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
