//! Which adapters exist (a registry persisted in the data directory) and which are loaded (an
//! LRU cache under a memory budget, filled just in time on first use).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use candle_core::{DType, Device};

use crate::adapters::lora::{Adapter, AdapterSource};
use crate::config::ModelConfig;
use crate::error::{Error, Result};

/// One registered adapter.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AdapterEntry {
    pub id: String,
    pub source: AdapterSource,
    pub rank: usize,
    pub target_modules: Vec<String>,
    pub base_model: Option<String>,
    /// Seconds since the Unix epoch.
    pub added_at: u64,
}

/// Adapter ids: what a request or a URL path may carry.
pub fn validate_adapter_id(id: &str) -> Result<()> {
    let ok = !id.is_empty()
        && id.len() <= 128
        && id.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'))
        && !id.starts_with(['/', '.']);
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidRequest(format!(
            "adapter id {id:?}: 1-128 characters of letters, digits, - _ . /, not starting with / or ."
        )))
    }
}

/// The registered adapters, stored as JSON (`adapters.json` in the data directory) and
/// replaced atomically, so a crash never leaves it half-written.
#[derive(Debug)]
pub struct AdapterRegistry {
    path: PathBuf,
    entries: Mutex<BTreeMap<String, AdapterEntry>>,
}

impl AdapterRegistry {
    pub fn open(path: impl Into<PathBuf>) -> Result<Self> {
        let path = path.into();
        let entries = match std::fs::read(&path) {
            Ok(bytes) => {
                let list: Vec<AdapterEntry> = serde_json::from_slice(&bytes)
                    .map_err(|e| Error::Model(format!("{}: corrupt adapter registry: {e}", path.display())))?;
                list.into_iter().map(|e| (e.id.clone(), e)).collect()
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(e) => return Err(Error::Io(path.display().to_string(), e)),
        };
        Ok(AdapterRegistry { path, entries: Mutex::new(entries) })
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, BTreeMap<String, AdapterEntry>>> {
        self.entries.lock().map_err(|_| Error::Model("adapter registry lock poisoned".into()))
    }

    /// Registers `source` as `id` after loading it once against `model` (so an adapter that
    /// does not fit is refused here, not at first use).
    pub fn register(&self, id: &str, source: AdapterSource, model: &ModelConfig) -> Result<AdapterEntry> {
        validate_adapter_id(id)?;
        let dir = source.resolve()?;
        let adapter = Adapter::load(id, &dir, model, &Device::Cpu, DType::F32)?;
        let entry = AdapterEntry {
            id: id.to_string(),
            source,
            rank: adapter.rank(),
            target_modules: adapter.config().target_modules.clone(),
            base_model: adapter.config().base_model_name_or_path.clone(),
            added_at: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or_default(),
        };
        let mut entries = self.lock()?;
        if let Some(existing) = entries.get(id)
            && existing.source != entry.source
        {
            return Err(Error::InvalidRequest(format!("adapter {id} is already registered from another source")));
        }
        entries.insert(id.to_string(), entry.clone());
        self.save(&entries)?;
        Ok(entry)
    }

    /// Removes `id`; false when it was not registered.
    pub fn remove(&self, id: &str) -> Result<bool> {
        let mut entries = self.lock()?;
        let removed = entries.remove(id).is_some();
        if removed {
            self.save(&entries)?;
        }
        Ok(removed)
    }

    pub fn list(&self) -> Result<Vec<AdapterEntry>> {
        Ok(self.lock()?.values().cloned().collect())
    }

    pub fn get(&self, id: &str) -> Result<AdapterEntry> {
        self.lock()?.get(id).cloned().ok_or_else(|| Error::UnknownAdapter(id.to_string()))
    }

    fn save(&self, entries: &BTreeMap<String, AdapterEntry>) -> Result<()> {
        let list: Vec<&AdapterEntry> = entries.values().collect();
        let bytes = serde_json::to_vec_pretty(&list).map_err(|e| Error::Model(e.to_string()))?;
        write_atomically(&self.path, &bytes)
    }
}

/// Write to a sibling temporary file, fsync, then rename over the target.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let io = |e| Error::Io(path.display().to_string(), e);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(io)?;
    }
    let partial = path.with_extension("json.partial");
    let mut file = std::fs::File::create(&partial).map_err(io)?;
    file.write_all(bytes).map_err(io)?;
    file.sync_all().map_err(io)?;
    std::fs::rename(&partial, path).map_err(io)
}

struct Cached {
    adapter: Arc<Adapter>,
    last_used: u64,
}

#[derive(Default)]
struct CacheState {
    entries: HashMap<String, Cached>,
    bytes: usize,
    clock: u64,
    hits: u64,
    loads: u64,
    evictions: u64,
}

