-- Access: private Datanets' members and access requests (catalog), and the HTTP API's keys
-- (api/). SQLite dialect. Times are Unix milliseconds; addresses lowercase 0x-hex.

-- Addresses allowed to read (and contribute to) a private Datanet, besides its owner.
CREATE TABLE datanet_members (
    datanet_id BIGINT NOT NULL REFERENCES datanets (id),
    address    TEXT   NOT NULL,
    added_at   BIGINT NOT NULL,
    PRIMARY KEY (datanet_id, address)
);

-- A request to join a private Datanet; the owner (or an admin) approves or rejects it once.
CREATE TABLE access_requests (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    datanet_id BIGINT NOT NULL REFERENCES datanets (id),
    address    TEXT   NOT NULL,
    message    TEXT   NOT NULL DEFAULT '',
    status     TEXT   NOT NULL CHECK (status IN ('pending', 'approved', 'rejected')),
    created_at BIGINT NOT NULL,
    decided_at BIGINT,
    decided_by TEXT
);
-- At most one open request per address and Datanet.
CREATE UNIQUE INDEX access_requests_one_pending ON access_requests (datanet_id, address) WHERE status = 'pending';

-- API keys: only the blake3 of the key is stored; `prefix` (the key's first characters) names
-- it in lists and logs.
CREATE TABLE api_keys (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    key_hash   TEXT   NOT NULL,
    prefix     TEXT   NOT NULL,
    role       TEXT   NOT NULL CHECK (role IN ('admin', 'owner', 'contributor', 'reader')),
    address    TEXT,
    label      TEXT   NOT NULL DEFAULT '',
    rate_per_minute BIGINT,
    created_at BIGINT NOT NULL,
    revoked_at BIGINT,
    CONSTRAINT api_keys_hash_unique UNIQUE (key_hash),
    CHECK (role NOT IN ('owner', 'contributor') OR address IS NOT NULL)
);
