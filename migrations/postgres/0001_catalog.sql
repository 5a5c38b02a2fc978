-- The catalog: Datanets, documents and content-addressed chunks (PostgreSQL dialect).
-- Times are Unix milliseconds; addresses are lowercase 0x-hex; hashes are lowercase hex.
CREATE TABLE datanets (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name        TEXT    NOT NULL,
    description TEXT    NOT NULL DEFAULT '',
    owner       TEXT    NOT NULL,
    visibility  TEXT    NOT NULL CHECK (visibility IN ('public', 'private')),
    created_at  BIGINT  NOT NULL,
    CONSTRAINT datanets_name_unique UNIQUE (name)
);

CREATE TABLE documents (
    id               BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    datanet_id       BIGINT  NOT NULL REFERENCES datanets (id),
    contributor      TEXT    NOT NULL,
    source_name      TEXT    NOT NULL,
    external_id      TEXT    NOT NULL,
    license          TEXT    NOT NULL,
    byte_len         BIGINT  NOT NULL,
    raw_hash         TEXT    NOT NULL,
    text             TEXT    NOT NULL,
    chunk_count      BIGINT  NOT NULL,
    duplicate_chunks BIGINT  NOT NULL,
    created_at       BIGINT  NOT NULL,
    CONSTRAINT documents_raw_hash_unique UNIQUE (datanet_id, raw_hash)
);
CREATE INDEX documents_external_id ON documents (datanet_id, external_id);

-- One row per distinct chunk in a Datanet; the first contributor holds the credit.
CREATE TABLE chunks (
    datanet_id   BIGINT NOT NULL REFERENCES datanets (id),
    chunk_id     TEXT   NOT NULL,
    document_id  BIGINT NOT NULL REFERENCES documents (id),
    contributor  TEXT   NOT NULL,
    start_offset BIGINT NOT NULL,
    end_offset   BIGINT NOT NULL,
    tokens       BIGINT NOT NULL,
    text         TEXT   NOT NULL,
    created_at   BIGINT NOT NULL,
    PRIMARY KEY (datanet_id, chunk_id)
);
CREATE INDEX chunks_contributor ON chunks (datanet_id, contributor);

-- Every span of every document, duplicates included, so each document can be highlighted.
CREATE TABLE document_chunks (
    document_id  BIGINT NOT NULL REFERENCES documents (id),
    ordinal      BIGINT NOT NULL,
    datanet_id   BIGINT NOT NULL,
    chunk_id     TEXT   NOT NULL,
    start_offset BIGINT NOT NULL,
    end_offset   BIGINT NOT NULL,
    PRIMARY KEY (document_id, ordinal)
);

-- Chunks written (or being written) to the vector and keyword indexes whose catalog rows are
-- not yet committed. Recovery after a crash reads it: see indexer/src/ingest.rs.
CREATE TABLE index_journal (
    datanet_id BIGINT NOT NULL,
    chunk_id   TEXT   NOT NULL,
    PRIMARY KEY (datanet_id, chunk_id)
);
