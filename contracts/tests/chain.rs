//! The contracts on a real anvil: deploy, registry proofs, two epochs, claims (valid, bad proof,
//! double, the second epoch's delta), pushBatch, pause, each revert reason, and balances that
//! reconcile with the cumulative totals to the wei.

use alloy::primitives::{Address, B256, U256, keccak256};
use alloy::sol_types::SolValue;
use tributary_attribution::merkle::PayoutTree;
use tributary_contracts::chain::{ANVIL_KEYS, Anvil, Chain, revert};

/// The payout tree over `entries`, as the ledger builds it: root, and each account's proof.
fn payout_tree(entries: &[(Address, u128)]) -> (B256, Vec<(Address, U256, Vec<B256>)>) {
    let leaves: Vec<(tributary_indexer::Address, u128)> =
        entries.iter().map(|(a, v)| (a.to_string().parse().unwrap(), *v)).collect();
    let tree = PayoutTree::new(&leaves).unwrap();
    let proofs = tree
        .proofs()
        .into_iter()
        .map(|(a, v, p)| {
            let account: Address = a.to_checksummed().parse().unwrap();
            (account, U256::from(v), p.into_iter().map(B256::from).collect())
        })
        .collect();
    (B256::from(tree.root()), proofs)
}

fn proof_of(proofs: &[(Address, U256, Vec<B256>)], who: Address) -> (U256, Vec<B256>) {
    let (_, value, proof) = proofs.iter().find(|(a, _, _)| *a == who).unwrap();
    (*value, proof.clone())
}

async fn expect_revert<T>(result: Result<T, alloy::contract::Error>, reason: &str) {
    match result {
        Ok(_) => panic!("expected the revert {reason}"),
        Err(e) => {
            let err = revert(e).to_string();
            assert!(err.contains(reason), "expected {reason}, got {err}");
        }
    }
}

#[tokio::test]
async fn deploy_settle_claim_and_reconcile_on_anvil() {
    let anvil = Anvil::start().await.unwrap();
    let settler = Chain::connect(anvil.url(), ANVIL_KEYS[0]).unwrap();
    let alice = Chain::connect(anvil.url(), ANVIL_KEYS[1]).unwrap();
    let bob = Chain::connect(anvil.url(), ANVIL_KEYS[2]).unwrap();
    assert!(Chain::connect(anvil.url(), "0x1234").is_err());
    let (a, b) = (alice.signer(), bob.signer());

    let deployment = settler.deploy(None, U256::from(10u128.pow(24))).await.unwrap();
    let funding = U256::from(1_000_000u64);
    settler
        .token(deployment.token)
        .transfer(deployment.payouts, funding)
        .send()
        .await
        .unwrap()
        .get_receipt()
        .await
        .unwrap();

    // The registry: a contribution root, a chunk proven against it.
    let registry = settler.registry(deployment.registry);
    registry.register("rivers".into()).send().await.unwrap().get_receipt().await.unwrap();
    let id = keccak256("rivers".as_bytes());
    let leaf = |chunk: B256, who: Address| keccak256(keccak256((chunk, who).abi_encode()));
    let (c1, c2) = (B256::repeat_byte(0x11), B256::repeat_byte(0x22));
    let (l1, l2) = (leaf(c1, a), leaf(c2, b));
    let root = if l1 <= l2 {
        keccak256([l1.as_slice(), l2.as_slice()].concat())
    } else {
        keccak256([l2.as_slice(), l1.as_slice()].concat())
    };
    registry.commitRoot(id, root).send().await.unwrap().get_receipt().await.unwrap();
    assert_eq!(registry.versions(id).call().await.unwrap(), 1);
    assert!(registry.proveContribution(id, 1, c1, a, vec![l2]).call().await.unwrap());
    assert!(!registry.proveContribution(id, 1, c1, b, vec![l2]).call().await.unwrap(), "wrong contributor");
    expect_revert(bob.registry(deployment.registry).commitRoot(id, root).send().await, "NotDatanetOwner").await;
    expect_revert(registry.register("rivers".into()).send().await, "DatanetExists").await;

    // Epoch 1.
    let payouts = settler.payouts(deployment.payouts);
    let (root1, proofs1) = payout_tree(&[(a, 100), (b, 50)]);
    settler.post_epoch(deployment.payouts, 1, root1, B256::repeat_byte(1)).await.unwrap();
    let err = settler.post_epoch(deployment.payouts, 1, root1, B256::ZERO).await.unwrap_err();
    assert!(err.to_string().contains("EpochNotIncreasing"), "{err}");
    expect_revert(alice.payouts(deployment.payouts).postEpoch(2, root1, B256::ZERO).send().await, "AccessControl")
        .await;

    // alice claims (bob submits it for her: anyone may); again: nothing; a forged amount: refused.
    let (value, proof) = proof_of(&proofs1, a);
    bob.payouts(deployment.payouts).claim(a, value, proof.clone()).send().await.unwrap().get_receipt().await.unwrap();
    expect_revert(alice.payouts(deployment.payouts).claim(a, value, proof.clone()).send().await, "NothingToClaim")
        .await;
    expect_revert(
        alice.payouts(deployment.payouts).claim(a, value + U256::from(1), proof).send().await,
        "InvalidProof",
    )
    .await;

    // Epoch 2: cumulative totals grew; pushBatch pays alice the delta and bob everything.
    let (root2, proofs2) = payout_tree(&[(a, 160), (b, 80)]);
    settler.post_epoch(deployment.payouts, 2, root2, B256::repeat_byte(2)).await.unwrap();
    let (va, pa) = proof_of(&proofs2, a);
    let (vb, pb) = proof_of(&proofs2, b);
    // Pausing stops claims and batches.
    payouts.pause().send().await.unwrap().get_receipt().await.unwrap();
    expect_revert(alice.payouts(deployment.payouts).claim(a, va, pa.clone()).send().await, "EnforcedPause").await;
    payouts.unpause().send().await.unwrap().get_receipt().await.unwrap();
    expect_revert(payouts.pushBatch(vec![a, b], vec![va], vec![pa.clone(), pb.clone()]).send().await, "LengthMismatch")
        .await;
    payouts
        .pushBatch(vec![a, b], vec![va, vb], vec![pa.clone(), pb.clone()])
        .send()
        .await
        .unwrap()
        .get_receipt()
        .await
        .unwrap();
    // A second batch with nothing new pays nothing and does not revert.
    payouts.pushBatch(vec![a, b], vec![va, vb], vec![pa, pb]).send().await.unwrap().get_receipt().await.unwrap();

    // Balances reconcile with the cumulative totals, to the wei.
    let token = settler.token(deployment.token);
    assert_eq!(token.balanceOf(a).call().await.unwrap(), U256::from(160));
    assert_eq!(token.balanceOf(b).call().await.unwrap(), U256::from(80));
    assert_eq!(payouts.paid(a).call().await.unwrap(), U256::from(160));
    assert_eq!(token.balanceOf(deployment.payouts).call().await.unwrap(), funding - U256::from(240));
    assert_eq!(payouts.latestEpoch().call().await.unwrap(), 2);
    assert_eq!(payouts.epochRoot(1).call().await.unwrap(), root1);
}
