//! `tributary contribution`: review uploads held by Datanets that ask for review.

use anyhow::Result;
use clap::Subcommand;
use tributary_indexer::{Contribution, ContributionStatus};

use crate::app::{App, contributions};

#[derive(Subcommand)]
pub enum ContributionCommand {
    /// A Datanet's contributions, oldest first.
    List {
        #[arg(long)]
        datanet: String,
        /// pending, accepted or rejected.
        #[arg(long, value_parser = ["pending", "accepting", "accepted", "rejected"])]
        status: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Accept a pending contribution: its documents are indexed, credited to its contributor.
    Accept {
        #[arg(long)]
        datanet: String,
        id: i64,
    },
    /// Reject a pending contribution with a reason its contributor will see.
    Reject {
        #[arg(long)]
        datanet: String,
        id: i64,
        #[arg(long)]
        reason: String,
    },
}

/// Who decides from the command line, in the contribution's record.
const OPERATOR: &str = "operator";

pub async fn command(app: &App, command: ContributionCommand) -> Result<()> {
    // Finish what a stop interrupted first, so the list is true.
    contributions::resume(app).await?;
    match command {
        ContributionCommand::List { datanet, status, json } => {
            let datanet = app.datanet(&datanet).await?;
            let status = status.as_deref().map(ContributionStatus::parse).transpose()?;
            let items = app.store.catalog().contributions(datanet.id, None, status, None, usize::MAX >> 1).await?;
            if json {
                let rows: Vec<_> = items.iter().map(|c| row(c, &datanet.name)).collect();
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else if items.is_empty() {
                println!("no contributions");
            } else {
                for c in &items {
                    println!(
                        "{:>5} {:<9} {} {} ({} bytes){}",
                        c.id,
                        c.status.as_str(),
                        c.contributor,
                        c.names.join(", "),
                        c.bytes,
                        if c.reason.is_empty() { String::new() } else { format!(": {}", c.reason) }
                    );
                }
            }
        }
        ContributionCommand::Accept { datanet, id } => {
            let datanet = app.datanet(&datanet).await?;
            let (accepted, report) = contributions::accept(app, &datanet, id, OPERATOR).await?;
            println!("accepted contribution {} of {}: {report}", accepted.id, accepted.contributor);
        }
        ContributionCommand::Reject { datanet, id, reason } => {
            let datanet = app.datanet(&datanet).await?;
            let rejected = contributions::reject(app, &datanet, id, OPERATOR, &reason).await?;
            println!("rejected contribution {} of {}", rejected.id, rejected.contributor);
        }
    }
    Ok(())
}

fn row(c: &Contribution, datanet: &str) -> serde_json::Value {
    serde_json::json!({
        "id": c.id, "datanet": datanet, "contributor": c.contributor.to_checksummed(), "status": c.status,
        "documents": c.names, "bytes": c.bytes, "reason": c.reason, "created_at_ms": c.created_at_ms,
        "decided_at_ms": c.decided_at_ms, "decided_by": c.decided_by,
    })
}
