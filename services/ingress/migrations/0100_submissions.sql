-- Every accepted leg version, exactly as acknowledged: the RPO-0 record of what Keel promised.
CREATE TABLE submissions (
    leg_id      uuid PRIMARY KEY,
    trade_id    uuid        NOT NULL,
    sender      text        NOT NULL,
    trade_ref   text        NOT NULL,
    version     integer     NOT NULL,
    im_id       text        NOT NULL,
    broker_id   text        NOT NULL,
    block       jsonb       NOT NULL,
    digest      text        NOT NULL,
    received_at timestamptz NOT NULL,
    UNIQUE (sender, trade_ref, version)
);
CREATE INDEX submissions_trade ON submissions (trade_id);
CREATE INDEX submissions_received_at ON submissions (received_at);

-- Idempotency-Key header: same key and same request give the stored answer; another request, 409.
CREATE TABLE idempotency_keys (
    participant_id text        NOT NULL,
    key            text        NOT NULL,
    request_digest text        NOT NULL,
    response       jsonb,
    created_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (participant_id, key)
);

CREATE TABLE cancel_requests (
    trade_id     uuid        NOT NULL,
    requested_by text        NOT NULL,
    requested_at timestamptz NOT NULL,
    PRIMARY KEY (trade_id, requested_by)
);

-- Registered webhook per participant; the notification service delivers to it.
CREATE TABLE webhooks (
    participant_id text PRIMARY KEY,
    url            text        NOT NULL,
    secret         text        NOT NULL,
    updated_at     timestamptz NOT NULL DEFAULT now()
);
