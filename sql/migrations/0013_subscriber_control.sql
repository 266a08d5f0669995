-- Subscribers in control: endpoint health, auto-disable, rate limits and row
-- filters, per subscription. This migration holds the columns and the health
-- table; the code that uses each is described in README "Subscriber control".

-- 1. Row filters: a SQL/JSON path predicate over the change, evaluated with
--    jsonb_path_match over {"new": {...}, "old": {...}, "changed": [...],
--    "type": "...", "apiresource": "..."}. NULL: every event of the
--    subscription's types. The column type refuses a path that does not parse.
ALTER TABLE walhook.subscriptions ADD COLUMN filter jsonpath;
COMMENT ON COLUMN walhook.subscriptions.filter IS
    'SQL/JSON path predicate over {new, old, changed, type, apiresource}; an event that does not match creates no delivery for this subscription (NULL: all)';

-- 2. Rate limit: deliveries per second per instance (as max_in_flight is);
--    excess deliveries wait, they are not failed and use no retries.
ALTER TABLE walhook.subscriptions ADD COLUMN rate_limit double precision
    CONSTRAINT subscriptions_rate_limit_check
    CHECK (rate_limit IS NULL OR (rate_limit > 0 AND rate_limit <= 100000));
COMMENT ON COLUMN walhook.subscriptions.rate_limit IS
    'deliveries per second, per instance (NULL: no limit); excess deliveries wait without using retries';

-- 3. Endpoint health. A subscription becomes failing after failure_threshold
--    consecutive failed attempts, or when at least failure_rate_threshold of
--    its attempts failed over the last failure_window (with at least
--    failure_window_min_attempts attempts in it). While failing, its new
--    deliveries wait in PostgreSQL and a single probe (its oldest pending
--    delivery) is tried every probe_interval (doubling, at most 32 times
--    probe_interval); the first success closes it. Failing continuously for
--    disable_after (NULL: never) disables it, with the reason and the time.
ALTER TABLE walhook.subscriptions
    ADD COLUMN failure_threshold integer NOT NULL DEFAULT 5
        CONSTRAINT subscriptions_failure_threshold_check CHECK (failure_threshold BETWEEN 1 AND 10000),
    ADD COLUMN failure_rate_threshold double precision NOT NULL DEFAULT 0.5
        CONSTRAINT subscriptions_failure_rate_threshold_check
        CHECK (failure_rate_threshold > 0 AND failure_rate_threshold <= 1),
    ADD COLUMN failure_window interval NOT NULL DEFAULT '5 minutes'
        CONSTRAINT subscriptions_failure_window_check
        CHECK (failure_window >= interval '1 second' AND failure_window <= interval '1 day'),
    ADD COLUMN failure_window_min_attempts integer NOT NULL DEFAULT 10
        CONSTRAINT subscriptions_failure_window_min_attempts_check
        CHECK (failure_window_min_attempts BETWEEN 1 AND 1000000),
    ADD COLUMN probe_interval interval NOT NULL DEFAULT '30 seconds'
        CONSTRAINT subscriptions_probe_interval_check
        CHECK (probe_interval >= interval '100 milliseconds' AND probe_interval <= interval '1 hour'),
    ADD COLUMN disable_after interval DEFAULT '5 days'
        CONSTRAINT subscriptions_disable_after_check
        CHECK (disable_after IS NULL
               OR (disable_after >= interval '1 second' AND disable_after <= interval '365 days')),
    ADD COLUMN disabled_reason text,
    ADD COLUMN disabled_at timestamptz;

-- Health is written by the delivering instances, not by people: it has its
-- own table, so it neither fills the audit log nor produces webhook.updated
-- events. No row: healthy, nothing failed yet. Its state transitions are
-- streamed like any routed change and become the operational events
-- webhook.failing (healthy -> failing), webhook.recovered (failing ->
-- healthy) and webhook.disabled (-> disabled, set in the same transaction as
-- subscriptions.disabled), delivered to subscriptions of webhook.* except
-- the one they are about.
CREATE TABLE walhook.subscription_health (
    subscription_id      uuid PRIMARY KEY REFERENCES walhook.subscriptions (id) ON DELETE CASCADE,
    state                text NOT NULL DEFAULT 'healthy' CHECK (state IN ('healthy', 'failing', 'disabled')),
    -- when the current failing period began (NULL while healthy)
    failing_since        timestamptz,
    consecutive_failures integer NOT NULL DEFAULT 0,
    last_error           text,
    last_failure_at      timestamptz,
    last_success_at      timestamptz,
    -- while failing: when the next probe may be sent, and how many were sent
    next_probe_at        timestamptz,
    probes               integer NOT NULL DEFAULT 0,
    updated_at           timestamptz NOT NULL DEFAULT now()
);
ALTER TABLE walhook.subscription_health REPLICA IDENTITY FULL;
COMMENT ON TABLE walhook.subscription_health IS
    'endpoint health per subscription, kept by the delivering instances (no row: healthy)';
