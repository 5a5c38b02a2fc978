//! The epoch payout tree, exactly as OpenZeppelin builds and checks it.
//!
//! A leaf is `keccak256(bytes.concat(keccak256(abi.encode(index, account, cumulativeAmount))))`:
//! `index` is the account's stable place in the ledger (the payout contract packs what each
//! account was paid three to a storage word by it); the second hash is OpenZeppelin's
//! `StandardMerkleTree` convention, because a bare 64-byte leaf could be passed off as an inner
//! node (a second-preimage forgery). Leaves are sorted by hash and laid out as that library lays
//! them out (a complete binary tree in an array), and inner nodes hash the sorted pair, as
//! `MerkleProof.verify` expects; [`PayoutTree::multiproof`] proves many leaves at once, in the
//! order `MerkleProof.multiProofVerify` takes them. A test checks roots, proofs and multiproofs
//! against the library's own output.

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

/// The leaf of `(index, account, cumulative)`.
pub fn leaf_hash(index: u64, account: &Address, cumulative: u128) -> Hash32 {
    let mut encoded = [0u8; 96];
    encoded[24..32].copy_from_slice(&index.to_be_bytes());
    encoded[44..64].copy_from_slice(account.as_bytes());
    encoded[80..96].copy_from_slice(&cumulative.to_be_bytes());
    keccak(&[&keccak(&[&encoded])])
}

fn node_hash(a: &Hash32, b: &Hash32) -> Hash32 {
    if a <= b { keccak(&[a, b]) } else { keccak(&[b, a]) }
}

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

/// One account's leaf in a payout tree: its stable index, address and cumulative total.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PayoutLeaf {
    pub index: u64,
    pub account: Address,
    pub cumulative: u128,
}

impl PayoutLeaf {
    pub fn hash(&self) -> Hash32 {
        leaf_hash(self.index, &self.account, self.cumulative)
    }
}

/// Many leaves proven together: `MerkleProof.multiProofVerify(proof, flags, root, leaves)`
/// with the leaves in exactly this order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MultiProof {
    pub leaves: Vec<PayoutLeaf>,
    pub proof: Vec<Hash32>,
    pub flags: Vec<bool>,
}

/// The payout tree over every account's leaf.
#[derive(Debug, Clone)]
pub struct PayoutTree {
    tree: MerkleTree,
    /// Each leaf with its position in the tree, in leaf order (tree position descending).
    leaves: Vec<(PayoutLeaf, usize)>,
}

impl PayoutTree {
    /// Builds the tree; `None` for no leaves (an epoch always has at least one account).
    pub fn new(entries: &[PayoutLeaf]) -> Option<PayoutTree> {
        let hashes: Vec<Hash32> = entries.iter().map(PayoutLeaf::hash).collect();
        let (tree, positions) = MerkleTree::new(&hashes)?;
        let mut leaves: Vec<(PayoutLeaf, usize)> = entries.iter().copied().zip(positions).collect();
        leaves.sort_by_key(|l| std::cmp::Reverse(l.1));
        Some(PayoutTree { tree, leaves })
    }

    pub fn root(&self) -> Hash32 {
        self.tree.root()
    }

    /// Every leaf with its proof (sibling hashes from the leaf up), in leaf order.
    pub fn proofs(&self) -> Vec<(PayoutLeaf, Vec<Hash32>)> {
        self.leaves.iter().map(|(leaf, position)| (*leaf, self.tree.proof(*position))).collect()
    }

    /// One proof for the leaves of `accounts` (unknown accounts are left out), as
    /// OpenZeppelin's `getMultiProof` builds it: leaves by tree position, deepest first.
    pub fn multiproof(&self, accounts: &[Address]) -> MultiProof {
        let wanted: std::collections::HashSet<&Address> = accounts.iter().collect();
        // `self.leaves` is already in descending tree position.
        let chosen: Vec<(PayoutLeaf, usize)> =
            self.leaves.iter().filter(|(leaf, _)| wanted.contains(&leaf.account)).copied().collect();
        let mut queue: std::collections::VecDeque<usize> = chosen.iter().map(|(_, p)| *p).collect();
        let (mut proof, mut flags) = (Vec::new(), Vec::new());
        while let Some(&node) = queue.front() {
            if node == 0 {
                break;
            }
            queue.pop_front();
            let sibling = if node % 2 == 1 { node + 1 } else { node - 1 };
            if queue.front() == Some(&sibling) {
                flags.push(true);
                queue.pop_front();
            } else {
                flags.push(false);
                proof.push(self.tree.nodes[sibling]);
            }
            queue.push_back((node - 1) / 2);
        }
        if chosen.is_empty() {
            proof.push(self.root());
        }
        MultiProof { leaves: chosen.into_iter().map(|(leaf, _)| leaf).collect(), proof, flags }
    }
}

