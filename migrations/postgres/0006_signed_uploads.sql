-- Signed uploads (api/src/app/uploads.rs): this deployment's EIP-712 domain salt, and the
-- nonces of signed uploads already submitted (kept until their deadline, Unix seconds).

CREATE TABLE deployment (
    id   BIGINT PRIMARY KEY CHECK (id = 1),
    salt TEXT    NOT NULL
);

CREATE TABLE upload_nonces (
    signer   TEXT   NOT NULL,
    nonce    TEXT   NOT NULL,
    deadline BIGINT NOT NULL,
    PRIMARY KEY (signer, nonce)
);
CREATE INDEX upload_nonces_deadline ON upload_nonces (deadline);
