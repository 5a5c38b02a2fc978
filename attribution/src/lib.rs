//! Attribution: a receipt for every answer, a credit for every cited contributor, and the
//! epoch Merkle root that settles them.
//!
//! Not built yet: issue #5. Invariant to hold from its first line: a credit never exists without
//! its receipt, and only this crate writes ledger rows.
