//! The epoch payout tree, exactly as OpenZeppelin builds and checks it.
//!
//! A leaf is `keccak256(bytes.concat(keccak256(abi.encode(account, cumulativeAmount))))`: the
//! inner hash is the abi-encoded pair the issue names; the second hash is OpenZeppelin's
//! `StandardMerkleTree` convention, because a bare 64-byte leaf could be passed off as an inner
//! node (a second-preimage forgery). Leaves are sorted by hash and laid out as that library lays
//! them out (a complete binary tree in an array), and inner nodes hash the sorted pair, as
//! `MerkleProof.verify` expects. A test checks roots and proofs against the library's own output.

use sha3::{Digest, Keccak256};
use tributary_indexer::Address;

pub type Hash32 = [u8; 32];

fn keccak(parts: &[&[u8]]) -> Hash32 {
    let mut hasher = Keccak256::new();
    for part in parts {
        hasher.update(part);
    }
    hasher.finalize().into()
}

/// The leaf of `(account, cumulative)`.
pub fn leaf_hash(account: &Address, cumulative: u128) -> Hash32 {
    let mut encoded = [0u8; 64];
    encoded[12..32].copy_from_slice(account.as_bytes());
    encoded[48..64].copy_from_slice(&cumulative.to_be_bytes());
    keccak(&[&keccak(&[&encoded])])
}

fn node_hash(a: &Hash32, b: &Hash32) -> Hash32 {
    if a <= b { keccak(&[a, b]) } else { keccak(&[b, a]) }
}

/// A Merkle tree over `(account, cumulative)` leaves.
/// A StandardMerkleTree over already-hashed leaves.
#[derive(Debug, Clone)]
pub struct MerkleTree {
    /// nodes[0] is the root; node i's children are 2i+1 and 2i+2; the leaves fill the end,
    /// sorted by hash.
    nodes: Vec<Hash32>,
}

impl MerkleTree {
    /// The tree of `leaves`, and where each of them sits in it (`None` for no leaves).
    pub fn new(leaves: &[Hash32]) -> Option<(MerkleTree, Vec<usize>)> {
        if leaves.is_empty() {
            return None;
        }
        let n = leaves.len();
        let mut order: Vec<usize> = (0..n).collect();
        order.sort_by_key(|&i| leaves[i]);
        let mut nodes = vec![[0u8; 32]; 2 * n - 1];
        let mut position = vec![0; n];
        for (rank, &i) in order.iter().enumerate() {
            let index = nodes.len() - 1 - rank;
            nodes[index] = leaves[i];
            position[i] = index;
        }
        for i in (0..nodes.len() - n).rev() {
            nodes[i] = node_hash(&nodes[2 * i + 1], &nodes[2 * i + 2]);
        }
        Some((MerkleTree { nodes }, position))
    }

    pub fn root(&self) -> Hash32 {
        self.nodes[0]
    }

    /// The sibling hashes from the leaf at `index` (a position [`MerkleTree::new`] gave) up.
    pub fn proof(&self, mut index: usize) -> Vec<Hash32> {
        let mut proof = Vec::new();
        while index > 0 && index < self.nodes.len() {
            let sibling = if index % 2 == 1 { index + 1 } else { index - 1 };
            proof.push(self.nodes[sibling]);
            index = (index - 1) / 2;
        }
        proof
    }
}

/// The payout tree over `(account, cumulative)` leaves.
#[derive(Debug, Clone)]
pub struct PayoutTree {
    tree: MerkleTree,
    /// (account, cumulative, position of its leaf), in leaf order.
    leaves: Vec<(Address, u128, usize)>,
}

