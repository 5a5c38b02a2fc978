//! What each fuzz target checks, as plain functions over bytes: the cargo-fuzz targets
//! (`fuzz_targets/`, coverage-guided, `scripts/fuzz.sh`) call them, and so does the short
//! version that CI runs on stable (`api/tests/it/fuzz.rs`: the seeds, the regression inputs
//! and a few thousand seeded mutations of them). A failed assertion or a panic is a finding.
//! Included by `#[path]` in both places; it names only public APIs.

use alloy::primitives::{Signature, U256};
use alloy::sol_types::{Eip712Domain, SolStruct};
use tributary::http::{content_hash, typed_upload, wire};
use tributary_attribution::merkle::{Hash32, MerkleTree, verify, verify_multi};
use tributary_generator::{CitationPolicy, Source, attribute};
use tributary_indexer::{Address, Chunker, ChunkerConfig, IngestOptions, read_upload};

/// A target's check: returns on input it refuses, panics on a finding.
pub type Check = fn(&[u8]);

/// Every target: its name (the folder of its seeds and regressions) and its check.
pub const TARGETS: &[(&str, Check)] = &[
    ("documents", documents),
    ("citations", citations),
    ("merkle", merkle),
    ("request_bodies", request_bodies),
    ("signed_upload", signed_upload),
];

/// Uploaded bytes through the document parsers (by the first byte: .txt, .md or BEIR .jsonl)
/// and the chunker: never a panic, and every chunk's offsets point at its own text in the
/// document (the indexer's invariant).
pub fn documents(data: &[u8]) {
    let Some((&kind, bytes)) = data.split_first() else { return };
    let name = ["a.txt", "a.md", "a.jsonl"][kind as usize % 3];
    let Ok(documents) = read_upload(name, bytes.to_vec()) else { return };
    // Whitespace-separated words stand in for the embedder's tokenizer.
    let config = ChunkerConfig { target_tokens: 8 + (kind as usize % 40), overlap_tokens: kind as usize % 4 };
    let chunker = Chunker::new(config, |s: &str| s.split_whitespace().count().max(1)).expect("a valid config");
    for document in documents {
        for chunk in chunker.chunk(&document.text) {
            assert_eq!(&document.text[chunk.start..chunk.end], chunk.text, "offsets point at the chunk's text");
        }
    }
}

/// The citation parser and checker on any model output: never a panic, and every citation it
/// keeps names a passage that exists.
pub fn citations(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    // question \0 answer \0 passage \0 passage ...
    let mut parts = text.split('\0');
    let (Some(question), Some(answer)) = (parts.next(), parts.next()) else { return };
    let sources: Vec<Source> = parts
        .take(8)
        .enumerate()
        .map(|(i, passage)| Source {
            chunk_id: format!("{i:064x}"),
            text: passage.to_string(),
            document: "d".into(),
            contributor: "0x0000000000000000000000000000000000000001".into(),
            datanet: "fuzz".into(),
            start: 0,
            end: passage.len(),
            relevance: 0.9,
            score: 0.5,
        })
        .collect();
    let (sentences, _) = attribute(answer, question, &sources, &CitationPolicy::default());
    for sentence in sentences {
        for n in sentence.citations {
            assert!(n >= 1 && n <= sources.len(), "citation [{n}] of {} passages", sources.len());
        }
    }
}

fn hashes(bytes: &[u8]) -> Vec<Hash32> {
    bytes.chunks_exact(32).map(|c| c.try_into().expect("32 bytes")).collect()
}

/// Merkle proofs: every proof the tree gives verifies against its root, the same proof for
/// another leaf does not, and verifying arbitrary proofs (single and multi) never panics.
pub fn merkle(data: &[u8]) {
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
}

/// The API's request bodies (the same serde types the handlers extract): any bytes either
/// parse or are refused, never a panic.
pub fn request_bodies(data: &[u8]) {
    let _ = serde_json::from_slice::<wire::SearchRequest>(data);
    let _ = serde_json::from_slice::<wire::AnswerRequest>(data);
    let _ = serde_json::from_slice::<wire::CreateDatanet>(data);
    let _ = serde_json::from_slice::<wire::Upload>(data);
    let _ = serde_json::from_slice::<wire::QuoteRequest>(data);
    let _ = serde_json::from_slice::<wire::ClaimRequest>(data);
}

/// A signed upload as an anonymous caller sends it: the JSON body, the content hash, the
/// EIP-712 message and the signature's recovery never panic on any input.
pub fn signed_upload(data: &[u8]) {
    let Ok(upload) = serde_json::from_slice::<wire::Upload>(data) else { return };
    let hash = content_hash(&upload.documents);
    let mut options = IngestOptions::new(Address::ZERO);
    if let Some(license) = &upload.license {
        options.license = license.clone();
    }
    options.chunker = ChunkerConfig {
        target_tokens: upload.chunk_tokens.unwrap_or(254),
        overlap_tokens: upload.overlap_tokens.unwrap_or(32),
    };
    let nonce = upload.nonce.as_deref().and_then(|n| n.parse::<U256>().ok()).unwrap_or_default();
    let Ok(message) = typed_upload("fuzz", &hash, &options, nonce, upload.deadline.unwrap_or(0)) else { return };
    let domain = Eip712Domain::new(Some("Tributary".into()), Some("1".into()), None, None, Some([7u8; 32].into()));
    let digest = message.eip712_signing_hash(&domain);
    if let Some(Ok(signature)) = upload.signature.as_deref().map(str::parse::<Signature>) {
        let _ = signature.recover_address_from_prehash(&digest);
    }
}
