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
CREATE FUNCTION walhook.subscriptions_retry_schedule_check() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    step interval;
BEGIN
    FOREACH step IN ARRAY NEW.retry_schedule LOOP
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
    RETURN NEW;
END
$$;
-- Checked when the schedule is written: a row stored before this rule with a
-- longer step can still be updated otherwise (disabled, say), and walhook
-- waits at most 365 days on it. Named to fire before subscriptions_check
-- (triggers fire in name order), whose 0002 rule for the schedule (non-negative
-- steps, unnamed) this one supersedes: a bad schedule gets this rule's words.
CREATE TRIGGER subscriptions_1_retry_schedule_check
    BEFORE INSERT OR UPDATE OF retry_schedule ON walhook.subscriptions
    FOR EACH ROW EXECUTE FUNCTION walhook.subscriptions_retry_schedule_check();
