-- Contribution review (issue #21). A Datanet may require review: uploads to it (other than its
-- owner's) wait as pending contributions, neither indexed nor creditable, until the owner or a
-- member accepts them. Every upload is a contribution, accepted at once where no review is
-- asked, so each Datanet can rank its contributors by accepted uploads. SQLite dialect.

ALTER TABLE datanets ADD COLUMN review BIGINT NOT NULL DEFAULT 0;

CREATE TABLE contributions (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    datanet_id   BIGINT NOT NULL REFERENCES datanets (id),
    contributor  TEXT   NOT NULL,
    -- 'accepting': accepted and being indexed; a start after a crash finishes it.
    status       TEXT   NOT NULL CHECK (status IN ('pending', 'accepting', 'accepted', 'rejected')),
    content_hash TEXT   NOT NULL,
    names        TEXT   NOT NULL,
    bytes        BIGINT NOT NULL,
    -- The upload as submitted (JSON: documents, license, chunk sizes) until it is decided.
    payload      TEXT,
    -- What indexing it did (JSON), once accepted.
    report       TEXT,
    reason       TEXT   NOT NULL DEFAULT '',
    created_at   BIGINT NOT NULL,
    decided_at   BIGINT,
    decided_by   TEXT
);
CREATE INDEX contributions_datanet ON contributions (datanet_id, id);
CREATE INDEX contributions_status ON contributions (status);
