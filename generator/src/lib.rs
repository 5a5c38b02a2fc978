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
//!
//! Layers, each using only those below it (no file imports one above it):
//! 1. `error`, `config` (a model's shapes, the projections), `kernels/` (quantized dot
//!    products, low-rank LoRA terms, attention);
//! 2. `adapters/`: PEFT adapters and the batch plans of their deltas, the registry and the
//!    memory-budgeted cache;
//! 3. `runtime/`: the KV cache, linear layers, the fused CPU step, the forward pass, tokenizers
//!    and chat templates;
//! 4. `serving/`: a model with its tokenizer and one request's decoding state (`engine`), the
//!    scheduler, the backend trait, the local and the remote backends;
//! 5. `answers/`: passages, citations and cited answers.

mod adapters;
mod answers;
mod config;
mod error;
mod kernels;
mod runtime;
mod serving;
#[cfg(feature = "testing")]
pub mod testing;

pub use adapters::lora::{Adapter, AdapterConfig, AdapterMix, AdapterSource, BatchAdapters, factor_dtype};
pub use adapters::registry::{AdapterCache, AdapterEntry, AdapterRegistry, CacheStats, validate_adapter_id};
pub use answers::answer::{Answer, AnswerEvent, AnswerRequest, Citation, Influence, answer};
pub use answers::cite::{
    CitationKind, CitationPolicy, CitationStats, CitedSentence, INSTRUCTION, NOT_FOUND, Origin, Source, attribute,
    messages, numbered_messages, numbered_texts, select_sources,
};
pub use answers::evidence::answering_sentence;
pub use answers::facts::{states_facts, unheld_facts};
pub use config::{Architecture, ModelConfig, Projection};
pub use error::{Error, Result};
pub use runtime::chat::{CHATML, ChatMessage, ChatTemplate};
pub use runtime::kv::KvCache;
pub use runtime::model::{Model, Requantize, argmax_rows};
pub use runtime::tokenizer::tokenizer_from_gguf;
pub use serving::backend::{ChatRequest, Generator, StreamEvent};
pub use serving::engine::{Completion, FinishReason, GenerationParams, LocalModel, SamplingParams};
pub use serving::local::{
    DEFAULT_ADAPTER_BUDGET, DEFAULT_MODEL_FILE, LocalGenerator, MODEL_ENV, default_device, locate_model,
    locate_model_in,
};
pub use serving::remote::{RemoteConfig, RemoteGenerator};
pub use serving::scheduler::{SchedulerConfig, SchedulerStats};
