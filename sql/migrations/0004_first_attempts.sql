-- Delivery at the speed of the stream (issue 10).
--
-- 1. Which signatures a subscription gets. Each scheme costs the receiver
--    nothing to ignore but costs walhook a signature per delivery, so a receiver
--    that verifies one scheme can ask for just that one.
ALTER TABLE walhook.subscriptions
    ADD COLUMN signature_schemes text[] NOT NULL DEFAULT '{v1,v1a,rfc9421}';

CREATE FUNCTION walhook.subscriptions_signature_schemes_check() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    scheme text;
BEGIN
    IF cardinality(NEW.signature_schemes) IS NULL OR cardinality(NEW.signature_schemes) = 0 THEN
        RAISE EXCEPTION 'signature_schemes must list at least one of v1, v1a, rfc9421';
    END IF;
    FOREACH scheme IN ARRAY NEW.signature_schemes LOOP
        IF scheme IS NULL OR scheme NOT IN ('v1', 'v1a', 'rfc9421') THEN
            RAISE EXCEPTION 'signature_schemes entry % is unknown: known schemes are v1 (HMAC-SHA256), v1a (Ed25519) and rfc9421 (HTTP Message Signatures)',
                coalesce(scheme, 'NULL');
        END IF;
    END LOOP;
    RETURN NEW;
END
$$;
CREATE TRIGGER subscriptions_signature_schemes_check
    BEFORE INSERT OR UPDATE OF signature_schemes ON walhook.subscriptions
    FOR EACH ROW EXECUTE FUNCTION walhook.subscriptions_signature_schemes_check();

-- 2. First attempts go from the writer's committed batch straight to the
--    dispatcher of the instance that wrote them: their delivery rows are
--    inserted already leased to that instance (lease_owner, lease_until), so
--    no claim and no lease update precede a first attempt. Nothing else changes
--    in the table: a lease that expires (its instance died) makes the delivery
--    claimable by any instance, as before.

-- 3. Room on each page for the lease and outcome updates of a delivery row to
--    stay on its page: a claim's lease update touches no indexed column, so with
--    free space it is a HOT update (no new index entries).
ALTER TABLE walhook.deliveries SET (fillfactor = 70);
