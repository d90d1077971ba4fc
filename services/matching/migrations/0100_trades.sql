-- Each trade's current state (both legs, status, expiry) and its append-only status history.
CREATE TABLE trades (
    trade_id   uuid PRIMARY KEY,
    im_id      text        NOT NULL,
    broker_id  text        NOT NULL,
    trade_ref  text        NOT NULL,
    status     text,
    expires_at timestamptz,
    state      jsonb       NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX trades_expiring ON trades (expires_at) WHERE expires_at IS NOT NULL;

-- Rows are only ever inserted.
CREATE TABLE status_history (
    trade_id    uuid        NOT NULL,
    seq         integer     NOT NULL,
    status      text        NOT NULL,
    at          timestamptz NOT NULL,
    reason      text,
    entry       jsonb       NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (trade_id, seq)
);
