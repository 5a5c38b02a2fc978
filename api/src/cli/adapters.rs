//! `tributary adapter add|list|remove`: the LoRA adapter registry.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::Subcommand;

use crate::app::App;

#[derive(Subcommand)]
pub enum AdapterCommand {
    /// Register a PEFT LoRA adapter (adapter_config.json + adapter_model.safetensors) after
    /// checking it against the generator model.
    Add {
        id: String,
        /// Directory with the adapter files.
        #[arg(required_unless_present = "hub")]
        path: Option<PathBuf>,
        /// A Hugging Face hub repository id instead, read from the local hub cache.
        #[arg(long, conflicts_with = "path")]
        hub: Option<String>,
    },
    List {
        #[arg(long)]
        json: bool,
    },
    Remove {
        id: String,
    },
}

pub async fn adapter(app: &App, command: AdapterCommand) -> Result<()> {
    let registry = app.adapters()?;
    match command {
        AdapterCommand::Add { id, path, hub } => {
            let source = match (path, hub) {
                (Some(path), None) => tributary_generator::AdapterSource::Path(
                    std::fs::canonicalize(&path).with_context(|| format!("adapter directory {}", path.display()))?,
                ),
                (None, Some(repo)) => tributary_generator::AdapterSource::Hub(repo),
                _ => bail!("give a directory or --hub REPO"),
            };
            let generator = app.generator()?;
            let entry = registry.register(&id, source, generator.model().model().config())?;
            println!("registered {} (rank {}, modules {})", entry.id, entry.rank, entry.target_modules.join(","));
        }
        AdapterCommand::List { json } => {
            let entries = registry.list()?;
            if json {
                println!("{}", serde_json::to_string_pretty(&entries)?);
            } else if entries.is_empty() {
                println!("no adapters registered");
            } else {
                for e in entries {
                    println!("{}  rank {}  {}  {:?}", e.id, e.rank, e.target_modules.join(","), e.source);
                }
            }
        }
        AdapterCommand::Remove { id } => {
            if !registry.remove(&id)? {
                bail!("adapter {id} is not registered");
            }
            println!("removed {id}");
        }
    }
    Ok(())
}
