//! Property tests: conservation per answer and per epoch, cumulative totals that never fall,
//! proofs that verify for every account and fail for altered amounts or accounts.

use proptest::prelude::*;
use tributary_attribution::{
    Amount, CitedChunk, Ledger, NewReceipt, Payer, Payment, Policy, Quote, RetrievedChunk, Role, Shares, TrainedChunk,
    Weighting,
};
use tributary_attribution::{merkle, split_fee};
use tributary_indexer::Address;

fn account(n: u8) -> Address {
    format!("0x{}", hex::encode([n.max(1); 20])).parse().unwrap()
}

fn shares() -> impl Strategy<Value = Shares> {
    (0u32..=10_000, 0u32..=10_000, 0u32..=10_000, 0u32..=10_000).prop_map(|(a, b, c, d)| {
        let mut cuts = [a, b, c, d];
        cuts.sort_unstable();
        Shares {
            protocol_bps: cuts[0],
            adapter_bps: cuts[1] - cuts[0],
            datanet_bps: cuts[2] - cuts[1],
            contributors_bps: cuts[3] - cuts[2],
            training_bps: 10_000 - cuts[3],
        }
    })
}

fn cited(weights: &[(u8, u64)]) -> Vec<CitedChunk> {
    weights
        .iter()
        .enumerate()
        .map(|(i, (who, weight))| CitedChunk {
            datanet: "d".into(),
            datanet_id: 1 + (i as i64 % 2),
            datanet_owner: account(200 + (i as u8 % 2)),
            chunk_id: format!("{i:064x}"),
            contributor: account(*who),
            sentences: vec![],
            score: 1.0,
            weight: *weight,
        })
        .collect()
}

fn trained(weights: &[(u8, u64)]) -> Vec<TrainedChunk> {
    weights
        .iter()
        .enumerate()
        .map(|(i, (who, weight))| TrainedChunk {
            adapter: "a".into(),
            training_root: "00".repeat(32),
            datanet: "d".into(),
            datanet_id: 1,
            chunk_id: format!("{:064x}", 1000 + i),
            // 0: a chunk of a contributor without an address (its share is the protocol's).
            contributor: if *who == 0 { Address::ZERO } else { account(*who) },
            examples: vec![],
            weight: *weight,
        })
        .collect()
}

proptest! {
    #[test]
    fn every_answer_conserves_its_fee(
        fee in 0u128..=10_000_000_000_000_000_000_000_000_000_000u128,
        shares in shares(),
        owners in 0usize..4,
        weights in proptest::collection::vec((1u8..30, 0u64..=1_000_000), 0..8),
        training in proptest::collection::vec((0u8..30, 0u64..=1_000_000), 0..6),
    ) {
        let owners: Vec<Address> = (0..owners).map(|i| account(100 + i as u8)).collect();
        let splits = split_fee(fee, &shares, account(250), &owners, &cited(&weights), &trained(&training));
        prop_assert_eq!(splits.iter().map(|s| s.amount).sum::<Amount>(), fee);
        prop_assert!(splits.iter().all(|s| s.amount > 0 && s.account != Address::ZERO));
        // Nobody with zero weight is paid as a contributor, cited or trained on.
        for (i, (_, w)) in weights.iter().enumerate() {
            if *w == 0 {
                let id = format!("{i:064x}");
                prop_assert!(!splits.iter().any(|s| s.chunk_id.as_deref() == Some(id.as_str())));
            }
        }
        for (i, (_, w)) in training.iter().enumerate() {
            if *w == 0 {
                let id = format!("{:064x}", 1000 + i);
                prop_assert!(!splits.iter().any(|s| s.chunk_id.as_deref() == Some(id.as_str())));
            }
        }
        // The training data never gets more than its share.
        let to_training: Amount =
            splits.iter().filter(|s| s.role == Role::TrainingContributor).map(|s| s.amount).sum();
        prop_assert!(to_training * 10_000 <= fee * shares.training_bps as Amount);
    }

    #[test]
    fn proofs_verify_for_every_account_and_fail_when_altered(
        leaves in proptest::collection::btree_map(1u8..=255, 1u128..=u128::MAX / 2, 1..40),
        bump in 1u128..1000,
    ) {
        let entries: Vec<merkle::PayoutLeaf> = leaves
            .iter()
            .enumerate()
            .map(|(i, (a, v))| merkle::PayoutLeaf { index: i as u64, account: account(*a), cumulative: *v })
            .collect();
        let tree = merkle::PayoutTree::new(&entries).unwrap();
        let root = tree.root();
        for (leaf, proof) in tree.proofs() {
            let (who, value, index) = (leaf.account, leaf.cumulative, leaf.index);
            prop_assert!(merkle::verify(&root, &leaf.hash(), &proof));
            prop_assert!(!merkle::verify(&root, &merkle::leaf_hash(index, &who, value + bump), &proof));
            prop_assert!(!merkle::verify(&root, &merkle::leaf_hash(index + 1, &who, value), &proof));
            let other = if who == account(1) { account(2) } else { account(1) };
            prop_assert!(!merkle::verify(&root, &merkle::leaf_hash(index, &other, value), &proof));
        }
        // Every subset proven at once verifies; a changed amount does not.
        let half: Vec<Address> = entries.iter().step_by(2).map(|l| l.account).collect();
        let multi = tree.multiproof(&half);
        let hashes: Vec<merkle::Hash32> = multi.leaves.iter().map(merkle::PayoutLeaf::hash).collect();
        prop_assert_eq!(multi.leaves.len(), half.len());
        prop_assert!(merkle::verify_multi(&root, &hashes, &multi.proof, &multi.flags));
        let mut forged = hashes.clone();
        let first = multi.leaves[0];
        forged[0] = merkle::leaf_hash(first.index, &first.account, first.cumulative + bump);
        prop_assert!(!merkle::verify_multi(&root, &forged, &multi.proof, &multi.flags));
    }
}

