-- Only an `ordered` subscription's pending deliveries pay for the index that
-- keeps them in order.
--
-- deliveries_ordered_idx answers "is an earlier delivery of this resource
-- still pending?" when an ordered subscription's delivery is claimed. It held
-- every pending row, and its key (subscription, apiresource text, commit_lsn,
-- seq) is the dearest of a pending row's index entries: about 5 of the 35 µs
-- of PostgreSQL CPU a pending row costs (a backend CPU probe of 100-row
-- inserts on a scratch cluster). A subscription whose receiver is down or
-- hung leaves a pending row per event, and that cost is paid by the
-- ingestion of every other subscription. Now a pending row is in the index
-- only when its subscription is ordered: `deliveries.ordered` says so.
--
-- Kept true for every pending row of an ordered subscription:
-- * walhook writes it with the subscription's flag on every insert;
-- * a row that becomes pending again (walhook.redeliver, replay, an
--   operator's UPDATE ... SET status = 'pending') takes the flag then
--   (deliveries_requeue);
-- * changing a subscription's `ordered` sets its pending rows' flag
--   (subscriptions_ordered_pending).
-- A row an operator INSERTs by hand gets false: it is delivered without
-- waiting for earlier deliveries of its resource.
ALTER TABLE walhook.deliveries ADD COLUMN ordered boolean NOT NULL DEFAULT false;
COMMENT ON COLUMN walhook.deliveries.ordered IS
    'its subscription is ordered (kept for pending rows): the delivery is in deliveries_ordered_idx';

UPDATE walhook.deliveries d SET ordered = true
  FROM walhook.subscriptions s
 WHERE s.id = d.subscription_id AND s.ordered AND d.status = 'pending';

DROP INDEX walhook.deliveries_ordered_idx;
CREATE INDEX deliveries_ordered_idx ON walhook.deliveries (subscription_id, apiresource, commit_lsn, seq)
    WHERE status = 'pending' AND ordered;

CREATE OR REPLACE FUNCTION walhook.deliveries_requeue() RETURNS trigger
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

CREATE FUNCTION walhook.subscriptions_ordered_pending() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
BEGIN
    UPDATE walhook.deliveries SET ordered = NEW.ordered
     WHERE subscription_id = NEW.id AND status = 'pending';
    RETURN NULL;
END
$$;

CREATE TRIGGER subscriptions_ordered_pending AFTER UPDATE OF ordered ON walhook.subscriptions
    FOR EACH ROW WHEN (OLD.ordered IS DISTINCT FROM NEW.ordered)
    EXECUTE FUNCTION walhook.subscriptions_ordered_pending();
