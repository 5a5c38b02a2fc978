//! The contracts on a real anvil: deploy, deposits, registry proofs, epochs within what was
//! deposited, claims (valid, bad
//! proof, wrong index, double, later deltas), pushBatch with a multiproof, pause, each revert
//! reason, paid totals packed three to a word (and one past a lane's 85 bits), and balances that
//! reconcile with the cumulative totals to the wei. Keystore signers.

use alloy::primitives::{Address, B256, U256, keccak256};
use alloy::sol_types::SolValue;
use tributary_attribution::merkle::{PayoutLeaf, PayoutTree};
use tributary_contracts::chain::{ANVIL_KEYS, Anvil, AttributionPayouts, Chain, SignerKey, revert, write_keystore};

/// One account's leaf as the contract takes it: index, account, cumulative total.
type Leaf = (U256, Address, U256);

/// The payout tree over `(index, account, cumulative)` entries, as the ledger builds it.
fn payout_tree(entries: &[(u64, Address, u128)]) -> PayoutTree {
    let leaves: Vec<PayoutLeaf> = entries
        .iter()
        .map(|(index, a, v)| PayoutLeaf { index: *index, account: a.to_string().parse().unwrap(), cumulative: *v })
        .collect();
    PayoutTree::new(&leaves).unwrap()
}

fn root_of(tree: &PayoutTree) -> B256 {
    B256::from(tree.root())
}

/// `who`'s leaf and proof.
fn proof_of(tree: &PayoutTree, who: Address) -> (Leaf, Vec<B256>) {
    let (leaf, proof) = tree.proofs().into_iter().find(|(l, _)| l.account.as_bytes() == who.as_slice()).unwrap();
    ((U256::from(leaf.index), who, U256::from(leaf.cumulative)), proof.into_iter().map(B256::from).collect())
}

/// The multiproof of `accounts`: leaves in the contract's order, proof, flags.
fn batch_of(tree: &PayoutTree, accounts: &[Address]) -> (Vec<Leaf>, Vec<B256>, Vec<bool>) {
    let wanted: Vec<tributary_indexer::Address> = accounts.iter().map(|a| a.to_string().parse().unwrap()).collect();
    let multi = tree.multiproof(&wanted);
    let leaves = multi
        .leaves
        .iter()
        .map(|l| (U256::from(l.index), Address::from(*l.account.as_bytes()), U256::from(l.cumulative)))
        .collect();
    (leaves, multi.proof.into_iter().map(B256::from).collect(), multi.flags)
}

