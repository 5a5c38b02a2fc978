//! Merkle proofs: every proof the tree gives verifies against its root, the same proof for
//! another leaf does not, and verifying arbitrary proofs (single and multi) never panics.
#![no_main]

// Each target uses one of the checks.
#[allow(dead_code)]
#[path = "../checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::merkle(data));
