//! `tributary chain deploy|register|prove|status|push`, `settle` and `claim`.

use anyhow::Result;
use clap::Subcommand;

use super::output;
use crate::app::accounts::parse_amount;
use crate::app::onchain::{
    ChainRefused, Settled, claim_for, config_path, deploy, deposit, prove, push, register, settle as settle_and_post,
    status, sync,
};
use crate::app::{App, parse_address};

#[derive(Subcommand)]
pub enum ChainCommand {
    /// Deploy the registry, a test token (unless --token names one) and the payout contract,
    /// and write their addresses to <data-dir>/chain.toml.
    Deploy {
        /// An existing ERC-20 to pay in (payers deposit it with `chain deposit`).
        #[arg(long)]
        token: Option<String>,
        /// Test token supply, all of it to the signer (who deposits for payers).
        #[arg(long, default_value = "1000000000000000000000000")]
        supply: String,
        /// The payout contract's admin (grants roles, pauses): a cold key or multisig in
        /// production. Default: the signer, which is always the settler.
        #[arg(long)]
        admin: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Commit a Datanet's contribution root (every chunk id with its first contributor) as its
    /// next version on the registry, registering the Datanet first if the chain lacks it.
    Register {
        #[arg(long)]
        datanet: String,
        #[arg(long)]
        json: bool,
    },
    /// Prove on chain that a chunk was contributed by its contributor at the latest version.
    Prove {
        #[arg(long)]
        datanet: String,
        #[arg(long)]
        chunk: String,
        #[arg(long)]
        json: bool,
    },
    /// The chain's latest epoch against the ledger's, and what is pending.
    Status {
        #[arg(long)]
        json: bool,
    },
    /// Pay every account what the chain's latest epoch owes it, in batches (one transaction
    /// and one multiproof each); accounts already paid are skipped.
    Push {
        /// Accounts per transaction.
        #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u32).range(1..=2000))]
        batch_size: u32,
        #[arg(long)]
        json: bool,
    },
    /// Deposit the signer's tokens into the payout contract for PAYER (an approval, then
    /// `deposit`), then sync: answers are charged to the payer's balance.
    Deposit {
        payer: String,
        /// In the token's smallest unit.
        amount: String,
        #[arg(long)]
        json: bool,
    },
    /// Record the payout contract's deposits that have their confirmations (each once) as
    /// their payers' balances. `tributary serve` does this on an interval.
    Sync {
        #[arg(long)]
        json: bool,
    },
}

fn print(value: &serde_json::Value, json: bool, line: impl FnOnce() -> String) -> Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(value)?);
    } else {
        println!("{}", line());
    }
    Ok(())
}

