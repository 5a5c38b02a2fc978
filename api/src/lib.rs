//! `tributary`: the command line and the HTTP server over the indexer, retriever, generator,
//! attribution and contracts crates. Only this crate knows HTTP (`http`) and the terminal.

mod apikey;
mod ask;
mod chain;
mod demo;
pub mod http;
mod ledger;
mod progress;
mod trec;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};
use tributary_indexer::{
    Address, ChunkerConfig, Datanet, EmbedBackend, Embedder, IngestOptions, NewDatanet, Store, StoreConfig, Visibility,
};
use tributary_retriever::{Fusion, Mode, Query, Retriever, RetrieverConfig};

#[derive(Parser)]
#[command(name = "tributary", version, about = "Answers that pay their sources")]
struct Cli {
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
    /// The generator model: a GGUF file, or a Hugging Face checkpoint directory.
    #[arg(long, global = true, env = "TRIBUTARY_LLM")]
    llm: Option<PathBuf>,
    /// A remote OpenAI-compatible engine instead of the local model (vLLM, LoRAX), e.g.
    /// `http://gpu-1:8000/v1`; `--llm-model` names the served model. Key: `TRIBUTARY_LLM_API_KEY`.
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
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create and list Datanets.
    #[command(subcommand)]
    Datanet(DatanetCommand),
    /// Chunk, embed and index files into a Datanet.
    Ingest(IngestArgs),
    /// Search one or more Datanets; or, with --queries, write a TREC run for evaluation.
    Search(SearchArgs),
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
    Ask(ask::AskArgs),
    /// Register, list and remove LoRA adapters.
    #[command(subcommand)]
    Adapter(ask::AdapterCommand),
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
    Flag(ledger::FlagArgs),
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
    Chain(chain::ChainCommand),
    /// Prices, shares and influence weighting.
    #[command(subcommand)]
    Pricing(ledger::PricingCommand),
    /// Ingest the sample Datanet, search it and answer a cited question.
    Demo,
    /// The HTTP API (OpenAPI at /openapi.json, docs at /docs, metrics at /metrics).
    Serve(http::ServeArgs),
    /// Create, list and revoke the HTTP API's keys.
    #[command(subcommand)]
    Apikey(apikey::ApikeyCommand),
    /// Print the HTTP API's OpenAPI document (what openapi/openapi.json holds).
    Openapi,
}

#[derive(Subcommand)]
enum DatanetCommand {
    Create {
        name: String,
        /// Owner address (0x…); default the zero address.
        #[arg(long)]
        owner: Option<String>,
        #[arg(long)]
        private: bool,
        #[arg(long, default_value = "")]
        description: String,
    },
    List {
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args)]
struct IngestArgs {
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

#[derive(Args)]
struct SearchArgs {
    /// Datanet(s) to search; repeat for several.
    #[arg(long = "datanet", required = true)]
    datanets: Vec<String>,
    /// Only passages credited to these contributors; repeat for several.
    #[arg(long = "contributor")]
    contributors: Vec<String>,
    #[arg(long, default_value = "hybrid")]
    mode: Mode,
    #[arg(long, default_value_t = 5)]
    k: usize,
    /// `convex` (default) or `rrf`.
    #[arg(long)]
    fusion: Option<String>,
    /// Dense weight for convex fusion.
    #[arg(long)]
    alpha: Option<f32>,
    #[arg(long)]
    json: bool,
    /// BEIR queries.jsonl: evaluate instead of answering one query.
    #[arg(long, requires = "run")]
    queries: Option<PathBuf>,
    /// TREC run file to write with --queries.
    #[arg(long, requires = "queries")]
    run: Option<PathBuf>,
    /// The query (omit with --queries).
    query: Option<String>,
}

/// The binary's entry point.
pub fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,qdrant_edge=error")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(run(cli))
}

