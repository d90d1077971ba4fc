-- Topics are region-local (DESIGN section 5): an offset means something only in the Kafka cluster it
-- was read from. The position is kept per cluster, so a service that starts processing in another
-- region reads that region's topics from their own start, not from the other cluster's offsets.
ALTER TABLE consumer_offsets ADD COLUMN cluster text NOT NULL DEFAULT '';
ALTER TABLE consumer_offsets DROP CONSTRAINT consumer_offsets_pkey;
ALTER TABLE consumer_offsets ADD PRIMARY KEY (cluster, topic, partition);