impl PayoutTree {
    /// Builds the tree; `None` for no leaves (an epoch always has at least one account).
    pub fn new(entries: &[(Address, u128)]) -> Option<PayoutTree> {
        let hashes: Vec<Hash32> = entries.iter().map(|(a, v)| leaf_hash(a, *v)).collect();
        let (tree, positions) = MerkleTree::new(&hashes)?;
        let mut leaves: Vec<(Address, u128, usize)> =
            entries.iter().zip(positions).map(|((a, v), p)| (*a, *v, p)).collect();
        leaves.sort_by_key(|l| std::cmp::Reverse(l.2));
        Some(PayoutTree { tree, leaves })
    }

    pub fn root(&self) -> Hash32 {
        self.tree.root()
    }

    /// Every leaf with its proof (sibling hashes from the leaf up), in leaf order.
    pub fn proofs(&self) -> Vec<(Address, u128, Vec<Hash32>)> {
        self.leaves.iter().map(|(account, value, index)| (*account, *value, self.tree.proof(*index))).collect()
    }
}

/// The registry's leaf of `(chunk id, contributor)`: keccak256(bytes.concat(keccak256(
/// abi.encode(bytes32 chunkId, address contributor)))), as `DatanetRegistry` checks it.
pub fn contribution_leaf(chunk_id: &Hash32, contributor: &Address) -> Hash32 {
    let mut encoded = [0u8; 64];
    encoded[..32].copy_from_slice(chunk_id);
    encoded[44..64].copy_from_slice(contributor.as_bytes());
    keccak(&[&keccak(&[&encoded])])
}

/// `MerkleProof.verify(proof, root, leaf)`.
pub fn verify(root: &Hash32, leaf: &Hash32, proof: &[Hash32]) -> bool {
    proof.iter().fold(*leaf, |acc, sibling| node_hash(&acc, sibling)) == *root
}

/// `0x`-prefixed lowercase hex, as Solidity tooling prints a bytes32.
pub fn to_hex(hash: &Hash32) -> String {
    format!("0x{}", hex::encode(hash))
}

/// Parses `0x`-prefixed (or bare) 64-digit hex.
pub fn from_hex(text: &str) -> Option<Hash32> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(text.strip_prefix("0x").unwrap_or(text), &mut out).ok()?;
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Roots and proofs from `@openzeppelin/merkle-tree` (fixtures/oz_merkle_vectors.mjs).
    #[test]
    fn matches_openzeppelin_standard_merkle_tree() {
        let fixture: serde_json::Value =
            serde_json::from_str(include_str!("../tests/fixtures/oz_merkle.json")).expect("fixture is JSON");
        let cases = fixture["cases"].as_array().expect("cases");
        assert_eq!(cases.len(), 8);
        for case in cases {
            let values: Vec<(Address, u128)> = case["values"]
                .as_array()
                .expect("values")
                .iter()
                .map(|v| (v[0].as_str().unwrap().parse().unwrap(), v[1].as_str().unwrap().parse().unwrap()))
                .collect();
            let tree = PayoutTree::new(&values).expect("non-empty");
            assert_eq!(to_hex(&tree.root()), case["root"].as_str().unwrap(), "{} leaves", values.len());
            let proofs = tree.proofs();
            for (i, (account, value)) in values.iter().enumerate() {
                let want: Vec<String> =
                    case["proofs"][i].as_array().unwrap().iter().map(|p| p.as_str().unwrap().to_string()).collect();
                let (_, _, got) = proofs.iter().find(|(a, v, _)| a == account && v == value).expect("leaf present");
                assert_eq!(got.iter().map(to_hex).collect::<Vec<_>>(), want);
                assert!(verify(&tree.root(), &leaf_hash(account, *value), got));
                // A different amount for the same account does not verify.
                assert!(!verify(&tree.root(), &leaf_hash(account, value + 1), got));
            }
        }
    }

    #[test]
    fn empty_has_no_tree_and_hex_round_trips() {
        assert!(PayoutTree::new(&[]).is_none());
        let h = leaf_hash(&Address::ZERO, 7);
        assert_eq!(from_hex(&to_hex(&h)), Some(h));
        assert_eq!(from_hex("0x12"), None);
    }
}
