//! `tributary demo`: the sample Datanet end to end. Re-runnable: a second run finds the
//! documents already present and changes nothing.

use std::io::Write;
use std::path::Path;

use alloy::primitives::U256;
use anyhow::{Context, Result};
use tributary_attribution::Payer;
use tributary_contracts::chain::{ANVIL_KEYS, Anvil, Chain, Deployment, revert};
use tributary_generator::GenerationParams;
use tributary_indexer::{Address, Error as IndexError, IngestOptions, NewDatanet, Visibility};
use tributary_retriever::{Mode, Query, Retriever, RetrieverConfig};

use super::output;
use crate::app::App;
use crate::app::answers::{Question, Unpaid, answer, record};
use crate::app::ingest::{Documents, ingest};
use crate::app::onchain::{epoch_words, evm, push_with, submit_claim, sync_with};

const DATANET: &str = "rivers-demo";
/// Two well-known test addresses (anvil's first two default accounts).
const ALICE: &str = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266";
const BOB: &str = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8";
/// The protocol's account in the demo (anvil's fourth development account).
const TREASURY: &str = "0x90F79bf6EB2c4f870365E785982E1f101E93b906";
/// Who asks, and pays for, the demo's question (anvil's third development account).
const CAROL: &str = "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC";
/// What carol deposits to pay with: ten answers at the default fee.
const CAROL_FUNDS: u128 = 10_000_000_000_000_000;
const QUESTION: &str = "What happens to a river's discharge below the confluence with a tributary?";
const ANSWERED: &str = "Which river is the longest tributary in North America?";

/// The sample documents, compiled in so the binary needs no checkout.
const FILES: &[(&str, &str)] = &[
    ("alice/tributaries.md", include_str!("../../demo-datanet/alice/tributaries.md")),
    ("alice/watersheds.txt", include_str!("../../demo-datanet/alice/watersheds.txt")),
    ("alice/floods.md", include_str!("../../demo-datanet/alice/floods.md")),
    ("bob/measurement.md", include_str!("../../demo-datanet/bob/measurement.md")),
    ("bob/confluences.txt", include_str!("../../demo-datanet/bob/confluences.txt")),
    ("bob/watersheds-notes.txt", include_str!("../../demo-datanet/bob/watersheds-notes.txt")),
    ("LICENSE.md", include_str!("../../demo-datanet/LICENSE.md")),
];

