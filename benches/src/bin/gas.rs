//! Gas of the payout contract on a local anvil: posting an epoch, claims, and pushBatch per
//! recipient at 10, 100 and 500 recipients, beside one plain ERC-20 transfer per recipient (the
//! peer: paying everyone directly). Each size runs twice: first to fresh recipients (no token
//! balance, no paid total yet: the expensive case), then, after a second epoch, to the same
//! recipients again (returning). Prints one JSON line.
//!
//!     cargo run -p tributary-benches --bin gas

use alloy::primitives::{Address, B256, U256};
use anyhow::{Context, Result};
use tributary_attribution::merkle::{PayoutLeaf, PayoutTree};
use tributary_contracts::chain::{ANVIL_KEYS, Anvil, AttributionPayouts, Chain};

/// A recipient nobody has paid before: `(batch, i)` never repeats.
fn recipient(batch: usize, i: usize) -> Address {
    Address::from_word(B256::from(U256::from(((batch as u64) << 32) + i as u64 + 0x1000)))
}

fn leaf(index: u64, account: Address, cumulative: u128) -> Result<PayoutLeaf> {
    Ok(PayoutLeaf { index, account: account.to_string().parse()?, cumulative })
}

/// Posts a tree as the next epoch with its cumulative `total` (checked against the deposits);
/// its gas.
async fn post(
    payouts: &AttributionPayouts::AttributionPayoutsInstance<alloy::providers::DynProvider>,
    epoch: u64,
    tree: &PayoutTree,
    total: u128,
) -> Result<u64> {
    let call = payouts.postEpoch(epoch, B256::from(tree.root()), B256::repeat_byte(7), U256::from(total));
    let receipt = call.send().await?.get_receipt().await?;
    anyhow::ensure!(receipt.status(), "postEpoch reverted");
    Ok(receipt.gas_used)
}

/// Claims for each of `accounts` (one transaction each); their gas and proof lengths.
async fn claims(
    payouts: &AttributionPayouts::AttributionPayoutsInstance<alloy::providers::DynProvider>,
    tree: &PayoutTree,
    accounts: &[Address],
) -> Result<(Vec<u64>, usize)> {
    let mut gas = Vec::new();
    let mut depth = 0;
    for account in accounts {
        let (leaf, proof) = tree
            .proofs()
            .into_iter()
            .find(|(l, _)| l.account.as_bytes() == account.as_slice())
            .context("claimer in the tree")?;
        depth = proof.len();
        let proof = proof.into_iter().map(B256::from).collect();
        let call = payouts.claim(U256::from(leaf.index), *account, U256::from(leaf.cumulative), proof);
        gas.push(call.send().await?.get_receipt().await?.gas_used);
    }
    Ok((gas, depth))
}

/// One pushBatch paying `accounts`; its gas.
async fn push(chain: &Chain, payouts: Address, tree: &PayoutTree, accounts: &[Address]) -> Result<u64> {
    let wanted: Vec<tributary_indexer::Address> =
        accounts.iter().map(|a| a.to_string().parse()).collect::<Result<_, _>>()?;
    let multi = tree.multiproof(&wanted);
    anyhow::ensure!(multi.leaves.len() == accounts.len(), "every recipient is in the tree");
    let leaves: Vec<(U256, Address, U256)> = multi
        .leaves
        .iter()
        .map(|l| (U256::from(l.index), Address::from(*l.account.as_bytes()), U256::from(l.cumulative)))
        .collect();
    let proof = multi.proof.into_iter().map(B256::from).collect();
    Ok(chain.push_batch(payouts, &leaves, proof, multi.flags).await?.gas_used)
}

/// One plain transfer to each of `to`; their total gas.
async fn transfers(
    token: &tributary_contracts::chain::TributaryTestToken::TributaryTestTokenInstance<alloy::providers::DynProvider>,
    to: &[Address],
) -> Result<u64> {
    let mut gas = 0;
    for account in to {
        gas += token.transfer(*account, U256::from(1_000u64)).send().await?.get_receipt().await?.gas_used;
    }
    Ok(gas)
}

