//! `tributary account fund|balance|sponsor|transfers`: payers' money off chain (deposits on
//! chain are `tributary chain deposit` and `chain sync`).

use anyhow::Result;
use clap::Subcommand;
use tributary_attribution::Payer;

use super::output::print_json;
use crate::app::accounts::{self, parse_amount};
use crate::app::{App, parse_address};

#[derive(Subcommand)]
pub enum AccountCommand {
    /// Grant money to a payer off chain (deployments without a chain). `verify` tells grants
    /// from deposits.
    Fund {
        address: String,
        /// In the token's smallest unit.
        amount: String,
        /// Makes a retried grant land once.
        #[arg(long)]
        key: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// A payer's balance: {"address", "balance", "held", "deposited", "granted", "spent"}.
    Balance {
        address: String,
        #[arg(long)]
        json: bool,
    },
    /// Move money from a Datanet owner's balance into the Datanet's sponsor budget, which pays
    /// for unpaid questions on that Datanet alone (without adapters) until it runs out.
    Sponsor {
        #[arg(long)]
        datanet: String,
        amount: String,
        #[arg(long)]
        json: bool,
    },
    /// Every movement of a payer's money, oldest first.
    Transfers {
        address: String,
        #[arg(long)]
        json: bool,
    },
}

pub async fn command(app: &App, command: AccountCommand) -> Result<()> {
    match command {
        AccountCommand::Fund { address, amount, key, json } => {
            let account = parse_address(&address)?;
            let transfer = accounts::grant(app, &account, parse_amount(&amount)?, key.as_deref()).await?;
            if json {
                return print_json(&transfer);
            }
            println!("granted {} to {} ({})", transfer.amount, account.to_checksummed(), transfer.key);
        }
        AccountCommand::Balance { address, json } => {
            let balance = accounts::balance(app, &parse_address(&address)?).await?;
            if json {
                return print_json(&balance);
            }
            println!(
                "{}: balance {} ({} held, {} available); deposited {}, granted {}, spent {}",
                balance.address,
                balance.balance,
                balance.held,
                balance.available(),
                balance.deposited,
                balance.granted,
                balance.spent
            );
        }
        AccountCommand::Sponsor { datanet, amount, json } => {
            let datanet = app.datanet(&datanet).await?;
            let transfer = accounts::sponsor(app, &datanet, parse_amount(&amount)?).await?;
            if json {
                return print_json(&transfer);
            }
            let budget = accounts::sponsor_budget(app, &datanet).await?;
            println!(
                "{} moved {} into {}'s sponsor budget (now {})",
                datanet.owner, transfer.amount, datanet.name, budget.balance
            );
        }
        AccountCommand::Transfers { address, json } => {
            let transfers = app.ledger().transfers(&Payer::Address(parse_address(&address)?)).await?;
            if json {
                return print_json(&transfers);
            }
            for t in transfers {
                let receipt = t.receipt_id.map(|r| format!("  receipt {r}")).unwrap_or_default();
                println!("{:<5} {:<8} {:>28}  {} -> {}{receipt}", t.id, t.kind, t.amount, t.debit, t.credit);
            }
        }
    }
    Ok(())
}
