-- Indexes shaped for the claim query, which per subscription walks its due
-- deliveries in (next_attempt_at, id) order up to its free in-flight slots: a
-- short index range whatever the planner's statistics say. With the 0001
-- indexes a fresh 100,000-delivery backlog meant a full sort of the due list
-- and a lease count over every dead lease version, ~65 ms per claim.
CREATE INDEX deliveries_claim_idx ON walhook.deliveries (subscription_id, next_attempt_at, id)
    WHERE status = 'pending';
DROP INDEX walhook.deliveries_due_idx;

-- max_in_flight is now enforced per instance, in memory: live leases are no
-- longer counted
DROP INDEX walhook.deliveries_leased_idx;

-- per-subscription lookups of unfinished deliveries (status, failing
-- subscriptions); succeeded rows, the bulk, stay out of it
CREATE INDEX deliveries_unfinished_idx ON walhook.deliveries (subscription_id, status)
    WHERE status <> 'succeeded';
DROP INDEX walhook.deliveries_subscription_idx;
