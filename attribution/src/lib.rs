//! Proof of Attribution, off-chain half: every answer gets a receipt, every cited contributor a
//! credit, and credits settle in epochs whose Merkle roots the payout contract verifies.
//!
//! - [`policy`]: prices, shares, influence weights and the fee split (integer, conserving).
//! - [`Ledger`]: receipts (a blake3 hash chain), append-only ledger entries, flags and slashes,
//!   epochs and proofs, in the catalog's SQL database (SQLite or PostgreSQL).
//! - [`merkle`]: the payout tree, as OpenZeppelin's `MerkleProof` checks it.
//! - payers ([`Payer`], [`Balance`], [`Hold`]): the money behind every credit: deposits and
//!   grants fund payers' balances, a hold sets an answer's fee aside before generation, and the
//!   receipt's transaction charges it (double entry: every transfer takes from one account and
//!   gives to another).
//!
//! Invariants: a credit never exists without its receipt and a payment (same transaction, and a
//! CHECK); an answer's credits sum to its fee, which its payer was charged; no payer's balance
//! goes below zero; every ledger entry lands in exactly one epoch, and an epoch closes once.

mod error;
mod ledger;
pub mod merkle;
mod payers;
pub mod policy;

pub use error::{Error, Result};
pub use ledger::{
    AccountProof, ContributorEarnings, DatanetEarnings, Earnings, Entry, Epoch, EpochEarnings, Flag, FlagOutcome,
    FlagTarget, GENESIS, Ledger, MAX_ADAPTERS, MAX_DATANETS, NewReceipt, PaidBy, Payment, Quote, Receipt,
    ReceiptCredit, ReceiptPayment, RetrievedChunk, SettleOutcome, SplitSummary, VerifyReport,
};
pub use payers::{Balance, DEFAULT_HOLD_TTL, Deposit, FEES, Hold, Payer, Transfer, WORLD_CHAIN, WORLD_GRANT};
pub use policy::{
    AdapterPricing, Amount, CitedChunk, DatanetPricing, MAX_WEIGHED_CHUNKS, MAX_WEIGHT, Policy, Role, Shares,
    TrainedChunk, Weighting, ablation_weights, check_weights, citation_weights, split_fee, training_weights,
};

/// Serde for amounts as decimal strings (uint256 values overflow JSON numbers).
pub mod amount_string {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(value: &u128, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&value.to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u128, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(|_| serde::de::Error::custom(format!("{text:?} is not a non-negative integer amount")))
    }

    pub mod option {
        use serde::{Deserialize, Deserializer, Serializer};

        pub fn serialize<S: Serializer>(value: &Option<u128>, s: S) -> Result<S::Ok, S::Error> {
            match value {
                Some(v) => s.serialize_str(&v.to_string()),
                None => s.serialize_none(),
            }
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u128>, D::Error> {
            match Option::<String>::deserialize(d)? {
                Some(text) => text
                    .parse()
                    .map(Some)
                    .map_err(|_| serde::de::Error::custom(format!("{text:?} is not a non-negative integer amount"))),
                None => Ok(None),
            }
        }
    }
}

/// Serde for EVM addresses as EIP-55 strings.
pub mod address_string {
    use serde::{Deserialize, Deserializer, Serializer};
    use tributary_indexer::Address;

    pub fn serialize<S: Serializer>(value: &Address, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&value.to_checksummed())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Address, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(|e: tributary_indexer::Error| serde::de::Error::custom(e.to_string()))
    }

    pub mod option {
        use serde::{Deserialize, Deserializer, Serializer};
        use tributary_indexer::Address;

        pub fn serialize<S: Serializer>(value: &Option<Address>, s: S) -> Result<S::Ok, S::Error> {
            match value {
                Some(v) => s.serialize_str(&v.to_checksummed()),
                None => s.serialize_none(),
            }
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Address>, D::Error> {
            match Option::<String>::deserialize(d)? {
                Some(text) => text
                    .parse()
                    .map(Some)
                    .map_err(|e: tributary_indexer::Error| serde::de::Error::custom(e.to_string())),
                None => Ok(None),
            }
        }
    }
}