/// `MerkleProof.multiProofVerify(proof, flags, root, leaves)`.
pub fn verify_multi(root: &Hash32, leaves: &[Hash32], proof: &[Hash32], flags: &[bool]) -> bool {
    if leaves.len() + proof.len() != flags.len() + 1 {
        return false;
    }
    // Leaves first, then the hashes computed so far, as a queue.
    fn take(leaves: &[Hash32], hashes: &[Hash32], leaf_at: &mut usize, hash_at: &mut usize) -> Option<Hash32> {
        if *leaf_at < leaves.len() {
            *leaf_at += 1;
            Some(leaves[*leaf_at - 1])
        } else {
            *hash_at += 1;
            hashes.get(*hash_at - 1).copied()
        }
    }
    let (mut leaf_at, mut hash_at, mut proof_at) = (0, 0, 0);
    let mut hashes: Vec<Hash32> = Vec::with_capacity(flags.len());
    for &flag in flags {
        let Some(a) = take(leaves, &hashes, &mut leaf_at, &mut hash_at) else { return false };
        let b = if flag {
            take(leaves, &hashes, &mut leaf_at, &mut hash_at)
        } else {
            proof_at += 1;
            proof.get(proof_at - 1).copied()
        };
        let Some(b) = b else { return false };
        hashes.push(node_hash(&a, &b));
    }
    // No hashing at all: one leaf is the root, or (no leaves) the proof's only element is.
    let computed = match (hashes.last(), leaves.first(), proof.first()) {
        (Some(_), _, _) if proof_at != proof.len() => return false,
        (Some(last), _, _) => *last,
        (None, Some(leaf), _) => *leaf,
        (None, None, Some(p)) => *p,
        (None, None, None) => return false,
    };
    computed == *root
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

    fn leaf_of(value: &serde_json::Value) -> PayoutLeaf {
        PayoutLeaf {
            index: value[0].as_str().unwrap().parse().unwrap(),
            account: value[1].as_str().unwrap().parse().unwrap(),
            cumulative: value[2].as_str().unwrap().parse().unwrap(),
        }
    }

    fn hexes(value: &serde_json::Value) -> Vec<String> {
        value.as_array().unwrap().iter().map(|p| p.as_str().unwrap().to_string()).collect()
    }

    /// Roots, proofs and multiproofs from `@openzeppelin/merkle-tree`
    /// (fixtures/oz_merkle_vectors.mjs).
    #[test]
    fn matches_openzeppelin_standard_merkle_tree() {
        let fixture: serde_json::Value =
            serde_json::from_str(include_str!("../tests/fixtures/oz_merkle.json")).expect("fixture is JSON");
        let cases = fixture["cases"].as_array().expect("cases");
        assert_eq!(cases.len(), 8);
        for case in cases {
            let values: Vec<PayoutLeaf> = case["values"].as_array().expect("values").iter().map(leaf_of).collect();
            let tree = PayoutTree::new(&values).expect("non-empty");
            let root = tree.root();
            assert_eq!(to_hex(&root), case["root"].as_str().unwrap(), "{} leaves", values.len());
            let proofs = tree.proofs();
            for (i, leaf) in values.iter().enumerate() {
                let (_, got) = proofs.iter().find(|(l, _)| l == leaf).expect("leaf present");
                assert_eq!(got.iter().map(to_hex).collect::<Vec<_>>(), hexes(&case["proofs"][i]));
                assert!(verify(&root, &leaf.hash(), got));
                // A different amount or index for the same account does not verify.
                assert!(!verify(&root, &leaf_hash(leaf.index, &leaf.account, leaf.cumulative + 1), got));
                assert!(!verify(&root, &leaf_hash(leaf.index + 1, &leaf.account, leaf.cumulative), got));
            }
            for want in case["multiproofs"].as_array().unwrap() {
                let accounts: Vec<Address> = hexes(&want["accounts"]).iter().map(|a| a.parse().unwrap()).collect();
                let got = tree.multiproof(&accounts);
                let leaves: Vec<PayoutLeaf> = want["leaves"].as_array().unwrap().iter().map(leaf_of).collect();
                assert_eq!(got.leaves, leaves);
                assert_eq!(got.proof.iter().map(to_hex).collect::<Vec<_>>(), hexes(&want["proof"]));
                let flags: Vec<bool> = want["flags"].as_array().unwrap().iter().map(|f| f.as_bool().unwrap()).collect();
                assert_eq!(got.flags, flags);
                let hashes: Vec<Hash32> = got.leaves.iter().map(PayoutLeaf::hash).collect();
                assert!(verify_multi(&root, &hashes, &got.proof, &got.flags));
                // One leaf's amount changed: the batch no longer verifies.
                let mut forged = hashes.clone();
                forged[0] = leaf_hash(leaves[0].index, &leaves[0].account, leaves[0].cumulative + 1);
                assert!(!verify_multi(&root, &forged, &got.proof, &got.flags));
            }
        }
    }

    #[test]
    fn multiproof_of_nothing_or_strangers_is_the_root() {
        let leaves: Vec<PayoutLeaf> = (0..5u8)
            .map(|i| PayoutLeaf {
                index: i.into(),
                account: format!("0x{}", hex::encode([i + 1; 20])).parse().unwrap(),
                cumulative: 10,
            })
            .collect();
        let tree = PayoutTree::new(&leaves).unwrap();
        let none = tree.multiproof(&["0x6363636363636363636363636363636363636363".parse().unwrap()]);
        assert!(none.leaves.is_empty() && none.flags.is_empty());
        assert_eq!(none.proof, vec![tree.root()]);
        assert!(verify_multi(&tree.root(), &[], &none.proof, &none.flags));
        // Malformed flags are refused, never a panic.
        let hashes: Vec<Hash32> = leaves.iter().map(PayoutLeaf::hash).collect();
        assert!(!verify_multi(&tree.root(), &hashes[..2], &[], &[true]));
        assert!(!verify_multi(&tree.root(), &hashes[..1], &[], &[true, true]));
    }

    #[test]
    fn empty_has_no_tree_and_hex_round_trips() {
        assert!(PayoutTree::new(&[]).is_none());
        let h = leaf_hash(0, &Address::ZERO, 7);
        assert_eq!(from_hex(&to_hex(&h)), Some(h));
        assert_eq!(from_hex("0x12"), None);
    }
}