/// Where the data lives and which models to use: what the global flags say.
#[derive(Debug, Clone, Default)]
pub struct Settings {
    pub data_dir: PathBuf,
    pub database_url: Option<String>,
    pub embed_model: Option<PathBuf>,
    pub embed_backend: EmbedBackend,
    pub llm: Option<PathBuf>,
    pub remote: Option<tributary_generator::RemoteConfig>,
    pub rpc_url: Option<String>,
}

impl Settings {
    fn from_cli(cli: &Cli) -> Settings {
        Settings {
            data_dir: cli.data_dir.clone(),
            database_url: cli.database_url.clone(),
            embed_model: cli.embed_model.clone(),
            embed_backend: cli.embed_backend,
            llm: cli.llm.clone(),
            remote: cli.llm_url.clone().map(|base_url| tributary_generator::RemoteConfig {
                base_url,
                model: cli.llm_model.clone(),
                api_key: std::env::var("TRIBUTARY_LLM_API_KEY").ok(),
                context_length: cli.llm_context,
            }),
            rpc_url: cli.rpc_url.clone(),
        }
    }
}

/// The opened data directory and the models, loaded once on first use.
pub struct App {
    pub store: Arc<Store>,
    pub settings: Settings,
    embedder: Mutex<Option<Arc<dyn Embedder>>>,
    query_embedder: Mutex<Option<Arc<tributary_indexer::QueryCache>>>,
    adapters: Mutex<Option<Arc<tributary_generator::AdapterRegistry>>>,
    local: Mutex<Option<Arc<tributary_generator::LocalGenerator>>>,
    answer_backend: Mutex<Option<Arc<dyn tributary_generator::Generator>>>,
}

/// Distinct queries whose embeddings are kept (384 floats each: about 6 MiB).
pub const QUERY_CACHE_ENTRIES: usize = 4096;

/// The value in `slot`, made by `make` the first time.
fn cached<T: Clone>(slot: &Mutex<Option<T>>, make: impl FnOnce() -> Result<T>) -> Result<T> {
    let mut slot = slot.lock().map_err(|_| anyhow::anyhow!("a model cache lock is poisoned"))?;
    if let Some(value) = slot.as_ref() {
        return Ok(value.clone());
    }
    let value = make()?;
    *slot = Some(value.clone());
    Ok(value)
}

impl App {
    pub async fn open(settings: &Settings) -> Result<Self> {
        let mut config = StoreConfig::new(&settings.data_dir);
        config.database_url = settings.database_url.clone();
        let store = Store::open(config)
            .await
            .with_context(|| format!("opening the data directory {}", settings.data_dir.display()))?;
        Ok(App {
            store: Arc::new(store),
            settings: settings.clone(),
            embedder: Mutex::new(None),
            query_embedder: Mutex::new(None),
            adapters: Mutex::new(None),
            local: Mutex::new(None),
            answer_backend: Mutex::new(None),
        })
    }

    /// The embedding model, loaded on first use and shared after.
    pub fn embedder(&self) -> Result<Arc<dyn Embedder>> {
        cached(&self.embedder, || {
            let dir = tributary_indexer::locate_model(self.settings.embed_model.as_deref())?;
            tributary_indexer::load_embedder(&dir, self.settings.embed_backend)
                .with_context(|| format!("loading the model in {}", dir.display()))
        })
    }

    /// The embedder for queries: the same model behind a cache of the last
    /// [`QUERY_CACHE_ENTRIES`] distinct queries (a repeated question skips the embedding).
    pub fn query_embedder(&self) -> Result<Arc<tributary_indexer::QueryCache>> {
        cached(&self.query_embedder, || {
            Ok(Arc::new(tributary_indexer::QueryCache::new(self.embedder()?, QUERY_CACHE_ENTRIES)))
        })
    }

    /// (hits, misses) of the query cache, once it exists.
    pub fn query_cache_counts(&self) -> Option<(u64, u64)> {
        let slot = self.query_embedder.lock().ok()?;
        slot.as_ref().map(|cache| cache.counts())
    }

