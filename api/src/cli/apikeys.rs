//! `tributary apikey create|list|revoke`: keys of the HTTP API.

use anyhow::{Result, bail};
use clap::Subcommand;

use crate::app::keys::{KeyStore, NewKey, Role};
use crate::app::{App, parse_address};

#[derive(Subcommand)]
pub enum ApikeyCommand {
    /// Print a new key (shown once; only its hash is stored).
    Create {
        /// admin, owner, contributor or reader.
        #[arg(long)]
        role: Role,
        /// The address the key acts as (required for owner and contributor keys).
        #[arg(long)]
        address: Option<String>,
        #[arg(long, default_value = "")]
        label: String,
        /// Requests per minute (default: the server's `--key-rate-per-minute`).
        #[arg(long)]
        rate_per_minute: Option<u32>,
        #[arg(long)]
        json: bool,
    },
    List {
        #[arg(long)]
        json: bool,
    },
    /// Revoke a key by its id (effective within seconds on running servers).
    Revoke { id: i64 },
}

pub async fn command(app: &App, command: ApikeyCommand) -> Result<()> {
    let keys = KeyStore::new(app.store.catalog().pool().clone());
    match command {
        ApikeyCommand::Create { role, address, label, rate_per_minute, json } => {
            if rate_per_minute == Some(0) {
                bail!("--rate-per-minute must be at least 1");
            }
            let address = address.as_deref().map(parse_address).transpose()?;
            let (secret, key) = keys.create(&NewKey { role, address, label, rate_per_minute }).await?;
            if json {
                let value = serde_json::json!({
                    "id": key.id, "key": secret, "role": key.role.as_str(),
                    "address": key.address.map(|a| a.to_checksummed()),
                });
                println!("{}", serde_json::to_string_pretty(&value)?);
            } else {
                println!("{secret}");
                eprintln!(
                    "key {} ({}, {}): store it now, it is not shown again",
                    key.id,
                    key.prefix,
                    key.role.as_str()
                );
            }
        }
        ApikeyCommand::List { json } => {
            let list = keys.list().await?;
            if json {
                let rows: Vec<_> = list
                    .iter()
                    .map(|k| {
                        serde_json::json!({
                            "id": k.id, "prefix": k.prefix, "role": k.role.as_str(),
                            "address": k.address.map(|a| a.to_checksummed()), "label": k.label,
                            "rate_per_minute": k.rate_per_minute, "created_at_ms": k.created_at_ms,
                            "revoked_at_ms": k.revoked_at_ms,
                        })
                    })
                    .collect();
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else {
                for k in list {
                    let state = if k.revoked_at_ms.is_some() { "revoked" } else { "live" };
                    let address = k.address.map(|a| a.to_checksummed()).unwrap_or_default();
                    println!("{:<5} {}…  {:<11} {:<7} {address} {}", k.id, k.prefix, k.role.as_str(), state, k.label);
                }
            }
        }
        ApikeyCommand::Revoke { id } => {
            if !keys.revoke(id).await? {
                bail!("no live key {id}");
            }
            println!("revoked key {id}");
        }
    }
    Ok(())
}
