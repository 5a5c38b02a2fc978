-- Paid answers (issue #20): who pays for an answer's credits, as double entry. Every movement
-- of a payer's money is one transfer of `amount` (an integer > 0, decimal TEXT) from the
-- `debit` account to the `credit` account, with an idempotency key, and is never updated:
--   deposit  world:chain -> 0x…        key chain:<transaction hash>:<log index>
--   grant    world:grant -> 0x…        key grant:<id> (`account fund`, deployments without a chain)
--   sponsor  0x… -> sponsor:<datanet>  a Datanet owner funds the Datanet's sponsor budget
--   charge   0x… or sponsor:… -> fees  key receipt:<id>; the receipt's credits divide it
-- So the accounts sum to zero, a payer's balance is what reached it less what left it, and the
-- `fees` account holds exactly the sum of the paid receipts' credits.
CREATE TABLE payer_transfers (
    id         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind       TEXT    NOT NULL CHECK (kind IN ('deposit', 'grant', 'sponsor', 'charge')),
    key        TEXT    NOT NULL UNIQUE,
    debit      TEXT    NOT NULL,
    credit     TEXT    NOT NULL,
    amount     TEXT    NOT NULL CHECK (amount NOT LIKE '-%' AND amount <> '0'),
    receipt_id TEXT    REFERENCES receipts (id),
    created_at BIGINT  NOT NULL,
    CHECK ((kind = 'charge') = (receipt_id IS NOT NULL)),
    CHECK (debit <> credit)
);
CREATE INDEX payer_transfers_debit ON payer_transfers (debit);
CREATE INDEX payer_transfers_credit ON payer_transfers (credit);

-- Each account's balance, kept with every transfer in the same transaction (verify recomputes
-- it from the transfers). A payer's balance never goes below zero.
CREATE TABLE payer_accounts (
    account   TEXT PRIMARY KEY,
    balance   TEXT NOT NULL,
    deposited TEXT NOT NULL,
    granted   TEXT NOT NULL,
    spent     TEXT NOT NULL,
    CHECK (account LIKE 'world:%' OR balance NOT LIKE '-%')
);

-- Money set aside for an answer being generated: released when it fails or is cancelled,
-- turned into its charge when its receipt commits. A hold left by a crashed process expires.
CREATE TABLE payer_holds (
    id         TEXT    PRIMARY KEY,
    account    TEXT    NOT NULL,
    amount     TEXT    NOT NULL,
    expires_at BIGINT  NOT NULL
);
CREATE INDEX payer_holds_account ON payer_holds (account);