pub async fn command(app: &App, command: ChainCommand) -> Result<()> {
    match command {
        ChainCommand::Deploy { token, supply, admin, json } => {
            let deployment = deploy(app, token.as_deref(), &supply, admin.as_deref()).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&deployment)?);
            } else {
                println!(
                    "deployed: registry {}, payouts {}, token {} (written to {})",
                    deployment.registry,
                    deployment.payouts,
                    deployment.token,
                    config_path(app).display()
                );
            }
        }
        ChainCommand::Register { datanet, json } => {
            let registered = register(app, &app.datanet(&datanet).await?).await?;
            let line = || format!("{} version {}: root {}", registered.datanet, registered.version, registered.root);
            print(&serde_json::to_value(&registered)?, json, line)?;
        }
        ChainCommand::Prove { datanet, chunk, json } => {
            let chunk: tributary_indexer::ChunkId = chunk.parse()?;
            let proven = prove(app, &app.datanet(&datanet).await?, &chunk).await?;
            let line = || {
                format!(
                    "chunk {} by {}: verified {} at version {}",
                    proven.chunk_id, proven.contributor, proven.verified, proven.version
                )
            };
            print(&serde_json::to_value(&proven)?, json, line)?;
        }
        ChainCommand::Push { batch_size, json } => {
            let pushed = push(app, batch_size as usize).await?;
            let line = || {
                format!(
                    "epoch {}: paid {} to {} account(s) in {} transaction(s)",
                    pushed.epoch,
                    pushed.total,
                    pushed.recipients,
                    pushed.batches.len()
                )
            };
            print(&serde_json::to_value(&pushed)?, json, line)?;
            for skipped in &pushed.skipped {
                eprintln!("skipped {} (owed up to {}): {}", skipped.account, skipped.cumulative, skipped.reason);
            }
        }
        ChainCommand::Deposit { payer, amount, json } => {
            let deposited = deposit(app, &parse_address(&payer)?, parse_amount(&amount)?).await?;
            let line = || {
                format!(
                    "deposited {} for {} in {}; sync recorded {} deposit(s)",
                    deposited.amount, deposited.payer, deposited.transaction, deposited.synced.recorded
                )
            };
            print(&serde_json::to_value(&deposited)?, json, line)?;
        }
        ChainCommand::Sync { json } => {
            let synced = sync(app).await?.ok_or(ChainRefused::NotConfigured)?;
            let line = || {
                format!(
                    "blocks {:?}..={:?}: {} deposit(s) recorded, {} seen before",
                    synced.from_block, synced.to_block, synced.recorded, synced.already_recorded
                )
            };
            print(&serde_json::to_value(&synced)?, json, line)?;
        }
        ChainCommand::Status { json } => {
            let status = status(app).await?;
            if status.chain_latest_epoch.is_none() {
                return Err(ChainRefused::NotConfigured.into());
            }
            if json {
                println!("{}", serde_json::to_string_pretty(&status)?);
            } else {
                println!(
                    "payouts {}: chain at epoch {}, ledger at {:?}",
                    status.payouts.as_deref().unwrap_or_default(),
                    status.chain_latest_epoch.unwrap_or_default(),
                    status.ledger_latest_epoch
                );
                if !status.pending_on_chain.is_empty() {
                    println!("pending on chain: {:?} (posted by the next `tributary settle`)", status.pending_on_chain);
                }
            }
        }
    }
    Ok(())
}

/// `tributary claim ADDR`.
pub async fn claim(app: &App, address: &str, json: bool) -> Result<()> {
    let account = parse_address(address)?;
    let outcome = claim_for(app, &account).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&outcome)?);
    } else {
        println!(
            "paid {} to {} (cumulative {}, epoch {})",
            outcome.paid, outcome.account, outcome.cumulative, outcome.epoch
        );
    }
    Ok(())
}

pub async fn settle(app: &App, json: bool) -> Result<()> {
    // The epoch is closed whatever happens on chain; posting is retried by the next settle.
    let Settled { outcome, posted } = settle_and_post(app).await?;
    let posted = posted.map_err(|e| {
        e.context("the ledger closed the epoch, but posting to the chain failed: it stays pending on chain, and the next `tributary settle` posts it")
    });
    if json {
        let mut value = serde_json::to_value(&outcome)?;
        if let Ok(Some(posted)) = &posted {
            value["posted_on_chain"] = serde_json::json!(posted);
        }
        output::print_json(&value)?;
        return posted.map(|_| ());
    }

    match (&outcome.epoch, outcome.closed_now) {
        (Some(e), true) => println!(
            "closed epoch {}: {} entries, {} accounts, total {}\n  root {}\n  receipts head {}",
            e.number, e.entries, e.accounts, e.total, e.root, e.receipts_head
        ),
        (Some(e), false) => println!("nothing new to settle; epoch {} (root {}) is the latest", e.number, e.root),
        (None, _) => println!("nothing to settle"),
    }
    match posted? {
        Some(posted) if !posted.is_empty() => println!("posted on chain: epochs {posted:?}"),
        Some(_) => println!("the chain has every closed epoch"),
        None => {}
    }
    Ok(())
}
