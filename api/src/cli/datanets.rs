//! `tributary datanet create|list`, `ingest`, and `verify --datanet` (a Datanet's stores).

use std::path::PathBuf;

use anyhow::{Result, bail};
use clap::{Args, Subcommand};
use tributary_indexer::{Address, ChunkerConfig, IngestOptions, NewDatanet, Visibility};

use super::progress;
use crate::app::ingest::{Documents, ingest as ingest_documents};
use crate::app::{App, parse_address};

#[derive(Subcommand)]
pub enum DatanetCommand {
    Create {
        name: String,
        /// Owner address (0x…); default the zero address.
        #[arg(long)]
        owner: Option<String>,
        /// Readable by its owner and members only; named `NAME~0xOWNER` (lowercase hex), as
        /// `datanet create` prints and every other command takes it.
        #[arg(long)]
        private: bool,
        #[arg(long, default_value = "")]
        description: String,
        /// Hold uploads from anyone but the owner until the owner or a member accepts them
        /// (`tributary contribution`).
        #[arg(long)]
        review: bool,
    },
    /// Turn review of new uploads on or off (pending contributions stay pending either way).
    SetReview {
        name: String,
        #[arg(action = clap::ArgAction::Set)]
        review: bool,
    },
    List {
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args)]
pub struct IngestArgs {
    #[arg(long)]
    datanet: String,
    /// The contributor's EVM address, credited for every new chunk.
    #[arg(long)]
    contributor: String,
    /// License of the uploaded documents (SPDX identifier).
    #[arg(long, default_value = "unspecified")]
    license: String,
    /// Chunk length limit in embedder tokens.
    #[arg(long, default_value_t = ChunkerConfig::default().target_tokens)]
    chunk_tokens: usize,
    /// Tokens repeated between consecutive chunks of one paragraph.
    #[arg(long, default_value_t = ChunkerConfig::default().overlap_tokens)]
    overlap_tokens: usize,
    /// New chunks per durable batch (smaller: less work lost to a crash, more commits).
    #[arg(long, default_value_t = 256)]
    batch_chunks: usize,
    #[arg(long)]
    json: bool,
    #[arg(required = true)]
    paths: Vec<PathBuf>,
}

pub async fn datanet(app: &App, command: DatanetCommand) -> Result<()> {
    match command {
        DatanetCommand::Create { name, owner, private, description, review } => {
            let owner = owner.as_deref().map(parse_address).transpose()?.unwrap_or(Address::ZERO);
            let visibility = if private { Visibility::Private } else { Visibility::Public };
            let new = NewDatanet { name, description, owner, visibility, review };
            let datanet = app.store.catalog().create_datanet(&new).await?;
            println!(
                "created Datanet {} (id {}, owner {}, {}{})",
                datanet.name,
                datanet.id,
                datanet.owner,
                visibility.as_str(),
                if review { ", uploads reviewed" } else { "" }
            );
        }
        DatanetCommand::SetReview { name, review } => {
            let update = tributary_indexer::DatanetUpdate { review: Some(review), ..Default::default() };
            let datanet = app.store.catalog().update_datanet(&app.datanet(&name).await?.name, &update).await?;
            println!("Datanet {}: uploads {}", datanet.name, if review { "wait for review" } else { "go in at once" });
        }
        DatanetCommand::List { json } => {
            let datanets = app.store.catalog().datanets().await?;
            if json {
                let rows: Vec<_> = datanets
                    .iter()
                    .map(|d| {
                        serde_json::json!({
                            "id": d.id, "name": d.name, "description": d.description,
                            "owner": d.owner.to_checksummed(), "visibility": d.visibility,
                            "review": d.review, "created_at_ms": d.created_at_ms,
                        })
                    })
                    .collect();
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else {
                for d in datanets {
                    println!("{:<24} {:<8} owner {} {}", d.name, d.visibility.as_str(), d.owner, d.description);
                }
            }
        }
    }
    Ok(())
}

pub async fn ingest(app: &App, args: IngestArgs) -> Result<()> {
    let datanet = app.datanet(&args.datanet).await?;
    let mut options = IngestOptions::new(parse_address(&args.contributor)?);
    options.license = args.license;
    options.chunker = ChunkerConfig { target_tokens: args.chunk_tokens, overlap_tokens: args.overlap_tokens };
    options.batch_chunks = args.batch_chunks;
    let bar = progress::Bar::new();
    let report = ingest_documents(app, &datanet, Documents::Paths(args.paths), &options, &bar).await?;
    bar.finish();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!("ingested into {}: {report}", datanet.name);
    }
    Ok(())
}

pub async fn verify(app: &App, name: &str, repair: bool) -> Result<()> {
    let datanet = app.datanet(name).await?;
    let found = if repair {
        let embedder = app.embedder()?;
        app.store.repair(&datanet, embedder.as_ref()).await?
    } else {
        app.store.verify(&datanet).await?
    };
    println!("{}", serde_json::to_string_pretty(&found)?);
    if !found.is_consistent() && !repair {
        bail!("Datanet {name} is inconsistent; run `tributary verify --datanet {name} --repair`");
    }
    Ok(())
}