    /// The adapter registry of this data directory (one per process: it holds the entries).
    pub fn adapters(&self) -> Result<Arc<tributary_generator::AdapterRegistry>> {
        cached(&self.adapters, || {
            let path = self.store.data_dir().join("adapters.json");
            Ok(Arc::new(tributary_generator::AdapterRegistry::open(&path)?))
        })
    }

    /// The local generator: the model `--llm` names (default SmolLM2 from scripts/setup.sh),
    /// loaded on first use.
    pub fn generator(&self) -> Result<Arc<tributary_generator::LocalGenerator>> {
        cached(&self.local, || {
            let path = tributary_generator::locate_model(self.settings.llm.as_deref())?;
            let model = tributary_generator::LocalModel::load(&path, &tributary_generator::default_device())
                .with_context(|| format!("loading the generator model {}", path.display()))?;
            Ok(Arc::new(tributary_generator::LocalGenerator::new(
                model,
                self.adapters()?,
                tributary_generator::DEFAULT_ADAPTER_BUDGET,
            )))
        })
    }

    /// The local generator if something already loaded it.
    pub fn loaded_generator(&self) -> Option<Arc<tributary_generator::LocalGenerator>> {
        self.local.lock().ok()?.clone()
    }

    /// The local generator's adapter cache counters, once it is loaded.
    pub fn adapter_cache_stats(&self) -> Option<tributary_generator::CacheStats> {
        self.loaded_generator().map(|local| local.adapter_cache().stats())
    }

    /// The backend answers come from: the remote engine when `--llm-url` is set, else local.
    /// Loaded on first use and shared after.
    pub fn answer_backend(&self) -> Result<Arc<dyn tributary_generator::Generator>> {
        cached(&self.answer_backend, || {
            let backend: Arc<dyn tributary_generator::Generator> = match &self.settings.remote {
                Some(config) => Arc::new(tributary_generator::RemoteGenerator::new(config.clone())?),
                None => self.generator()?,
            };
            Ok(backend)
        })
    }

    /// The attribution ledger, in the catalog's database.
    pub fn ledger(&self) -> tributary_attribution::Ledger {
        tributary_attribution::Ledger::new(self.store.catalog())
    }

    pub async fn datanet(&self, name: &str) -> Result<Datanet> {
        Ok(self.store.catalog().datanet(name).await?)
    }
}

async fn run(cli: Cli) -> Result<()> {
    if let Command::Openapi = cli.command {
        print!("{}", http::openapi_json()?);
        return Ok(());
    }
    let app = App::open(&Settings::from_cli(&cli)).await?;
    let result = match cli.command {
        Command::Datanet(command) => datanet(&app, command).await,
        Command::Ingest(args) => ingest(&app, args).await,
        Command::Search(args) => search(&app, args).await,
        Command::Verify { datanet: Some(datanet), repair } => verify(&app, &datanet, repair).await,
        Command::Verify { datanet: None, .. } => ledger::verify(&app).await,
        Command::Ask(args) => ask::ask(&app, args).await,
        Command::Adapter(command) => ask::adapter(&app, command).await,
        Command::Earnings { address, json } => ledger::earnings(&app, &address, json).await,
        Command::Receipt { id, json } => ledger::receipt(&app, &id, json).await,
        Command::Settle { json } => ledger::settle(&app, json).await,
        Command::Proof { address, epoch, json } => ledger::proof(&app, &address, epoch, json).await,
        Command::Flag(args) => ledger::flag(&app, args).await,
        Command::Unflag { id, reason, actor } => ledger::unflag(&app, id, &reason, &actor).await,
        Command::Flags { datanet, json } => ledger::flags(&app, &datanet, json).await,
        Command::Pricing(command) => ledger::pricing(&app, command).await,
        Command::Claim { address, json } => chain::claim(&app, &address, json).await,
        Command::Chain(command) => chain::command(&app, command).await,
        Command::Demo => demo::run(&app).await,
        Command::Serve(args) => return http::serve(Arc::new(app), args).await,
        Command::Apikey(command) => apikey::command(&app, command).await,
        Command::Openapi => Ok(()),
    };
    app.store.catalog().close().await;
    result
}

