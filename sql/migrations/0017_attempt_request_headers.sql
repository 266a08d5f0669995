-- The headers each attempt sent, so an operator can see what a receiver got
-- and check its signatures: the console's attempt view, /v1's attempts, or
--
--   SELECT request_headers->>'webhook-signature' FROM walhook.delivery_attempts
--    WHERE delivery_id = 42 ORDER BY attempt;
--
-- A JSON object of the headers walhook sets itself: content-type, webhook-id,
-- webhook-timestamp, webhook-signature, webhook-event-type, webhook-attempt,
-- and for RFC 9421 content-digest, signature-input and signature. Never
-- authorization nor the subscription's own headers (they may hold
-- credentials). NULL when no request could be built (the error says why),
-- and for attempts stored before this column existed. About 300-600 bytes a
-- row, under the size PostgreSQL compresses or moves out of line.
ALTER TABLE walhook.delivery_attempts ADD COLUMN request_headers jsonb;
COMMENT ON COLUMN walhook.delivery_attempts.request_headers IS
    'headers the attempt sent that walhook sets (signatures, webhook-id, timestamp, ...), without authorization or the subscription''s own headers; NULL when no request was built';
