-- Inbox and outbox keep a message's JSON as the exact text that travels (the relay publishes the
-- outbox's text; the consumer keeps the bytes it received), not as jsonb. The same message is then
-- the same bytes on both sides of a hop, so reconciliation's digest still agrees, and no commit
-- pays for parsing JSON into jsonb or the relay for printing it back (measured: a few per cent of
-- the stores' CPU at 1,000 legs/s). Replaces decision 28's normalization by jsonb.
ALTER TABLE inbox ALTER COLUMN payload TYPE text USING payload::text;
ALTER TABLE outbox ALTER COLUMN payload TYPE text USING payload::text;
