-- When the newest message a consumer has finished was produced (the broker's record timestamp),
-- per partition: while the consumer has more waiting, how far behind it is in time. Ingress's
-- admission control reads it (docs/decisions.md, item 37).
ALTER TABLE consumer_offsets ADD COLUMN message_at timestamptz;
