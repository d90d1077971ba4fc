-- One row per party per status change. `seq` orders each participant's pull feed (its cursor);
-- `notification_id` is derived from the event and the recipient, so a redelivered event adds nothing.
CREATE TABLE notifications (
    seq             bigserial PRIMARY KEY,
    notification_id uuid        NOT NULL UNIQUE,
    event_id        uuid        NOT NULL,
    recipient       text        NOT NULL,
    trade_id        uuid        NOT NULL,
    status          text        NOT NULL,
    at              timestamptz NOT NULL,
    body            jsonb       NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX notifications_feed ON notifications (recipient, seq);
CREATE INDEX notifications_trade ON notifications (trade_id);

-- Webhook deliveries: at least once, retried with capped backoff, given up after a bound.
CREATE TABLE webhook_deliveries (
    notification_id uuid PRIMARY KEY REFERENCES notifications (notification_id),
    recipient       text        NOT NULL,
    attempts        integer     NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    delivered_at    timestamptz,
    failed_at       timestamptz,
    last_error      text
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at)
    WHERE delivered_at IS NULL AND failed_at IS NULL;

-- How far the delivery worker has scanned notifications for participants with a webhook.
CREATE TABLE webhook_scan (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    last_seq  bigint NOT NULL
);
INSERT INTO webhook_scan (last_seq) VALUES (0);
