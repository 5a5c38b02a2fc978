-- Each account's stable index in the payout trees (issue #6): assigned when the account first
-- has a leaf (after every earlier account, in address order) and carried to every later epoch.
-- The payout contract keys what it paid by it, packing three accounts to a storage word.
-- Rows written before this column existed hold -1; the next settle assigns them indices.
ALTER TABLE epoch_accounts ADD COLUMN account_index BIGINT NOT NULL DEFAULT -1;
CREATE UNIQUE INDEX epoch_accounts_by_index ON epoch_accounts (epoch, account_index) WHERE account_index >= 0;