#[tokio::main]
async fn main() -> Result<()> {
    let anvil = Anvil::start().await?;
    let chain = Chain::connect(anvil.url(), ANVIL_KEYS[0])?;
    let supply = U256::from(10u128.pow(30));
    let deployment = chain.deploy(None, supply).await?;
    let token = chain.token(deployment.token);
    let payouts = chain.payouts(deployment.payouts);
    // Payers' money comes in through `deposit` (after an approval): the first deposit into the
    // contract, then a second (its total's slot already written).
    let half = supply / U256::from(2);
    token.approve(deployment.payouts, half).send().await?.get_receipt().await?;
    let mut deposit_gas = Vec::new();
    for (payer, amount) in [(recipient(999, 0), half / U256::from(2)), (recipient(999, 1), half / U256::from(2))] {
        deposit_gas.push(payouts.deposit(payer, amount).send().await?.get_receipt().await?.gas_used);
    }
    let mut results = serde_json::Map::new();
    results.insert("deposit_gas".into(), serde_json::json!(deposit_gas));
    let mut epoch = 0u64;
    // Cumulative totals of earlier batches' accounts: an epoch's total counts them too.
    let mut settled_before = 0u128;
    for (batch, n) in [10usize, 100, 500].into_iter().enumerate() {
        // n recipients pushed, and three more who claim (indices 3k, 3k+1, 3k+2 share a word:
        // the first claim of a word pays for the fresh slot, the other two do not).
        // A multiple of 3: the claimers fill one word, the pushed recipients start a new one.
        let base = batch as u64 * 3 * 33_333;
        let pushed: Vec<Address> = (0..n).map(|i| recipient(batch, i)).collect();
        let claimers: Vec<Address> = (0..3).map(|i| recipient(batch, 1_000_000 + i)).collect();
        let amount = |i: usize, round: u128| 10u128.pow(18) + i as u128 + round * 10u128.pow(15);
        let tree_at = |round: u128| -> Result<PayoutTree> {
            let mut leaves = Vec::new();
            for (i, account) in claimers.iter().chain(&pushed).enumerate() {
                leaves.push(leaf(base + i as u64, *account, amount(i, round))?);
            }
            PayoutTree::new(&leaves).context("leaves")
        };

        let sum = |round: u128| (0..n + 3).map(|i| amount(i, round)).sum::<u128>();
        let fresh = tree_at(0)?;
        epoch += 1;
        let post_gas = post(&payouts, epoch, &fresh, settled_before + sum(0)).await?;
        let (fresh_claims, depth) = claims(&payouts, &fresh, &claimers).await?;
        let fresh_push = push(&chain, deployment.payouts, &fresh, &pushed).await?;
        let peer_fresh = transfers(&token, &(0..n).map(|i| recipient(batch + 100, i)).collect::<Vec<_>>()).await?;

        let returning = tree_at(1)?;
        epoch += 1;
        let post_again = post(&payouts, epoch, &returning, settled_before + sum(1)).await?;
        settled_before += sum(1);
        let (returning_claims, _) = claims(&payouts, &returning, &claimers).await?;
        let returning_push = push(&chain, deployment.payouts, &returning, &pushed).await?;
        let peer_returning = transfers(&token, &(0..n).map(|i| recipient(batch + 100, i)).collect::<Vec<_>>()).await?;

        let per = |gas: u64| gas as f64 / n as f64;
        results.insert(
            format!("recipients_{n}"),
            serde_json::json!({
                "post_epoch_gas": [post_gas, post_again],
                "proof_len": depth,
                "claim_fresh_gas": fresh_claims,
                "claim_returning_gas": returning_claims,
                "push_fresh_per_recipient_gas": per(fresh_push),
                "push_returning_per_recipient_gas": per(returning_push),
                "erc20_transfer_fresh_per_recipient_gas": per(peer_fresh),
                "erc20_transfer_returning_per_recipient_gas": per(peer_returning),
                "push_over_transfer_fresh": fresh_push as f64 / peer_fresh as f64,
                "push_over_transfer_returning": returning_push as f64 / peer_returning as f64,
            }),
        );
    }
    println!("{}", serde_json::Value::Object(results));
    Ok(())
}
