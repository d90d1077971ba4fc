-- The relay records how far it has published as a cursor per topic, instead of stamping every row
-- (a non-HOT update per row, since `published_at` was in the unpublished index). A cursor over ids
-- leaves no gap because writers take the outbox's lock before their first outbox row and hold it to
-- commit (keel_safestore::enqueue): ids are handed out, and become visible, in commit order.
CREATE TABLE relay_progress (
    topic      text PRIMARY KEY,
    id         bigint      NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);
-- Everything before a topic's first unpublished row was published.
INSERT INTO relay_progress (topic, id)
SELECT topic, coalesce(min(id) FILTER (WHERE published_at IS NULL) - 1, max(id))
FROM outbox GROUP BY topic;

DROP INDEX outbox_unpublished;
ALTER TABLE outbox DROP COLUMN published_at;
-- The relay reads a topic in id order from its cursor: that order is the primary key.
ALTER TABLE outbox DROP CONSTRAINT outbox_pkey;
ALTER TABLE outbox ADD PRIMARY KEY (topic, id);