/// Counters of an [`AdapterCache`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct CacheStats {
    pub loaded: usize,
    pub bytes: usize,
    pub budget: usize,
    /// Requests served from memory.
    pub hits: u64,
    /// Requests that loaded the adapter from disk (misses).
    pub loads: u64,
    pub evictions: u64,
}

/// Loaded adapters, least recently used evicted first when the next one would exceed the
/// budget. An adapter still in use by a request stays alive (it is an `Arc`) until that
/// request ends, then its memory goes.
pub struct AdapterCache {
    budget: usize,
    device: Device,
    dtype: DType,
    state: Mutex<CacheState>,
    /// One lock per adapter being loaded: a second request for it waits for the first load
    /// instead of reading the files again (single flight).
    loading: Mutex<HashMap<String, Arc<Mutex<()>>>>,
}

impl AdapterCache {
    pub fn new(budget_bytes: usize, device: Device, dtype: DType) -> Self {
        AdapterCache {
            budget: budget_bytes,
            device,
            dtype,
            state: Mutex::new(CacheState::default()),
            loading: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, CacheState>> {
        self.state.lock().map_err(|_| Error::Model("adapter cache lock poisoned".into()))
    }

    /// The adapter if it is in memory (counted as a hit and as used now).
    fn cached(&self, id: &str) -> Result<Option<Arc<Adapter>>> {
        let mut state = self.lock()?;
        state.clock += 1;
        let now = state.clock;
        let Some(cached) = state.entries.get_mut(id) else { return Ok(None) };
        cached.last_used = now;
        let adapter = cached.adapter.clone();
        state.hits += 1;
        Ok(Some(adapter))
    }

    /// The adapter registered as `id`, loading it if it is not in memory. Requests for one
    /// adapter that is not loaded wait for a single load.
    pub fn get(&self, registry: &AdapterRegistry, id: &str, model: &ModelConfig) -> Result<Arc<Adapter>> {
        if let Some(adapter) = self.cached(id)? {
            return Ok(adapter);
        }
        let poisoned = || Error::Model("adapter cache lock poisoned".into());
        let flight = self.loading.lock().map_err(|_| poisoned())?.entry(id.to_string()).or_default().clone();
        let loaded = {
            let _turn = flight.lock().map_err(|_| poisoned())?;
            match self.cached(id)? {
                // Loaded by the request this one waited for.
                Some(adapter) => Ok(adapter),
                None => self.load(registry, id, model),
            }
        };
        if let Ok(mut loading) = self.loading.lock()
            && loading.get(id).is_some_and(|f| Arc::ptr_eq(f, &flight))
            && Arc::strong_count(&flight) == 2
        {
            loading.remove(id);
        }
        loaded
    }

    /// Reads `id` from disk and caches it, evicting the least recently used as needed.
    fn load(&self, registry: &AdapterRegistry, id: &str, model: &ModelConfig) -> Result<Arc<Adapter>> {
        // Load outside the state lock: other requests keep using what is cached meanwhile.
        let entry = registry.get(id)?;
        let adapter = Arc::new(Adapter::load(id, &entry.source.resolve()?, model, &self.device, self.dtype)?);
        if adapter.bytes() > self.budget {
            return Err(Error::Adapter {
                id: id.to_string(),
                reason: format!("needs {} bytes, more than the cache budget of {}", adapter.bytes(), self.budget),
            });
        }
        let mut state = self.lock()?;
        state.loads += 1;
        while state.bytes + adapter.bytes() > self.budget {
            let Some(oldest) = state.entries.iter().min_by_key(|(_, c)| c.last_used).map(|(k, _)| k.clone()) else {
                break;
            };
            if let Some(evicted) = state.entries.remove(&oldest) {
                state.bytes -= evicted.adapter.bytes();
                state.evictions += 1;
                tracing::debug!(adapter = %oldest, "evicted from the adapter cache");
            }
        }
        state.clock += 1;
        let now = state.clock;
        state.bytes += adapter.bytes();
        state.entries.insert(id.to_string(), Cached { adapter: adapter.clone(), last_used: now });
        Ok(adapter)
    }

    /// Drops `id` from memory (after it is unregistered).
    pub fn evict(&self, id: &str) -> Result<()> {
        let mut state = self.lock()?;
        if let Some(evicted) = state.entries.remove(id) {
            state.bytes -= evicted.adapter.bytes();
        }
        Ok(())
    }

    pub fn is_loaded(&self, id: &str) -> bool {
        self.lock().map(|s| s.entries.contains_key(id)).unwrap_or(false)
    }

    pub fn stats(&self) -> CacheStats {
        let state = self.lock();
        match state {
            Ok(s) => CacheStats {
                loaded: s.entries.len(),
                bytes: s.bytes,
                budget: self.budget,
                hits: s.hits,
                loads: s.loads,
                evictions: s.evictions,
            },
            Err(_) => CacheStats { loaded: 0, bytes: 0, budget: self.budget, hits: 0, loads: 0, evictions: 0 },
        }
    }
}
