//! `tributary earnings|receipt|settle|proof|flag|unflag|flags|pricing|ledger`: the ledger from
//! the command line.

use anyhow::{Result, bail};
use clap::{Args, Subcommand};
use tributary_attribution::{
    AdapterPricing, Amount, DatanetPricing, Earnings, FlagTarget, Ledger, Receipt, Shares, Weighting,
};

use crate::{App, parse_address};

#[derive(Args)]
pub(crate) struct FlagArgs {
    #[arg(long)]
    datanet: String,
    /// A chunk id (64 hex digits).
    #[arg(long, group = "target")]
    chunk: Option<String>,
    /// A document: its id, or the name it was uploaded as.
    #[arg(long, group = "target")]
    document: Option<String>,
    /// A contributor's address: all the chunks it contributed.
    #[arg(long, group = "target")]
    contributor: Option<String>,
    #[arg(long)]
    reason: String,
    /// Who flags (recorded with the flag).
    #[arg(long, default_value = "admin")]
    actor: String,
    #[arg(long)]
    json: bool,
}

#[derive(Subcommand)]
pub(crate) enum PricingCommand {
    /// The policy and every override.
    Show {
        #[arg(long)]
        json: bool,
    },
    /// Change the ledger-wide policy.
    Set {
        /// Fee per answer per Datanet searched, in the token's smallest unit.
        #[arg(long)]
        default_fee: Option<Amount>,
        /// Basis points for protocol,adapter,datanet,contributors (sum 10000).
        #[arg(long, value_delimiter = ',')]
        shares: Option<Vec<u32>>,
        #[arg(long)]
        protocol_account: Option<String>,
        #[arg(long)]
        slash_sink: Option<String>,
        /// citation or ablation.
        #[arg(long)]
        weighting: Option<String>,
    },
    /// A Datanet's own price and weighting.
    Datanet {
        name: String,
        #[arg(long)]
        fee: Option<Amount>,
        #[arg(long)]
        weighting: Option<String>,
    },
    /// An adapter's surcharge and owner.
    Adapter {
        id: String,
        #[arg(long, default_value_t = 0)]
        fee: Amount,
        #[arg(long)]
        owner: Option<String>,
    },
}

fn print_json(value: &impl serde::Serialize) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

pub(crate) fn print_receipt(receipt: &Receipt) {
    println!("receipt {}  fee {}  ({} weighting)", receipt.id, receipt.fee, receipt.weighting.as_str());
    for c in &receipt.credits {
        let chunk = c.chunk_id.as_deref().map(|id| format!("  chunk {}", &id[..12.min(id.len())])).unwrap_or_default();
        println!("  {:>28}  {:<14} {}{chunk}", c.amount, c.role.as_str(), c.account);
    }
}

pub(crate) async fn earnings(app: &App, address: &str, json: bool) -> Result<()> {
    let account = parse_address(address)?;
    let earnings: Earnings = app.ledger().earnings(&account).await?;
    if json {
        return print_json(&earnings);
    }
    println!(
        "{}: total {} (settled {}, unsettled {}, slashed {})",
        account.to_checksummed(),
        earnings.total,
        earnings.settled,
        earnings.unsettled,
        earnings.slashed
    );
    for d in &earnings.by_datanet {
        println!("  datanet {:<20} {}", d.datanet, d.amount);
    }
    for e in &earnings.by_epoch {
        println!("  epoch {:<6} {}", e.epoch, e.amount);
    }
    for e in &earnings.entries {
        let what = match (&e.receipt_id, &e.chunk_id) {
            (Some(r), Some(c)) => format!("answer {r} chunk {}", &c[..12.min(c.len())]),
            (Some(r), None) => format!("answer {r}"),
            (None, _) => format!("flag {}", e.flag_id.unwrap_or_default()),
        };
        println!("  {:>28}  {:<8} {:<14} {what}", e.amount, e.kind, e.role.as_str());
    }
    Ok(())
}

pub(crate) async fn receipt(app: &App, id: &str, json: bool) -> Result<()> {
    let receipt = app.ledger().receipt(id).await?;
    if json {
        print_json(&receipt)
    } else {
        print_receipt(&receipt);
        Ok(())
    }
}

