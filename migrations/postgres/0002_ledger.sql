-- Proof of Attribution, off-chain half (PostgreSQL dialect): receipts, the ledger, flags, epochs.
-- Amounts are integers in the token's smallest unit written as decimal TEXT: they are uint256
-- on chain and outgrow a 64-bit column (see attribution/src/ledger.rs).

-- One row; every ledger write updates it first, so ledger transactions run one at a time.
CREATE TABLE ledger_lock (
    id      BIGINT PRIMARY KEY CHECK (id = 1),
    writes  BIGINT NOT NULL
);
INSERT INTO ledger_lock (id, writes) VALUES (1, 0);

-- Pricing and shares: the policy row ('policy') and per-Datanet / per-adapter overrides, JSON.
CREATE TABLE ledger_settings (
    scope TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

-- One receipt per answer. `body` is the canonical JSON that `hash` (blake3) covers; it names the
-- previous receipt's hash, and prev_hash is unique, so the chain cannot fork.
CREATE TABLE receipts (
    seq        BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id         TEXT    NOT NULL UNIQUE,
    created_at BIGINT  NOT NULL,
    fee        TEXT    NOT NULL,
    prev_hash  TEXT    NOT NULL UNIQUE,
    hash       TEXT    NOT NULL UNIQUE,
    body       TEXT    NOT NULL
);

-- Append-only, never updated. A credit names its receipt; a slash names the flag that caused it
-- and the credit it offsets (a slash is final: un-flagging does not restore it). Epochs are id
-- ranges (see epochs.last_entry): ledger writes are serialized, so ids grow in commit order.
CREATE TABLE ledger_entries (
    id         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind       TEXT    NOT NULL CHECK (kind IN ('credit', 'slash')),
    receipt_id TEXT    REFERENCES receipts (id),
    flag_id    BIGINT,
    offsets    BIGINT  REFERENCES ledger_entries (id),
    account    TEXT    NOT NULL,
    role       TEXT    NOT NULL,
    amount     TEXT    NOT NULL,
    datanet_id BIGINT,
    chunk_id   TEXT,
    sentences  TEXT,
    created_at BIGINT  NOT NULL,
    CHECK ((kind = 'credit') = (receipt_id IS NOT NULL)),
    CHECK ((kind = 'credit') = (flag_id IS NULL)),
    CONSTRAINT ledger_entries_offset_once UNIQUE (kind, offsets, role)
);
CREATE INDEX ledger_entries_account ON ledger_entries (account);
CREATE INDEX ledger_entries_receipt ON ledger_entries (receipt_id);
CREATE INDEX ledger_entries_chunk ON ledger_entries (datanet_id, chunk_id);

-- Flags on a chunk, a document or a contributor of one Datanet. `active` is the current state
-- (1 or 0), read by retrieval; flag_events is the append-only history.
CREATE TABLE flags (
    id         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    datanet_id BIGINT  NOT NULL REFERENCES datanets (id),
    kind       TEXT    NOT NULL CHECK (kind IN ('chunk', 'document', 'contributor')),
    target     TEXT    NOT NULL,
    reason     TEXT    NOT NULL,
    actor      TEXT    NOT NULL,
    active     BIGINT  NOT NULL,
    created_at BIGINT  NOT NULL
);
CREATE INDEX flags_active ON flags (datanet_id, active);

CREATE TABLE flag_events (
    id         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    flag_id    BIGINT  NOT NULL REFERENCES flags (id),
    action     TEXT    NOT NULL CHECK (action IN ('flag', 'unflag')),
    actor      TEXT    NOT NULL,
    reason     TEXT    NOT NULL,
    created_at BIGINT  NOT NULL
);

-- A closed epoch: the Merkle root over every account's cumulative total, the receipts' chain head.
-- It holds the ledger entries with ids after the previous epoch's last_entry up to its own.
CREATE TABLE epochs (
    number        BIGINT  PRIMARY KEY,
    last_entry    BIGINT  NOT NULL,
    root          TEXT    NOT NULL,
    receipts_head TEXT    NOT NULL,
    total         TEXT    NOT NULL,
    accounts      BIGINT  NOT NULL,
    entries       BIGINT  NOT NULL,
    closed_at     BIGINT  NOT NULL
);

CREATE TABLE epoch_accounts (
    epoch      BIGINT NOT NULL REFERENCES epochs (number),
    account    TEXT   NOT NULL,
    cumulative TEXT   NOT NULL,
    proof      TEXT   NOT NULL,
    PRIMARY KEY (epoch, account)
);