/// Random answers and settlements on a real ledger: each epoch's total grows by exactly the
/// fees recorded since the last one, and no account's cumulative total ever falls.
#[test]
fn epochs_conserve_and_cumulative_totals_never_fall() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let fx = runtime.block_on(crate::fixture(crate::Backend::Sqlite));
    let ledger = Ledger::new(fx.store.catalog());
    let chunks = runtime.block_on(async {
        let ids = fx.store.catalog().chunk_ids(fx.datanet.id).await.unwrap();
        fx.store.catalog().chunk_records(fx.datanet.id, &ids).await.unwrap()
    });
    let config = ProptestConfig { cases: 6, ..ProptestConfig::default() };
    let steps =
        proptest::collection::vec((0u128..5_000_000, proptest::collection::vec(0usize..5, 0..4), any::<bool>()), 1..12);
    let state = std::cell::RefCell::new((0u128, std::collections::BTreeMap::<Address, u128>::new()));
    proptest!(config, |(steps in steps, shares in shares())| {
        runtime.block_on(async {
            let policy = Policy { shares, protocol_account: account(250), slash_sink: account(251), ..Policy::default() };
            ledger.set_policy(&policy).await.unwrap();
            ledger.grant(&account(252), 10_000_000_000_000_000_000, Some("payer")).await.unwrap();
            for (fee, picks, settle) in steps {
                let picked: Vec<_> = picks.iter().map(|i| &chunks[i % chunks.len()]).collect();
                let mut seen = std::collections::HashSet::new();
                let picked: Vec<_> = picked.into_iter().filter(|c| seen.insert(c.chunk_id)).collect();
                let new = NewReceipt {
                    question: "q".into(),
                    keep_question: false,
                    datanets: vec![fx.datanet.name.clone()],
                    model: "m".into(),
                    adapters: vec![],
                    answer: "a".into(),
                    retrieved: picked.iter().map(|c| RetrievedChunk { datanet: fx.datanet.name.clone(), chunk_id: c.chunk_id.to_hex(), score: 1.0 }).collect(),
                    cited: picked.iter().enumerate().map(|(i, c)| CitedChunk {
                        datanet: fx.datanet.name.clone(), datanet_id: fx.datanet.id, datanet_owner: Address::ZERO,
                        chunk_id: c.chunk_id.to_hex(), contributor: Address::ZERO, sentences: vec![], score: 1.0, weight: i as u64 + 1,
                    }).collect(),
                    trained: Vec::new(),
                    quote: Quote { fee, weighting: Weighting::Citation, adapter_owners: vec![] },
                    payment: Payment::Charge { payer: Payer::Address(account(252)), hold: None },
                };
                let receipt = ledger.record(new).await.unwrap();
                assert_eq!(receipt.credits.iter().map(|c| c.amount).sum::<Amount>(), fee);
                state.borrow_mut().0 += fee;
                if settle && let Some(epoch) = ledger.settle().await.unwrap().epoch {
                    assert_eq!(epoch.total, state.borrow().0, "an epoch's total is every fee so far");
                    let mut totals = Vec::new();
                    for who in [fx.datanet.owner, crate::alice(), account(250)] {
                        if let Ok(proof) = ledger.proof(&who, Some(epoch.number)).await {
                            totals.push((who, proof.cumulative));
                        }
                    }
                    let previous = &mut state.borrow_mut().1;
                    for (who, cumulative) in totals {
                        let before = previous.insert(who, cumulative).unwrap_or(0);
                        assert!(cumulative >= before, "cumulative totals never fall");
                    }
                }
            }
        });
    });
    let report = runtime.block_on(ledger.verify()).unwrap();
    assert!(report.ok(), "{:?}", report.problems);
}
