//! Merkle proofs: every proof the tree gives verifies against its root, the same proof for
//! another leaf does not, and verifying arbitrary proofs (single and multi) never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tributary_attribution::merkle::{Hash32, MerkleTree, verify, verify_multi};

fn hashes(bytes: &[u8]) -> Vec<Hash32> {
    bytes.chunks_exact(32).map(|c| c.try_into().expect("32 bytes")).collect()
}

fuzz_target!(|data: &[u8]| {
    let Some((&n, rest)) = data.split_first() else { return };
    let leaves: Vec<Hash32> = (0..(n as usize % 64 + 1))
        .map(|i| {
            let mut leaf = [0u8; 32];
            leaf[..8].copy_from_slice(&(i as u64).to_le_bytes());
            leaf[8] = rest.first().copied().unwrap_or(0);
            leaf
        })
        .collect();
    if let Some((tree, positions)) = MerkleTree::new(&leaves) {
        let root = tree.root();
        for (index, leaf) in leaves.iter().enumerate() {
            let proof = tree.proof(positions[index]);
            assert!(verify(&root, leaf, &proof), "the tree's own proof of leaf {index}");
            // Not a leaf (its second byte is never set above).
            assert!(!verify(&root, &[0xa5u8; 32], &proof), "a proof verified a leaf outside the tree");
        }
    }
    // Arbitrary roots, leaves, proofs and flags.
    let all = hashes(rest);
    if all.len() >= 2 {
        let (root, leaf, proof) = (&all[0], &all[1], &all[2..]);
        let _ = verify(root, leaf, proof);
        let flags: Vec<bool> = rest.iter().map(|b| b & 1 == 1).take(proof.len()).collect();
        let _ = verify_multi(root, &all[1..2], proof, &flags);
    }
});
