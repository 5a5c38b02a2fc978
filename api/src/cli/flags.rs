//! `tributary flag|unflag|flags`: chunks, documents or contributors out of retrieval, their
//! unsettled credits slashed.

use anyhow::{Result, bail};
use clap::Args;
use tributary_attribution::FlagTarget;

use super::output::print_json;
use crate::app::{App, parse_address};

#[derive(Args)]
pub struct FlagArgs {
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

pub async fn flag(app: &App, args: FlagArgs) -> Result<()> {
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

pub async fn unflag(app: &App, id: i64, reason: &str, actor: &str) -> Result<()> {
    let flag = app.ledger().unflag(id, reason, actor).await?;
    println!("flag {} lifted: {} {} is retrievable again (slashes stay)", flag.id, flag.kind, flag.target);
    Ok(())
}

pub async fn flags(app: &App, datanet: &str, json: bool) -> Result<()> {
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
