-- The safe-store tables every service keeps in its own schema (DESIGN section 4).
-- Versions below 100 belong to this shared track; a service's own migrations start at 100.

-- Every message a service has consumed, by id: the dedup half of exactly-once.
CREATE TABLE inbox (
    message_id   uuid PRIMARY KEY,
    topic        text        NOT NULL,
    partition    integer     NOT NULL,
    "offset"     bigint      NOT NULL,
    processed_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX inbox_processed_at ON inbox (processed_at);

-- Every message a service has produced, kept after publishing: it is what reconciliation compares
-- and what replay re-sends.
CREATE TABLE outbox (
    id           bigserial PRIMARY KEY,
    message_id   uuid        NOT NULL UNIQUE,
    topic        text        NOT NULL,
    key          text        NOT NULL,
    payload      jsonb       NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    published_at timestamptz
);
CREATE INDEX outbox_unpublished ON outbox (id) WHERE published_at IS NULL;
CREATE INDEX outbox_created_at ON outbox (created_at);

-- The consumer's position, committed with its effects; Kafka's committed offsets are advisory.
CREATE TABLE consumer_offsets (
    topic       text        NOT NULL,
    partition   integer     NOT NULL,
    next_offset bigint      NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (topic, partition)
);

-- Poison messages, with where they came from.
CREATE TABLE dead_letters (
    id          bigserial PRIMARY KEY,
    message_id  uuid,
    topic       text        NOT NULL,
    partition   integer     NOT NULL,
    "offset"    bigint      NOT NULL,
    key         text,
    payload     bytea,
    error       text        NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (topic, partition, "offset")
);
