//! `tributary pricing show|set|datanet|adapter`: fees, shares and influence weighting.

use anyhow::{Result, bail};
use clap::Subcommand;
use tributary_attribution::{AdapterPricing, Amount, DatanetPricing, Ledger, Shares, Weighting};

use super::output::print_json;
use crate::app::{App, parse_address};

#[derive(Subcommand)]
pub enum PricingCommand {
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
        /// Basis points for protocol,adapter,datanet,contributors[,training] (sum 10000; the
        /// training share is 0 when left out).
        #[arg(long, value_delimiter = ',')]
        shares: Option<Vec<u32>>,
        #[arg(long)]
        protocol_account: Option<String>,
        #[arg(long)]
        slash_sink: Option<String>,
        /// citation or ablation.
        #[arg(long)]
        weighting: Option<String>,
        /// The highest price a Datanet may set.
        #[arg(long)]
        max_datanet_fee: Option<Amount>,
        /// The highest surcharge an adapter may set.
        #[arg(long)]
        max_adapter_fee: Option<Amount>,
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

fn weighting(text: Option<&str>) -> Result<Option<Weighting>> {
    Ok(text.map(str::parse).transpose()?)
}

pub async fn pricing(app: &App, command: PricingCommand) -> Result<()> {
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
        PricingCommand::Set {
            default_fee,
            shares,
            protocol_account,
            slash_sink,
            weighting: w,
            max_datanet_fee,
            max_adapter_fee,
        } => {
            let mut policy = ledger.policy().await?;
            if let Some(fee) = default_fee {
                policy.default_fee = fee;
            }
            if let Some(s) = shares {
                if !(4..=5).contains(&s.len()) {
                    bail!("--shares takes four or five numbers: protocol,adapter,datanet,contributors[,training]");
                }
                policy.shares = Shares {
                    protocol_bps: s[0],
                    adapter_bps: s[1],
                    datanet_bps: s[2],
                    contributors_bps: s[3],
                    training_bps: s.get(4).copied().unwrap_or(0),
                };
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
            if let Some(cap) = max_datanet_fee {
                policy.max_datanet_fee = cap;
            }
            if let Some(cap) = max_adapter_fee {
                policy.max_adapter_fee = cap;
            }
            // Slashes go to the protocol unless told otherwise (never to the zero address).
            if policy.slash_sink == tributary_indexer::Address::ZERO {
                policy.slash_sink = policy.protocol_account;
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