pub(crate) async fn settle(app: &App, json: bool) -> Result<()> {
    let outcome = app.ledger().settle().await?;
    // The epoch is closed whatever happens next; posting is retried by the next settle.
    let posted = crate::chain::post_pending(app).await.map_err(|e| {
        e.context("the ledger closed the epoch, but posting to the chain failed: it stays pending on chain, and the next `tributary settle` posts it")
    });
    if json {
        let mut value = serde_json::to_value(&outcome)?;
        if let Ok(Some(posted)) = &posted {
            value["posted_on_chain"] = serde_json::json!(posted);
        }
        print_json(&value)?;
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

pub(crate) async fn proof(app: &App, address: &str, epoch: Option<i64>, json: bool) -> Result<()> {
    let account = parse_address(address)?;
    let proof = app.ledger().proof(&account, epoch).await?;
    if json {
        return print_json(&proof);
    }
    println!("epoch {}  {}  cumulative {}", proof.epoch, account.to_checksummed(), proof.cumulative);
    println!("  root {}\n  leaf {}", proof.root, proof.leaf);
    for p in &proof.proof {
        println!("  {p}");
    }
    Ok(())
}

pub(crate) async fn flag(app: &App, args: FlagArgs) -> Result<()> {
    let datanet = app.datanet(&args.datanet).await?;
    let target = match (args.chunk, args.document, args.contributor) {
        (Some(chunk), None, None) => {
            let id: tributary_indexer::ChunkId = chunk.parse()?;
            FlagTarget::Chunk(id.to_hex())
        }
        (None, Some(document), None) => {
            let documents = app.store.catalog().documents(datanet.id).await?;
            let found = documents.iter().find(|d| d.external_id == document || d.id.to_string() == document);
            match found {
                Some(d) => FlagTarget::Document(d.id),
                None => bail!("Datanet {} has no document {document:?}", datanet.name),
            }
        }
        (None, None, Some(contributor)) => FlagTarget::Contributor(parse_address(&contributor)?),
        _ => bail!("name one of --chunk, --document or --contributor"),
    };
    let outcome = app.ledger().flag(datanet.id, &target, &args.reason, &args.actor).await?;
    if args.json {
        return print_json(&outcome);
    }
    if outcome.already_flagged {
        println!("already flagged (flag {})", outcome.flag.id);
    } else {
        println!(
            "flag {}: {} {} left retrieval; {} unsettled credits slashed ({})",
            outcome.flag.id, outcome.flag.kind, outcome.flag.target, outcome.slashed_credits, outcome.slashed
        );
    }
    Ok(())
}

pub(crate) async fn unflag(app: &App, id: i64, reason: &str, actor: &str) -> Result<()> {
    let flag = app.ledger().unflag(id, reason, actor).await?;
    println!("flag {} lifted: {} {} is retrievable again (slashes stay)", flag.id, flag.kind, flag.target);
    Ok(())
}

pub(crate) async fn flags(app: &App, datanet: &str, json: bool) -> Result<()> {
    let datanet = app.datanet(datanet).await?;
    let flags = app.ledger().flags(datanet.id).await?;
    if json {
        return print_json(&flags);
    }
    for f in flags {
        let state = if f.active { "active" } else { "lifted" };
        println!("{:<5} {:<7} {:<12} {}  {}  by {}", f.id, state, f.kind, f.target, f.reason, f.actor);
    }
    Ok(())
}

fn weighting(text: Option<&str>) -> Result<Option<Weighting>> {
    Ok(text.map(str::parse).transpose()?)
}

pub(crate) async fn pricing(app: &App, command: PricingCommand) -> Result<()> {
    let ledger: Ledger = app.ledger();
    match command {
        PricingCommand::Show { json } => {
            let policy = ledger.policy().await?;
            let mut datanets = Vec::new();
            for d in app.store.catalog().datanets().await? {
                let pricing = ledger.datanet_pricing(d.id).await?;
                datanets.push(serde_json::json!({"datanet": d.name, "pricing": pricing}));
            }
            let value = serde_json::json!({"policy": policy, "datanets": datanets});
            if json {
                return print_json(&value);
            }
            println!("{}", serde_json::to_string_pretty(&value)?);
        }
        PricingCommand::Set { default_fee, shares, protocol_account, slash_sink, weighting: w } => {
            let mut policy = ledger.policy().await?;
            if let Some(fee) = default_fee {
                policy.default_fee = fee;
            }
            if let Some(s) = shares {
                if s.len() != 4 {
                    bail!("--shares takes four numbers: protocol,adapter,datanet,contributors");
                }
                policy.shares =
                    Shares { protocol_bps: s[0], adapter_bps: s[1], datanet_bps: s[2], contributors_bps: s[3] };
            }
            if let Some(a) = protocol_account {
                policy.protocol_account = parse_address(&a)?;
            }
            if let Some(a) = slash_sink {
                policy.slash_sink = parse_address(&a)?;
            }
            if let Some(w) = weighting(w.as_deref())? {
                policy.default_weighting = w;
            }
            ledger.set_policy(&policy).await?;
            println!("{}", serde_json::to_string_pretty(&policy)?);
        }
        PricingCommand::Datanet { name, fee, weighting: w } => {
            let datanet = app.datanet(&name).await?;
            let pricing = DatanetPricing { fee, weighting: weighting(w.as_deref())? };
            ledger.set_datanet_pricing(datanet.id, &pricing).await?;
            println!("{name}: {}", serde_json::to_string(&pricing)?);
        }
        PricingCommand::Adapter { id, fee, owner } => {
            let pricing = AdapterPricing { fee, owner: owner.as_deref().map(parse_address).transpose()? };
            ledger.set_adapter_pricing(&id, &pricing).await?;
            println!("{id}: {}", serde_json::to_string(&pricing)?);
        }
    }
    Ok(())
}

/// `tributary verify` without a Datanet: the ledger, from the data alone.
pub(crate) async fn verify(app: &App) -> Result<()> {
    let report = app.ledger().verify().await?;
    print_json(&report)?;
    if !report.ok() {
        bail!("the ledger does not check: {} problem(s)", report.problems.len());
    }
    Ok(())
}
