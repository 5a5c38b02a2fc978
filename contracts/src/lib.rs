//! On-chain Proof of Attribution: the Datanet registry, epoch roots, claims and batched payouts
//! (Solidity, compiled with solc-js; deployed to a local anvil or an OP Stack RPC).
//!
//! Not built yet: issue #6. Invariant: an epoch is paid at most once.
