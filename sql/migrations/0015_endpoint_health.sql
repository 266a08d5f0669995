-- Endpoint health: the transitions of walhook.subscription_health, written by
-- the delivering instances (src/delivery/health.rs), and what resets it.
--
-- Instances agree through the row: each instance batches what its attempts
-- saw (failures, the first success after failures, probes) and hands it to
-- walhook.observe_health, which locks the subscription's health row and
-- decides from the stored state plus this report. Consecutive failures are
-- summed across instances in the row; the failure rate over failure_window
-- is counted in each instance's memory (rate_tripped). A transition happens
-- once, whichever instance gets the row lock first: the others then see the
-- new state and make none.

-- A stored row is needed before it can be locked: reports insert it healthy.
CREATE FUNCTION walhook.observe_health(
    ids uuid[], reset boolean[], failures integer[], probes_failed integer[],
    errors text[], failed_at timestamptz[], succeeded_at timestamptz[],
    rate_tripped boolean[])
RETURNS TABLE (subscription_id uuid, from_state text, to_state text)
LANGUAGE plpgsql AS $$
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

-- failing -> disabled: a subscription failing continuously for its
-- disable_after is disabled, with the reason and the time, in the same
-- transaction (this statement) as its health row.
CREATE FUNCTION walhook.disable_failing_subscriptions()
RETURNS TABLE (subscription_id uuid, reason text)
LANGUAGE sql AS $$
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

-- Enabling a subscription again (disabled true -> false, by a user) clears
-- the reason and time of its disabling and makes it healthy: it starts over.
-- Disabling it by hand records the time.
CREATE FUNCTION walhook.subscriptions_health_reset() RETURNS trigger
LANGUAGE plpgsql AS $$
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

CREATE TRIGGER subscriptions_health_reset
    BEFORE UPDATE OF disabled ON walhook.subscriptions
    FOR EACH ROW EXECUTE FUNCTION walhook.subscriptions_health_reset();

COMMENT ON COLUMN walhook.subscriptions.disabled_reason IS
    'why walhook disabled it (failing since <time>: <last error>); cleared when enabled again';
COMMENT ON COLUMN walhook.subscriptions.disabled_at IS
    'when it was disabled (by walhook or by hand); cleared when enabled again';