pub(crate) fn parse_address(s: &str) -> Result<Address> {
    Ok(s.parse::<Address>()?)
}

async fn datanet(app: &App, command: DatanetCommand) -> Result<()> {
    match command {
        DatanetCommand::Create { name, owner, private, description } => {
            let owner = owner.as_deref().map(parse_address).transpose()?.unwrap_or(Address::ZERO);
            let visibility = if private { Visibility::Private } else { Visibility::Public };
            let datanet =
                app.store.catalog().create_datanet(&NewDatanet { name, description, owner, visibility }).await?;
            println!(
                "created Datanet {} (id {}, owner {}, {})",
                datanet.name,
                datanet.id,
                datanet.owner,
                visibility.as_str()
            );
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
                            "created_at_ms": d.created_at_ms,
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

pub(crate) async fn ingest(app: &App, args: IngestArgs) -> Result<()> {
    let datanet = app.datanet(&args.datanet).await?;
    let mut options = IngestOptions::new(parse_address(&args.contributor)?);
    options.license = args.license;
    options.chunker = ChunkerConfig { target_tokens: args.chunk_tokens, overlap_tokens: args.overlap_tokens };
    options.chunker.validate()?;
    options.batch_chunks = args.batch_chunks;
    let embedder = app.embedder()?;
    let bar = progress::Bar::new();
    let report = tributary_indexer::ingest(&app.store, embedder, &datanet, &args.paths, &options, &bar).await?;
    bar.finish();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!("ingested into {}: {report}", datanet.name);
    }
    Ok(())
}

fn fusion_of(fusion: Option<&str>, alpha: Option<f32>) -> Result<Fusion> {
    if let Some(alpha) = alpha
        && !(0.0..=1.0).contains(&alpha)
    {
        bail!("--alpha must be between 0 and 1");
    }
    match (fusion.unwrap_or("convex"), alpha) {
        ("convex", Some(alpha)) => Ok(Fusion::Convex { alpha }),
        ("convex", None) => Ok(Fusion::default()),
        ("rrf", None) => Ok(Fusion::Rrf { k: 60.0 }),
        ("rrf", Some(_)) => bail!("--alpha applies to convex fusion only"),
        (other, _) => bail!("--fusion must be convex or rrf, not {other:?}"),
    }
}

async fn search(app: &App, args: SearchArgs) -> Result<()> {
    let mut datanets = Vec::new();
    for name in &args.datanets {
        datanets.push(app.datanet(name).await?);
    }
    let contributors = args.contributors.iter().map(|c| parse_address(c)).collect::<Result<Vec<_>>>()?;
    let config = RetrieverConfig { fusion: fusion_of(args.fusion.as_deref(), args.alpha)?, ..Default::default() };
    let retriever = Retriever::new(app.store.clone(), app.query_embedder()?, config);
    let contributors = (!contributors.is_empty()).then_some(contributors.as_slice());

    if let (Some(queries), Some(run)) = (&args.queries, &args.run) {
        return trec::write_run(&retriever, &datanets, contributors, args.mode, args.k, queries, run).await;
    }
    let Some(text) = args.query.as_deref() else { bail!("give a query, or --queries and --run") };
    let passages =
        retriever.search(&Query { text, datanets: &datanets, contributors, k: args.k, mode: args.mode }).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&passages)?);
    } else {
        print_passages(&passages);
    }
    Ok(())
}

pub(crate) fn print_passages(passages: &[tributary_retriever::Passage]) {
    if passages.is_empty() {
        println!("no passages found");
    }
    for (n, p) in passages.iter().enumerate() {
        println!(
            "[{}] score {:.3}  {}  bytes {}..{}  datanet {}\n    contributor {}\n    {}\n",
            n + 1,
            p.score,
            p.document,
            p.start,
            p.end,
            p.datanet,
            p.contributor,
            p.text.split_whitespace().collect::<Vec<_>>().join(" ")
        );
    }
}

async fn verify(app: &App, name: &str, repair: bool) -> Result<()> {
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