fn write_samples(dir: &Path) -> Result<()> {
    for (name, body) in FILES {
        let path = dir.join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
        }
        std::fs::write(&path, body).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

pub async fn run(app: &App) -> Result<()> {
    let samples = app.store.data_dir().join("demo-datanet");
    write_samples(&samples)?;
    let alice: Address = ALICE.parse()?;
    let bob: Address = BOB.parse()?;

    println!("== 1. Datanet, and who the protocol's share goes to");
    let ledger = app.ledger();
    let mut policy = ledger.policy().await?;
    if policy.protocol_account == Address::ZERO {
        policy.protocol_account = TREASURY.parse()?;
        policy.slash_sink = policy.protocol_account;
        ledger.set_policy(&policy).await?;
    }
    let catalog = app.store.catalog();
    let datanet = match catalog
        .create_datanet(&NewDatanet {
            name: DATANET.into(),
            description: "Rivers and watersheds (sample, CC0-1.0)".into(),
            owner: alice,
            visibility: Visibility::Public,
            review: false,
        })
        .await
    {
        Ok(d) => {
            println!("created Datanet {} owned by {}", d.name, d.owner);
            d
        }
        Err(IndexError::DatanetExists(_)) => {
            let d = catalog.datanet(DATANET).await?;
            println!("Datanet {} already exists (owner {})", d.name, d.owner);
            d
        }
        Err(e) => return Err(e.into()),
    };

    println!("\n== 2. Ingest: two contributors");
    let embedder = app.embedder()?;
    for (who, address) in [("alice", alice), ("bob", bob)] {
        let mut options = IngestOptions::new(address);
        options.license = "CC0-1.0".into();
        let paths = Documents::Paths(vec![samples.join(who)]);
        let report = ingest(app, &datanet, paths, &options, &tributary_indexer::NoProgress).await?;
        println!("{who} ({address}): {report}");
    }

    println!("\n== 3. Search (hybrid: dense + BM25)\nQ: {QUESTION}\n");
    let retriever = Retriever::new(app.store.clone(), embedder, RetrieverConfig::default());
    let datanets = [datanet];
    let passages = retriever
        .search(&Query { text: QUESTION, datanets: &datanets, contributors: None, k: 3, mode: Mode::Hybrid })
        .await?;
    output::print_passages(&passages);

    let consistency = app.store.verify(&datanets[0]).await?;
    println!(
        "== 4. Stores agree: {} (catalog {} chunks, vectors {}, keywords {})",
        consistency.is_consistent(),
        consistency.catalog_chunks,
        consistency.vector_points,
        consistency.keyword_docs
    );

    println!("\n== 5. The asker pays: a local anvil, the contracts, and carol's deposit ({CAROL})");
    let carol: Address = CAROL.parse()?;
    let anvil = Anvil::start().await;
    let contracts = match &anvil {
        Ok(anvil) => Some(deploy_and_deposit(app, anvil, carol).await?),
        Err(e) => {
            println!("no local anvil ({e}): carol is granted her funds off chain instead");
            ledger.grant(&carol, CAROL_FUNDS, Some("demo-carol")).await?;
            None
        }
    };
    let balance = ledger.balance(&Payer::Address(carol)).await?;
    println!("carol's balance: {} ({} available)", balance.balance, balance.available());

    println!("\n== 6. Ask (SmolLM2-135M-Instruct, greedy): a cited answer, paid by carol\nQ: {ANSWERED}\n");
    let generator = app.generator()?;
    let mut stdout = std::io::stdout();
    let mut on_token = |piece: &str| {
        print!("{piece}");
        let _ = stdout.flush();
        true
    };
    let params = GenerationParams { max_tokens: 96, ..Default::default() };
    let names = [DATANET.to_string()];
    let question = Question {
        text: ANSWERED,
        datanets: &names,
        contributors: &[],
        k: 3,
        params,
        adapters: Vec::new(),
        payer: Some(carol),
        unpaid: Unpaid::Free,
        scope: crate::app::search::CLI_SCOPE,
        history: Vec::new(),
    };
    let answered = answer(app, generator, question, &mut on_token).await?;
    println!("\n\nSources:");
    output::print_sources(&answered.answer);

    println!("\n== 7. Receipt: carol's fee, split among the cited contributors, the owner and the protocol");
    let receipt = record(app, ANSWERED, &answered, false).await?;
    output::print_receipt(&receipt);
    let balance = ledger.balance(&Payer::Address(carol)).await?;
    println!("carol's balance: {} (spent {})", balance.balance, balance.spent);

    println!("\n== 8. Settle: the epoch's Merkle root over every account's cumulative total");
    let outcome = ledger.settle().await?;
    if let Some(epoch) = &outcome.epoch {
        println!(
            "epoch {}: {} accounts, total {}, root {}\n  receipts chain head {}",
            epoch.number, epoch.accounts, epoch.total, epoch.root, epoch.receipts_head
        );
    }
    for (who, address) in [("alice", alice), ("bob", bob)] {
        let earnings = ledger.earnings(&address).await?;
        println!("{who}: earned {} in total", earnings.total);
    }

    println!("\n== 9. On chain: the epoch roots (each within what was deposited), alice's claim, a batch payout");
    match contracts {
        Some((chain, deployment)) => on_chain(app, &chain, &deployment, alice).await?,
        None => println!("skipped: no local anvil"),
    }
    Ok(())
}

/// Deploys the contracts to `anvil` (the test token's supply to alice, the settler), deposits
/// carol's funds from it and syncs the deposit into her balance.
async fn deploy_and_deposit(app: &App, anvil: &Anvil, carol: Address) -> Result<(Chain, Deployment)> {
    let chain = Chain::connect(anvil.url(), ANVIL_KEYS[0])?;
    let deployment = chain.deploy(None, U256::from(10u128.pow(24))).await?;
    println!("deployed at {}: payouts {}, token {}", anvil.url(), deployment.payouts, deployment.token);
    let tx = chain.deposit(deployment.payouts, deployment.token, evm(&carol), U256::from(CAROL_FUNDS)).await?;
    let synced = sync_with(app, &chain, deployment.payouts, 0, 1).await?;
    println!(
        "deposited {CAROL_FUNDS} for carol in {tx}; the ledger's sync recorded {} deposit(s) ({} seen before)",
        synced.recorded, synced.already_recorded
    );
    Ok((chain, deployment))
}

/// Posts every closed epoch, claims alice's earnings for her and pays everyone else in one
/// batch.
async fn on_chain(app: &App, chain: &Chain, deployment: &Deployment, alice: Address) -> Result<()> {
    let deposited = chain.payouts(deployment.payouts).totalDeposited().call().await.map_err(revert)?;
    for epoch in app.ledger().epochs().await? {
        let tx = chain.post_epoch_confirmed(deployment.payouts, epoch_words(&epoch)?, 1).await?;
        println!(
            "posted epoch {} (root {}, total {} of {deposited} deposited) in {tx}",
            epoch.number, epoch.root, epoch.total
        );
    }
    let proof = app.ledger().proof(&alice, None).await?;
    submit_claim(chain, deployment.payouts, &proof).await?;
    let paid = chain.payouts(deployment.payouts).paid(U256::from(proof.index)).call().await.map_err(revert)?;
    println!("alice claimed her cumulative {}: the contract has now paid her {paid}", proof.cumulative);
    let pushed = push_with(app, chain, deployment.payouts, 200).await?;
    println!(
        "one pushBatch paid the other {} account(s) {} in total (gas {})",
        pushed.recipients,
        pushed.total,
        pushed.batches.iter().map(|b| b.gas_used).sum::<u64>()
    );
    Ok(())
}
