-- The slot cannot silently lose changes (issue 23, docs/slot-safety.md).
--
-- walhook remembers which replication slot it consumes and the highest
-- position it may have confirmed on it. The position is written here before
-- walhook sends it to the server, so a slot whose confirmed position is past
-- it was re-created or moved behind walhook's back, and a slot that is missing
-- while this row exists was dropped (or lost in a restore or a failover):
-- either way walhook stops instead of streaming silently from a new slot.
-- `walhook slot recreate` is the way forward; it resets the row and counts
-- the WAL whose changes were lost.
CREATE TABLE walhook.slot_identity (
    slot_name         text PRIMARY KEY,
    -- IDENTIFY_SYSTEM's systemid of the server the slot was found or created on
    system_identifier text NOT NULL,
    -- where the slot began for walhook: its creation, or where walhook first
    -- found a slot it did not create
    created_lsn       pg_lsn NOT NULL,
    created_at        timestamptz NOT NULL DEFAULT now(),
    -- the highest position walhook may have confirmed (recorded before it is sent)
    confirmed_lsn     pg_lsn NOT NULL,
    confirmed_at      timestamptz NOT NULL DEFAULT now(),
    -- WAL bytes whose changes `walhook slot recreate` declared lost (summed)
    -- and how many times the slot was re-created
    lost_wal_bytes    bigint NOT NULL DEFAULT 0 CHECK (lost_wal_bytes >= 0),
    recreations       integer NOT NULL DEFAULT 0 CHECK (recreations >= 0)
);
COMMENT ON TABLE walhook.slot_identity IS
    'per slot: the slot walhook consumes and the highest position it may have confirmed on it; a missing slot, or one confirmed past confirmed_lsn, stops walhook (walhook slot recreate)';

-- `walhook slot recreate` writes its own audit row: the slot, the gap declared
-- lost and the backfills it started.
ALTER TABLE walhook.audit_log DROP CONSTRAINT audit_log_action_check;
ALTER TABLE walhook.audit_log ADD CONSTRAINT audit_log_action_check
    CHECK (action IN ('insert', 'update', 'delete', 'slot_recreate'));
