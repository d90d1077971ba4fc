-- The W3C trace context of the work that wrote a message (`traceparent`), which the relay carries
-- into the Kafka record's headers, so that one trade is one trace across the services. Empty when
-- traces are not exported.
ALTER TABLE outbox ADD COLUMN traceparent text;
