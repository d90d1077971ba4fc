-- The relay records how far it has published as a cursor per topic, instead of stamping every row
-- (a non-HOT update per row, since `published_at` was in the unpublished index). A cursor is a
-- position in (txid, id) order: rows become visible to the relay only once every transaction older
-- than theirs has ended (`pg_snapshot_xmin`), and no transaction can later add a row before that
-- point, so publishing in this order leaves no gap even when several transactions (two consumers,
-- a sweeper, a second instance) write the outbox at once. Ids alone are not enough: a sequence
-- hands out ids in one order and transactions commit in another.
ALTER TABLE outbox ADD COLUMN txid bigint;
-- Rows already published sort before every cursor (txid 0); rows still waiting after (txid 1).
UPDATE outbox SET txid = CASE WHEN published_at IS NULL THEN 1 ELSE 0 END;
ALTER TABLE outbox
    ALTER COLUMN txid SET NOT NULL,
    ALTER COLUMN txid SET DEFAULT (pg_current_xact_id()::text::bigint);

CREATE TABLE relay_progress (
    topic      text PRIMARY KEY,
    txid       bigint      NOT NULL,
    id         bigint      NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);
INSERT INTO relay_progress (topic, txid, id)
SELECT topic, 0, max(id) FROM outbox WHERE published_at IS NOT NULL GROUP BY topic;

DROP INDEX outbox_unpublished;
ALTER TABLE outbox DROP COLUMN published_at;
-- The relay reads a topic in (txid, id) order from its cursor: that order is the primary key.
ALTER TABLE outbox DROP CONSTRAINT outbox_pkey;
ALTER TABLE outbox ADD PRIMARY KEY (topic, txid, id);
