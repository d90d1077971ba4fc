-- Ingestion keeps no state of its own beyond the shared safe-store tables (inbox, outbox, offsets,
-- dead letters); this marks the start of its own migration track.
SELECT 1;
