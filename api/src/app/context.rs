//! [`App`]: the opened data directory and the models, each loaded once on first use.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use tributary_indexer::{Address, Datanet, EmbedBackend, Embedder, Store, StoreConfig};

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
    /// Bytes kept free on the data directory's disk (default
    /// [`tributary_indexer::DEFAULT_MIN_FREE_BYTES`]).
    pub min_free_bytes: Option<u64>,
    /// How the local generator batches concurrent answers.
    pub scheduler: tributary_generator::SchedulerConfig,
    /// Dense vectors on a Qdrant server or cluster (`QDRANT_URL`) instead of the embedded shards.
    pub qdrant: Option<tributary_indexer::QdrantSettings>,
}

/// Held while writing a Datanet's indexes: see [`App::writing`].
pub struct Writing {
    // Dropped first: the database's lock, then this process's.
    _shared: tributary_indexer::WriterLock,
    _local: tokio::sync::OwnedMutexGuard<()>,
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
    training_credits: Mutex<Option<Arc<crate::app::training_credits::TrainingCredits>>>,
    /// One writer per Datanet at a time (the ingest protocol's assumption), across every
    /// front end of this process.
    writers: Mutex<HashMap<i64, Arc<tokio::sync::Mutex<()>>>>,
    /// Group commit of holds and receipts (started with the App, on its runtime).
    batcher: crate::app::batch::LedgerBatcher,
}

/// Bytes of query embeddings kept (1,632 bytes an entry with MiniLM's 384 floats: about 10,000
/// queries).
pub const QUERY_CACHE_BYTES: u64 = 16 << 20;

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
        config.qdrant = settings.qdrant.clone();
        if let Some(bytes) = settings.min_free_bytes {
            config.min_free_bytes = bytes;
        }
        let store = Store::open(config)
            .await
            .with_context(|| format!("opening the data directory {}", settings.data_dir.display()))?;
        let batcher = crate::app::batch::LedgerBatcher::start(tributary_attribution::Ledger::new(store.catalog()));
        Ok(App {
            batcher,
            store: Arc::new(store),
            settings: settings.clone(),
            embedder: Mutex::new(None),
            query_embedder: Mutex::new(None),
            adapters: Mutex::new(None),
            local: Mutex::new(None),
            answer_backend: Mutex::new(None),
            training_credits: Mutex::new(None),
            writers: Mutex::new(HashMap::new()),
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
    /// [`QUERY_CACHE_BYTES`] of query vectors (a repeated question skips the embedding).
    pub fn query_embedder(&self) -> Result<Arc<tributary_indexer::QueryCache>> {
        cached(&self.query_embedder, || {
            Ok(Arc::new(tributary_indexer::QueryCache::new(self.embedder()?, QUERY_CACHE_BYTES)))
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
            Ok(Arc::new(tributary_generator::LocalGenerator::with_scheduler(
                model,
                self.adapters()?,
                tributary_generator::DEFAULT_ADAPTER_BUDGET,
                self.settings.scheduler.clone(),
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

    /// Training-data attribution for answers of adapters trained here (started on first use);
    /// `None` when answers come from a remote engine, whose gradients cannot be taken here.
    pub fn training_credits(&self) -> Result<Option<Arc<crate::app::training_credits::TrainingCredits>>> {
        if self.settings.remote.is_some() {
            return Ok(None);
        }
        cached(&self.training_credits, || {
            Ok(Arc::new(crate::app::training_credits::TrainingCredits::start(self.generator()?)?))
        })
        .map(Some)
    }

    /// The ledger's group commit: holds and receipts of concurrent answers share transactions.
    pub fn batcher(&self) -> &crate::app::batch::LedgerBatcher {
        &self.batcher
    }

    /// The attribution ledger, in the catalog's database.
    pub fn ledger(&self) -> tributary_attribution::Ledger {
        tributary_attribution::Ledger::new(self.store.catalog())
    }

    /// What a write into `datanet_id`'s indexes (an ingest, a repair) holds while it writes:
    /// this process's lock, then the database's (`Catalog::writer_lock`), so that one writer
    /// at a time holds across front ends and across processes sharing the database.
    pub async fn writing(&self, datanet_id: i64) -> Result<Writing> {
        let local = {
            let mut writers = self.writers.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            writers.entry(datanet_id).or_default().clone()
        };
        let local = local.lock_owned().await;
        let shared = self.store.catalog().writer_lock(datanet_id).await?;
        Ok(Writing { _shared: shared, _local: local })
    }

    /// The Datanet stored under `name`, exactly (a private one is `name~0xowner`). No
    /// shorter form is guessed: what a name pays must not change when someone else creates a
    /// Datanet later.
    pub async fn datanet(&self, name: &str) -> Result<Datanet> {
        Ok(self.store.catalog().datanet(name).await?)
    }
}

/// An EVM address from user input (`0x` + 40 hex digits, checksum checked when mixed case).
pub fn parse_address(s: &str) -> Result<Address> {
    Ok(s.parse::<Address>()?)
}

/// Every non-blank line of the JSON-lines file at `path` as a `T`; an error names the line.
pub fn read_jsonl<T: serde::de::DeserializeOwned>(path: &std::path::Path) -> Result<Vec<T>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(i, line)| serde_json::from_str(line).with_context(|| format!("{}:{}", path.display(), i + 1)))
        .collect()
}
