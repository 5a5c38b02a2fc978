//! Gas of the payout contract on a local anvil: posting an epoch, one claim, and pushBatch per
//! recipient at 10, 100 and 500 recipients, beside one plain ERC-20 transfer per recipient (the
//! peer: paying everyone directly). Prints one JSON line.
//!
//!     cargo run -p tributary-benches --bin gas

use alloy::primitives::{Address, B256, U256};
use anyhow::Result;
use tributary_attribution::merkle::PayoutTree;
use tributary_contracts::chain::{ANVIL_KEYS, Anvil, Chain};

fn recipient(batch: usize, i: usize) -> Address {
    Address::from_word(B256::from(U256::from(((batch as u64) << 32) + i as u64 + 0x1000)))
}

/// A leaf's account, amount and proof.
type Leaf = (Address, U256, Vec<B256>);

/// The tree over `(account, amount)`, with each account's proof.
fn tree(entries: &[(Address, u128)]) -> Result<(B256, Vec<Leaf>)> {
    let leaves: Vec<(tributary_indexer::Address, u128)> =
        entries.iter().map(|(a, v)| Ok((a.to_string().parse()?, *v))).collect::<Result<_>>()?;
    let tree = PayoutTree::new(&leaves).ok_or_else(|| anyhow::anyhow!("no leaves"))?;
    let mut proofs = Vec::new();
    for (a, v, p) in tree.proofs() {
        proofs.push((a.to_checksummed().parse()?, U256::from(v), p.into_iter().map(B256::from).collect()));
    }
    Ok((B256::from(tree.root()), proofs))
}

#[tokio::main]
async fn main() -> Result<()> {
    let anvil = Anvil::start().await?;
    let chain = Chain::connect(anvil.url(), ANVIL_KEYS[0])?;
    let supply = U256::from(10u128.pow(30));
    let deployment = chain.deploy(None, supply).await?;
    let token = chain.token(deployment.token);
    let payouts = chain.payouts(deployment.payouts);
    token.transfer(deployment.payouts, supply / U256::from(2)).send().await?.get_receipt().await?;
    let mut results = serde_json::Map::new();
    let mut epoch = 0u64;
    for (batch, n) in [10usize, 100, 500].into_iter().enumerate() {
        let entries: Vec<(Address, u128)> = (0..n).map(|i| (recipient(batch, i), 1_000 + i as u128)).collect();
        let (root, proofs) = tree(&entries)?;
        epoch += 1;
        let posted = payouts.postEpoch(epoch, root, B256::repeat_byte(7)).send().await?.get_receipt().await?;
        // One claim (a fresh recipient), then everyone else in one pushBatch.
        let (first, rest) = proofs.split_first().ok_or_else(|| anyhow::anyhow!("empty"))?;
        let claim = payouts.claim(first.0, first.1, first.2.clone()).send().await?.get_receipt().await?;
        let (accounts, amounts, paths): (Vec<_>, Vec<_>, Vec<_>) =
            rest.iter().map(|(a, v, p)| (*a, *v, p.clone())).fold((vec![], vec![], vec![]), |mut acc, (a, v, p)| {
                acc.0.push(a);
                acc.1.push(v);
                acc.2.push(p);
                acc
            });
        let pushed = payouts.pushBatch(accounts, amounts, paths).send().await?.get_receipt().await?;
        // The peer: a plain transfer to each (fresh) recipient of the same size.
        let mut direct = 0u64;
        for i in 0..n {
            let to = recipient(batch + 100, i);
            direct += token.transfer(to, U256::from(1_000u64)).send().await?.get_receipt().await?.gas_used;
        }
        let per_push = pushed.gas_used as f64 / (n - 1) as f64;
        let per_transfer = direct as f64 / n as f64;
        results.insert(
            format!("recipients_{n}"),
            serde_json::json!({
                "post_epoch_gas": posted.gas_used, "claim_gas": claim.gas_used, "proof_len": first.2.len(),
                "push_batch_gas": pushed.gas_used, "push_per_recipient_gas": per_push,
                "erc20_transfer_per_recipient_gas": per_transfer, "push_over_transfer": per_push / per_transfer,
            }),
        );
    }
    println!("{}", serde_json::Value::Object(results));
    Ok(())
}
