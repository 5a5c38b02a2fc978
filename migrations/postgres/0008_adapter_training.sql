-- Training-data credits (issue #25), PostgreSQL dialect. When an adapter trained here is published, the chunks its
-- training log names are registered under (adapter, log root); an answer of that adapter may
-- credit only those chunks in its receipt, under the policy's training share. Rows are only
-- ever added: a receipt stays checkable against the set it was credited from.

CREATE TABLE adapter_training_sets (
    adapter    TEXT   NOT NULL,
    root       TEXT   NOT NULL,
    datanet_id BIGINT NOT NULL REFERENCES datanets (id),
    created_at BIGINT NOT NULL,
    PRIMARY KEY (adapter, root)
);

CREATE TABLE adapter_training_chunks (
    adapter    TEXT   NOT NULL,
    root       TEXT   NOT NULL,
    chunk_id   TEXT   NOT NULL,
    PRIMARY KEY (adapter, root, chunk_id),
    FOREIGN KEY (adapter, root) REFERENCES adapter_training_sets (adapter, root)
);
