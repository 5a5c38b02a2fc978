//! The command line: one file per command group (arguments, calls into `crate::app`,
//! printing as text or `--json`, progress bars). `main.rs` parses [`Global`] and [`Command`]
//! (beside the server's own `serve` and `openapi`, which belong to `crate::http`), opens the
//! [`App`] and calls [`run`].

mod accounts;
mod adapters;
mod answers;
mod apikeys;
mod contributions;
mod datanets;
mod demo;
mod eval;
mod flags;
mod onchain;
mod output;
mod pricing;
mod progress;
mod receipts;
mod search;
mod trec;

use std::path::PathBuf;

use anyhow::Result;
use clap::{Args, Subcommand};
use tributary_generator::SchedulerConfig;
use tributary_indexer::EmbedBackend;

use crate::app::{App, Settings};

/// The global flags: where the data lives, which models and which chain.
#[derive(Args)]
pub struct Global {
    /// Where the catalog (SQLite by default) and the indexes live.
    #[arg(long, global = true, env = "TRIBUTARY_DATA_DIR", default_value = "./tributary-data")]
    data_dir: PathBuf,
    /// Catalog database; default `sqlite:<data-dir>/tributary.db`. `postgres://…` for PostgreSQL.
    #[arg(long, global = true, env = "DATABASE_URL")]
    database_url: Option<String>,
    /// Directory with the embedding model (config.json, tokenizer.json, model.safetensors).
    #[arg(long, global = true, env = "TRIBUTARY_EMBED_MODEL")]
    embed_model: Option<PathBuf>,
    /// Embedding engine: auto (ONNX Runtime when installed, else candle), candle or onnx.
    #[arg(long, global = true, env = "TRIBUTARY_EMBED_BACKEND", default_value = "auto")]
    embed_backend: EmbedBackend,
    /// The generator model: a GGUF file, a Hugging Face checkpoint directory, or a model in the
    /// local Hugging Face cache (`org/name`, `org/name/file.gguf`).
    #[arg(long, global = true, env = "TRIBUTARY_LLM")]
    llm: Option<PathBuf>,
    /// A remote OpenAI-compatible engine instead of the local model (vLLM, LoRAX), e.g.
    /// `http://gpu-1:8000/v1`; several (one base model) separated by commas: a request with an
    /// adapter goes to one that lists it (`GET /models`), round-robin, skipping engines that
    /// are down.
    /// `--llm-model` names the served base model. Key: `TRIBUTARY_LLM_API_KEY`.
    #[arg(long, global = true, env = "TRIBUTARY_LLM_URL")]
    llm_url: Option<String>,
    #[arg(long, global = true, env = "TRIBUTARY_LLM_MODEL", default_value = "default")]
    llm_model: String,
    /// Context length of the remote model.
    #[arg(long, global = true, env = "TRIBUTARY_LLM_CONTEXT", default_value_t = 4096)]
    llm_context: usize,
    /// EVM JSON-RPC endpoint for settlement (anvil, an OP Stack chain, any EVM chain); else the
    /// one in <data-dir>/chain.toml. The signer key comes from TRIBUTARY_SIGNER_KEY only.
    #[arg(long, global = true, env = "TRIBUTARY_RPC_URL")]
    rpc_url: Option<String>,
    /// MiB kept free on the data directory's disk: an ingest stops with an error rather than
    /// fill it (default 64).
    #[arg(long, global = true, env = "TRIBUTARY_MIN_FREE_DISK_MB")]
    min_free_disk_mb: Option<u64>,
    /// Answers the local model decodes together, step by step (more wait their turn).
    #[arg(long, global = true, env = "TRIBUTARY_MAX_BATCH", default_value_t = SchedulerConfig::default().max_rows)]
    max_batch: usize,
    /// MiB for the local model's key/value caches: each answer reserves what its prompt and
    /// answer can reach; an answer that cannot fit is refused (HTTP 503), never cut short.
    #[arg(long, global = true, env = "TRIBUTARY_KV_BUDGET_MB", default_value_t = SchedulerConfig::default().kv_budget_bytes >> 20)]
    kv_budget_mb: usize,
}

