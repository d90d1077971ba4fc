-- What each consumed message said (DESIGN section 3: a safe-store keeps its inputs). Reconciliation
-- compares it with the producer's outbox by content digest, and restores an upstream's lost outbox
-- row from it. Rows consumed before this migration have none.
ALTER TABLE inbox ADD COLUMN payload jsonb;