fn columns(leaves: &[Leaf]) -> (Vec<U256>, Vec<Address>, Vec<U256>) {
    (leaves.iter().map(|l| l.0).collect(), leaves.iter().map(|l| l.1).collect(), leaves.iter().map(|l| l.2).collect())
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

    let deployment = settler.deploy(None, U256::from(10u128.pow(27))).await.unwrap();
    // Roles apart (issue #24, defect 13): alice as admin, the signer as settler only; the
    // settler can neither pause nor grant, the admin can pause.
    let apart = settler.deploy_with_admin(None, U256::from(1u64), alice.signer()).await.unwrap();
    let contract = settler.payouts(apart.payouts);
    let (admin_role, settler_role) = (B256::ZERO, contract.SETTLER_ROLE().call().await.unwrap());
    assert!(contract.hasRole(admin_role, alice.signer()).call().await.unwrap());
    assert!(!contract.hasRole(admin_role, settler.signer()).call().await.unwrap());
    assert!(contract.hasRole(settler_role, settler.signer()).call().await.unwrap());
    expect_revert(contract.pause().send().await, "AccessControl").await;
    expect_revert(contract.grantRole(admin_role, settler.signer()).send().await, "AccessControl").await;
    alice.payouts(apart.payouts).pause().send().await.unwrap().get_receipt().await.unwrap();
    assert!(contract.paused().call().await.unwrap());

    // The packed totals cannot be truncated into a smaller number: with more deposited than
    // 104 bits hold, an epoch total past 2^104 - 1 is refused, and the largest one fits exactly.
    let huge = settler.deploy(None, U256::from(1u8) << 106).await.unwrap();
    settler.deposit(huge.payouts, huge.token, a, (U256::from(1u8) << 105) + U256::from(1u8)).await.unwrap();
    let big = settler.payouts(huge.payouts);
    let top = (U256::from(1u8) << 104) - U256::from(1u8);
    let root = B256::repeat_byte(9);
    let err = settler.post_epoch(huge.payouts, 1, root, B256::ZERO, top + U256::from(1u8)).await.unwrap_err();
    assert!(err.to_string().contains("EpochOverfunded"), "{err}");
    settler.post_epoch(huge.payouts, 1, root, B256::ZERO, top).await.unwrap();
    assert_eq!(U256::from(big.epochTotal().call().await.unwrap()), top);
    assert_eq!(big.totalPaid().call().await.unwrap(), 0);
    let payouts = settler.payouts(deployment.payouts);
    // Payers' money comes in through `deposit` (approve, then pull): a Deposited event per
    // deposit, the amount counted in totalDeposited. Nothing for the zero address, nothing of 0.
    let funding = U256::from(10u128.pow(26));
    let tx = settler.deposit(deployment.payouts, deployment.token, b, funding).await.unwrap();
    let head = alloy::providers::Provider::get_block_number(settler.provider()).await.unwrap();
    let logs = settler.deposits(deployment.payouts, 0, head).await.unwrap();
    assert_eq!(logs.len(), 1);
    assert_eq!((logs[0].payer, logs[0].amount, logs[0].transaction), (b, funding, tx));
    assert_eq!(payouts.totalDeposited().call().await.unwrap(), funding);
    expect_revert(payouts.deposit(Address::ZERO, U256::from(1)).send().await, "ZeroAddress").await;
    expect_revert(payouts.deposit(a, U256::ZERO).send().await, "ZeroAmount").await;
    expect_revert(alice.payouts(deployment.payouts).deposit(a, U256::from(1)).send().await, "revert").await;

    // The registry: a contribution root, a chunk proven against it.
    let registry = settler.registry(deployment.registry);
    // Squatting (issue #24, defect 10): bob registers "rivers" first; it is his entry, under
    // his address, and the operator's own registration of the name still goes through.
    let bobs = bob.registry(deployment.registry);
    bobs.register("rivers".into()).send().await.unwrap().get_receipt().await.unwrap();
    registry.register("rivers".into()).send().await.unwrap().get_receipt().await.unwrap();
    let id = keccak256((settler.signer(), "rivers".to_string()).abi_encode_params());
    assert_eq!(registry.datanetId(settler.signer(), "rivers".into()).call().await.unwrap(), id);
    assert_eq!(registry.ownerOf(id).call().await.unwrap(), settler.signer());
    let bob_id = keccak256((b, "rivers".to_string()).abi_encode_params());
    assert_eq!(registry.ownerOf(bob_id).call().await.unwrap(), b);
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

    // Adapter training roots: written once under the committer, read back by id; the same
    // name under another address is another adapter.
    let training = B256::repeat_byte(0x5a);
    registry.commitAdapterTraining("rivers".into(), training).send().await.unwrap().get_receipt().await.unwrap();
    let adapter = keccak256((settler.signer(), "adapter".to_string(), "rivers".to_string()).abi_encode_params());
    assert_ne!(adapter, id, "an adapter's id is apart from a Datanet's of the same name");
    assert_eq!(registry.adapterId(settler.signer(), "rivers".into()).call().await.unwrap(), adapter);
    assert_eq!(registry.adapterTrainingRoot(adapter).call().await.unwrap(), training);
    let again = registry.commitAdapterTraining("rivers".into(), B256::repeat_byte(1)).send().await;
    expect_revert(again, "AdapterCommitted").await;
    expect_revert(registry.commitAdapterTraining("other".into(), B256::ZERO).send().await, "EmptyRoot").await;
    expect_revert(registry.commitAdapterTraining(String::new(), training).send().await, "EmptyName").await;
    expect_revert(registry.adapterTrainingRoot(B256::repeat_byte(3)).call().await, "UnknownAdapter").await;
    bobs.commitAdapterTraining("rivers".into(), B256::repeat_byte(0x6b))
        .send()
        .await
        .unwrap()
        .get_receipt()
        .await
        .unwrap();
    let bobs_adapter = keccak256((b, "adapter".to_string(), "rivers".to_string()).abi_encode_params());
    assert_eq!(registry.adapterTrainingRoot(bobs_adapter).call().await.unwrap(), B256::repeat_byte(0x6b));
    assert_eq!(registry.adapterTrainingRoot(adapter).call().await.unwrap(), training, "bob's commit is his own");

    // Epoch 1: alice at index 0, bob at 1 (one storage word holds both).
    let tree1 = payout_tree(&[(0, a, 100), (1, b, 50)]);
    let root1 = root_of(&tree1);
    expect_revert(payouts.claim(U256::ZERO, a, U256::from(100), vec![]).send().await, "NoEpoch").await;
    // Solvency: an epoch crediting more than was deposited is refused.
    let over = funding + U256::from(1);
    let err = settler.post_epoch(deployment.payouts, 1, root1, B256::repeat_byte(1), over).await.unwrap_err();
    assert!(err.to_string().contains("EpochOverfunded"), "{err}");
    settler.post_epoch(deployment.payouts, 1, root1, B256::repeat_byte(1), U256::from(150)).await.unwrap();
    let err = settler.post_epoch(deployment.payouts, 1, root1, B256::ZERO, U256::from(150)).await.unwrap_err();
    assert!(err.to_string().contains("EpochNotIncreasing"), "{err}");
    expect_revert(payouts.postEpoch(2, B256::ZERO, B256::ZERO, U256::from(150)).send().await, "EmptyRoot").await;
    expect_revert(payouts.postEpoch(2, root1, B256::ZERO, U256::from(149)).send().await, "TotalFalling").await;
    // The epoch number is packed into 32 bits with the totals: past it, refused (not truncated
    // into an epoch before this one).
    let past = u64::from(u32::MAX) + 2;
    expect_revert(payouts.postEpoch(past, root1, B256::ZERO, U256::from(150)).send().await, "EpochOutOfRange").await;
    assert_eq!(payouts.latestEpoch().call().await.unwrap(), 1);
    expect_revert(
        alice.payouts(deployment.payouts).postEpoch(2, root1, B256::ZERO, U256::from(150)).send().await,
        "AccessControl",
    )
    .await;

    // alice claims (bob submits it for her: anyone may); again: nothing; a forged amount or
    // index: refused.
    let ((index, _, value), proof) = proof_of(&tree1, a);
    let as_bob = bob.payouts(deployment.payouts);
    as_bob.claim(index, a, value, proof.clone()).send().await.unwrap().get_receipt().await.unwrap();
    assert_eq!(payouts.paid(index).call().await.unwrap(), value);
    assert_eq!(payouts.paid(U256::from(1)).call().await.unwrap(), U256::ZERO, "bob's lane untouched");
    expect_revert(as_bob.claim(index, a, value, proof.clone()).send().await, "NothingToClaim").await;
    expect_revert(as_bob.claim(index, a, value + U256::from(1), proof.clone()).send().await, "InvalidProof").await;
    expect_revert(as_bob.claim(U256::from(1), a, value, proof).send().await, "InvalidProof").await;

    // Epoch 2: totals grew, and carol (index 2, the same word) earned past an 85-bit lane.
    let carol = Address::repeat_byte(0xca);
    let big: u128 = (1 << 85) + 5;
    let tree2 = payout_tree(&[(0, a, 160), (1, b, 80), (2, carol, big)]);
    let total2 = U256::from(160 + 80) + U256::from(big);
    settler.post_epoch(deployment.payouts, 2, root_of(&tree2), B256::repeat_byte(2), total2).await.unwrap();
    // Pausing stops claims and batches.
    payouts.pause().send().await.unwrap().get_receipt().await.unwrap();
    let ((ia, _, va), pa) = proof_of(&tree2, a);
    expect_revert(as_bob.claim(ia, a, va, pa.clone()).send().await, "EnforcedPause").await;
    let (leaves, proof, flags) = batch_of(&tree2, &[a, b, carol]);
    let (indices, accounts, amounts) = columns(&leaves);
    let push =
        |i: Vec<U256>, a: Vec<Address>, v: Vec<U256>, p: Vec<B256>, f: Vec<bool>| payouts.pushBatch(i, a, v, p, f);
    expect_revert(
        push(indices.clone(), accounts.clone(), amounts.clone(), proof.clone(), flags.clone()).send().await,
        "EnforcedPause",
    )
    .await;
    payouts.unpause().send().await.unwrap().get_receipt().await.unwrap();
    expect_revert(
        push(indices.clone(), accounts.clone(), amounts[1..].to_vec(), proof.clone(), flags.clone()).send().await,
        "LengthMismatch",
    )
    .await;
    let mut forged = amounts.clone();
    forged[0] += U256::from(1);
    expect_revert(
        push(indices.clone(), accounts.clone(), forged, proof.clone(), flags.clone()).send().await,
        "InvalidBatchProof",
    )
    .await;
    expect_revert(
        as_bob.pushBatch(indices.clone(), accounts.clone(), amounts.clone(), proof.clone(), flags.clone()).send().await,
        "AccessControl",
    )
    .await;
    // One batch pays alice her delta, bob and carol everything.
    let receipt = push(indices.clone(), accounts.clone(), amounts.clone(), proof.clone(), flags.clone())
        .send()
        .await
        .unwrap()
        .get_receipt()
        .await
        .unwrap();
    let event = receipt.decoded_log::<AttributionPayouts::BatchPushed>().unwrap();
    assert_eq!((event.epoch, event.recipients), (2, U256::from(3)));
    assert_eq!(event.total, U256::from(60 + 80) + U256::from(big));
    // The same batch again pays nothing and does not revert.
    let again = push(indices, accounts, amounts, proof, flags).send().await.unwrap().get_receipt().await.unwrap();
    let event = again.decoded_log::<AttributionPayouts::BatchPushed>().unwrap();
    assert_eq!((event.recipients, event.total), (U256::ZERO, U256::ZERO));
    for (index, want) in [(0u64, U256::from(160)), (1, U256::from(80)), (2, U256::from(big))] {
        assert_eq!(payouts.paid(U256::from(index)).call().await.unwrap(), want, "index {index}");
    }

    // Epoch 3: carol's large total grows by 10: a claim pays exactly that.
    let tree3 = payout_tree(&[(0, a, 160), (1, b, 80), (2, carol, big + 10)]);
    settler
        .post_epoch(deployment.payouts, 3, root_of(&tree3), B256::repeat_byte(3), total2 + U256::from(10))
        .await
        .unwrap();
    let ((ic, _, vc), pc) = proof_of(&tree3, carol);
    assert_eq!(payouts.claimable(ic, vc).call().await.unwrap(), U256::from(10));
    let receipt = as_bob.claim(ic, carol, vc, pc).send().await.unwrap().get_receipt().await.unwrap();
    let claimed = receipt.decoded_log::<AttributionPayouts::Claimed>().unwrap();
    assert_eq!((claimed.account, claimed.amount), (carol, U256::from(10)));

    // Balances reconcile with the cumulative totals, to the wei.
    let token = settler.token(deployment.token);
    assert_eq!(token.balanceOf(a).call().await.unwrap(), U256::from(160));
    assert_eq!(token.balanceOf(b).call().await.unwrap(), U256::from(80));
    assert_eq!(token.balanceOf(carol).call().await.unwrap(), U256::from(big + 10));
    let paid_out = U256::from(240) + U256::from(big + 10);
    assert_eq!(token.balanceOf(deployment.payouts).call().await.unwrap(), funding - paid_out);
    assert_eq!(payouts.latestEpoch().call().await.unwrap(), 3);
    assert_eq!(payouts.epochRoot(1).call().await.unwrap(), root1);
    assert_eq!(U256::from(payouts.totalPaid().call().await.unwrap()), paid_out);

    // A root that promises more than its epoch's total (a settler's mistake, or worse) cannot
    // pay out past it: payouts never exceed the total, which never exceeds the deposits.
    let dave = Address::repeat_byte(0xda);
    let tree4 = payout_tree(&[(0, a, 160), (1, b, 80), (2, carol, big + 10), (3, dave, 1_000)]);
    settler
        .post_epoch(deployment.payouts, 4, root_of(&tree4), B256::repeat_byte(4), total2 + U256::from(10 + 999))
        .await
        .unwrap();
    let ((id, _, vd), pd) = proof_of(&tree4, dave);
    expect_revert(as_bob.claim(id, dave, vd, pd).send().await, "OverPaid").await;
    assert_eq!(token.balanceOf(dave).call().await.unwrap(), U256::ZERO);
}

#[test]
fn keystores_decrypt_with_their_password_only() {
    let dir = tempfile::tempdir().unwrap();
    let address = write_keystore(dir.path(), "settler.json", ANVIL_KEYS[1], "correct horse").unwrap();
    let path = dir.path().join("settler.json");
    let signer = SignerKey::Keystore { path: &path, password: "correct horse" }.load().unwrap();
    assert_eq!(signer.address(), address);
    assert_eq!(address, SignerKey::Hex(ANVIL_KEYS[1]).load().unwrap().address());
    let wrong = SignerKey::Keystore { path: &path, password: "battery staple" }.load().unwrap_err();
    assert!(matches!(wrong, tributary_contracts::Error::Keystore { .. }), "{wrong}");
    let missing = dir.path().join("nope.json");
    assert!(SignerKey::Keystore { path: &missing, password: "x" }.load().is_err());
    // Debug output never shows key material.
    assert_eq!(format!("{:?}", SignerKey::Hex(ANVIL_KEYS[1])), "SignerKey::Hex(..)");
    assert!(!format!("{:?}", SignerKey::Keystore { path: &path, password: "correct horse" }).contains("horse"));
}