#[derive(Subcommand)]
pub enum Command {
    /// Create and list Datanets.
    #[command(subcommand)]
    Datanet(datanets::DatanetCommand),
    /// Chunk, embed and index files into a Datanet.
    Ingest(datanets::IngestArgs),
    /// Search one or more Datanets; or, with --queries, write a TREC run for evaluation.
    Search(search::SearchArgs),
    /// Without --datanet: recompute the receipts' hash chain, every answer's split and every
    /// epoch's root from the ledger (exit code 1 on any mismatch). With --datanet: check that
    /// its catalog and both indexes agree; --repair fixes what does not.
    Verify {
        #[arg(long)]
        datanet: Option<String>,
        #[arg(long, requires = "datanet")]
        repair: bool,
    },
    /// Answer a question from one or more Datanets, citing the passages used.
    Ask(answers::AskArgs),
    /// Answer a set of questions with known answers and report how many were right and cited,
    /// citation precision and recall, and what the fact check caught (nothing is recorded).
    Eval(eval::EvalArgs),
    /// Register, list and remove LoRA adapters.
    #[command(subcommand)]
    Adapter(adapters::AdapterCommand),
    /// What an address earned: total, per Datanet, per epoch and per citation.
    Earnings {
        address: String,
        #[arg(long)]
        json: bool,
    },
    /// One answer's receipt: fee, split and credits.
    Receipt {
        id: String,
        #[arg(long)]
        json: bool,
    },
    /// Close the current epoch (cumulative totals, their Merkle root and every proof), then post
    /// every closed epoch the chain lacks when contracts are deployed.
    Settle {
        #[arg(long)]
        json: bool,
    },
    /// An address's cumulative total and Merkle proof in an epoch (default: the latest).
    Proof {
        address: String,
        #[arg(long)]
        epoch: Option<i64>,
        #[arg(long)]
        json: bool,
    },
    /// Flag a chunk, document or contributor: it leaves retrieval and its unsettled credits are
    /// slashed.
    Flag(flags::FlagArgs),
    /// Lift a flag (the target is retrievable again; slashes stay).
    Unflag {
        id: i64,
        #[arg(long)]
        reason: String,
        #[arg(long, default_value = "admin")]
        actor: String,
    },
    /// A Datanet's flags, active and lifted.
    Flags {
        #[arg(long)]
        datanet: String,
        #[arg(long)]
        json: bool,
    },
    /// Pay an address what its proven cumulative total exceeds what it was paid (anyone may
    /// submit it; the tokens go to the address).
    Claim {
        address: String,
        #[arg(long)]
        json: bool,
    },
    /// Deploy the contracts; compare the chain's epochs with the ledger's.
    #[command(subcommand)]
    Chain(onchain::ChainCommand),
    /// Prices, shares and influence weighting.
    #[command(subcommand)]
    Pricing(pricing::PricingCommand),
    /// Payers' balances: grants off chain, sponsor budgets, transfers.
    #[command(subcommand)]
    Account(accounts::AccountCommand),
    /// Ingest the sample Datanet, search it and answer a cited question.
    Demo,
    /// Create, list and revoke the HTTP API's keys.
    #[command(subcommand)]
    Apikey(apikeys::ApikeyCommand),
    /// Review the uploads Datanets hold for review: list, accept, reject.
    #[command(subcommand)]
    Contribution(contributions::ContributionCommand),
}

impl Global {
    /// What the global flags say.
    pub fn settings(&self) -> anyhow::Result<Settings> {
        Ok(Settings {
            data_dir: self.data_dir.clone(),
            database_url: self.database_url.clone(),
            embed_model: self.embed_model.clone(),
            embed_backend: self.embed_backend,
            llm: self.llm.clone(),
            remote: self.llm_url.clone().map(|base_url| tributary_generator::RemoteConfig {
                base_url,
                model: self.llm_model.clone(),
                api_key: std::env::var("TRIBUTARY_LLM_API_KEY").ok(),
                context_length: self.llm_context,
            }),
            rpc_url: self.rpc_url.clone(),
            min_free_bytes: self.min_free_disk_mb.map(|mb| mb.saturating_mul(1 << 20)),
            scheduler: SchedulerConfig {
                max_rows: self.max_batch.max(1),
                kv_budget_bytes: self.kv_budget_mb.saturating_mul(1 << 20),
                ..SchedulerConfig::default()
            },
            qdrant: tributary_indexer::QdrantSettings::from_env()?,
        })
    }
}

/// Runs one command on the opened data directory.
pub async fn run(app: &App, command: Command) -> Result<()> {
    match command {
        Command::Datanet(command) => datanets::datanet(app, command).await,
        Command::Ingest(args) => datanets::ingest(app, args).await,
        Command::Search(args) => search::search(app, args).await,
        Command::Verify { datanet: Some(datanet), repair } => datanets::verify(app, &datanet, repair).await,
        Command::Verify { datanet: None, .. } => receipts::verify(app).await,
        Command::Ask(args) => answers::ask(app, args).await,
        Command::Eval(args) => eval::eval(app, args).await,
        Command::Adapter(command) => adapters::adapter(app, command).await,
        Command::Earnings { address, json } => receipts::earnings(app, &address, json).await,
        Command::Receipt { id, json } => receipts::receipt(app, &id, json).await,
        Command::Settle { json } => onchain::settle(app, json).await,
        Command::Proof { address, epoch, json } => receipts::proof(app, &address, epoch, json).await,
        Command::Flag(args) => flags::flag(app, args).await,
        Command::Unflag { id, reason, actor } => flags::unflag(app, id, &reason, &actor).await,
        Command::Flags { datanet, json } => flags::flags(app, &datanet, json).await,
        Command::Pricing(command) => pricing::pricing(app, command).await,
        Command::Account(command) => accounts::command(app, command).await,
        Command::Claim { address, json } => onchain::claim(app, &address, json).await,
        Command::Chain(command) => onchain::command(app, command).await,
        Command::Demo => demo::run(app).await,
        Command::Apikey(command) => apikeys::command(app, command).await,
        Command::Contribution(command) => contributions::command(app, command).await,
    }
}
