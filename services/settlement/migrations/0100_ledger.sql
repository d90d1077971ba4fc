-- Reference data, loaded from the reference-data file at start (see reference.rs).
CREATE TABLE participants (
    participant_id text PRIMARY KEY,
    role           text NOT NULL CHECK (role IN ('im', 'broker'))
);

CREATE TABLE accounts (
    account_id     text PRIMARY KEY,
    owner          text    NOT NULL REFERENCES participants,
    kind           text    NOT NULL CHECK (kind IN ('fund', 'broker_settlement', 'broker_fees')),
    allow_negative boolean NOT NULL DEFAULT false
);
CREATE INDEX accounts_by_owner ON accounts (owner);

CREATE TABLE brokers (
    participant_id     text    PRIMARY KEY REFERENCES participants,
    commission_bps     numeric NOT NULL,
    settlement_account text    NOT NULL REFERENCES accounts,
    fee_account        text    NOT NULL REFERENCES accounts
);

-- Set once per account and asset; never changed afterwards, so conservation can be checked against it.
CREATE TABLE opening_balances (
    account_id text        NOT NULL REFERENCES accounts,
    asset_kind text        NOT NULL CHECK (asset_kind IN ('cash', 'security')),
    asset_code text        NOT NULL,
    amount     numeric     NOT NULL,
    loaded_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (account_id, asset_kind, asset_code)
);

-- Every instruction received, and what became of it.
CREATE TABLE instructions (
    instruction_id  uuid PRIMARY KEY,
    trade_id        uuid        NOT NULL,
    allocation_id   text        NOT NULL,
    settlement_date date        NOT NULL,
    status          text        NOT NULL CHECK (status IN ('PENDING', 'SETTLED', 'FAILED', 'CANCELLED')),
    reason          text,
    body            jsonb       NOT NULL,
    received_at     timestamptz NOT NULL DEFAULT now(),
    decided_at      timestamptz
);
CREATE INDEX instructions_by_trade ON instructions (trade_id);
CREATE INDEX instructions_due ON instructions (settlement_date) WHERE status = 'PENDING';

-- Trades whose instructions were withdrawn before any settled.
CREATE TABLE cancellations (
    trade_id     uuid PRIMARY KEY,
    requested_by text        NOT NULL,
    at           timestamptz NOT NULL
);

-- The double-entry ledger: rows are only ever inserted, and each instruction's rows net to zero per asset.
CREATE TABLE postings (
    posting_id     bigserial PRIMARY KEY,
    instruction_id uuid        NOT NULL REFERENCES instructions,
    account_id     text        NOT NULL REFERENCES accounts,
    asset_kind     text        NOT NULL,
    asset_code     text        NOT NULL,
    amount         numeric     NOT NULL,
    posted_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX postings_by_instruction ON postings (instruction_id);

-- Current positions: opening balance plus postings, kept in the same transaction as the postings.
CREATE TABLE positions (
    account_id text        NOT NULL REFERENCES accounts,
    asset_kind text        NOT NULL,
    asset_code text        NOT NULL,
    amount     numeric     NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (account_id, asset_kind, asset_code)
);
