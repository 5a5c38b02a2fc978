//! Text generation on a local model: prompt -> tokens -> sampled continuation, streamed as
//! text pieces, with stop sequences, a token limit and a context limit.

use std::path::Path;

use candle_core::{DType, Device, Tensor};
use candle_transformers::generation::{LogitsProcessor, Sampling};
use tokenizers::Tokenizer;

use crate::chat::{CHATML, ChatMessage, ChatTemplate};
use crate::lora::{Adapter, AdapterMix, BatchAdapters};
use crate::model::Model;
use crate::tokenizer::tokenizer_from_gguf;
use crate::{Error, Result};

/// How the next token is chosen.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SamplingParams {
    /// 0 means greedy (argmax).
    pub temperature: f64,
    /// Nucleus sampling: keep the smallest set of tokens whose probability reaches `top_p`.
    pub top_p: Option<f64>,
    pub seed: u64,
}

impl Default for SamplingParams {
    fn default() -> Self {
        SamplingParams { temperature: 0.0, top_p: None, seed: 0 }
    }
}

/// Limits and stops for one generation.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct GenerationParams {
    pub max_tokens: usize,
    pub sampling: SamplingParams,
    /// Generation ends before the first occurrence of any of these; they are not returned.
    pub stop: Vec<String>,
    /// Divides the logits of tokens the answer already used (over its last 64 tokens);
    /// 1.0 is off. Small models otherwise loop ("[1] [1] [1] ...").
    #[serde(default = "default_repeat_penalty")]
    pub repeat_penalty: f32,
}

fn default_repeat_penalty() -> f32 {
    1.1
}

/// Tokens the repeat penalty looks back over.
const REPEAT_WINDOW: usize = 64;

impl Default for GenerationParams {
    fn default() -> Self {
        GenerationParams {
            max_tokens: 256,
            sampling: SamplingParams::default(),
            stop: Vec::new(),
            repeat_penalty: default_repeat_penalty(),
        }
    }
}

/// Why generation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    /// The model's end-of-turn token or a stop sequence.
    Stop,
    /// `max_tokens` or the context limit.
    Length,
    /// The consumer went away.
    Cancelled,
}

/// A finished generation.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Completion {
    pub text: String,
    pub prompt_tokens: usize,
    pub completion_tokens: usize,
    pub finish_reason: FinishReason,
}

/// A model with its tokenizer and chat template, ready to generate.
#[derive(Debug)]
pub struct LocalModel {
    model: Model,
    tokenizer: Tokenizer,
    template: ChatTemplate,
    /// Tokens that end the assistant's turn.
    end_tokens: Vec<u32>,
    name: String,
}

fn metadata_string(content: &candle_core::quantized::gguf_file::Content, key: &str) -> Option<String> {
    content.metadata.get(key).and_then(|v| v.to_string().ok()).cloned()
}

fn load_tokenizer_json(path: &Path) -> Result<Tokenizer> {
    Tokenizer::from_file(path).map_err(|e| Error::Tokenizer(format!("{}: {e}", path.display())))
}

impl LocalModel {
    /// A GGUF file, or a Hugging Face checkpoint directory (f32 on the CPU, bf16 on a GPU).
    pub fn load(path: &Path, device: &Device) -> Result<Self> {
        if path.is_dir() {
            let dtype = if device.is_cpu() { DType::F32 } else { DType::BF16 };
            Self::from_safetensors(path, dtype, device)
        } else {
            Self::from_gguf(path, device)
        }
    }

    /// A GGUF model. The tokenizer is `tokenizer.json` beside the file when there is one,
    /// otherwise built from the GGUF's own vocabulary; the chat template comes from its metadata.
    pub fn from_gguf(path: &Path, device: &Device) -> Result<Self> {
        let (model, content) = Model::from_gguf(path, device)?;
        let beside = path.with_file_name("tokenizer.json");
        let tokenizer = if beside.is_file() { load_tokenizer_json(&beside)? } else { tokenizer_from_gguf(&content)? };
        let token = |key: &str| -> String {
            content
                .metadata
                .get(key)
                .and_then(|v| v.to_u32().ok())
                .and_then(|id| tokenizer.id_to_token(id))
                .unwrap_or_default()
        };
        let (bos, eos) = (token("tokenizer.ggml.bos_token_id"), token("tokenizer.ggml.eos_token_id"));
        let source = metadata_string(&content, "tokenizer.chat_template").unwrap_or_else(|| CHATML.to_string());
        let template = ChatTemplate::new(&source, &bos, &eos)?;
        let name = metadata_string(&content, "general.name")
            .or_else(|| path.file_stem().map(|s| s.to_string_lossy().into_owned()))
            .unwrap_or_else(|| "model".into());
        Self::assemble(model, tokenizer, template, &eos, name)
    }

    /// A Hugging Face checkpoint directory (`config.json`, `model*.safetensors`,
    /// `tokenizer.json`, and `tokenizer_config.json` for the chat template).
    pub fn from_safetensors(dir: &Path, dtype: DType, device: &Device) -> Result<Self> {
        let model = Model::from_safetensors(dir, dtype, device)?;
        let tokenizer = load_tokenizer_json(&dir.join("tokenizer.json"))?;
        let config: serde_json::Value = std::fs::read(dir.join("tokenizer_config.json"))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        let text = |key: &str| -> String {
            match config.get(key) {
                Some(serde_json::Value::String(s)) => s.clone(),
                Some(v) => v.get("content").and_then(|c| c.as_str()).unwrap_or_default().to_string(),
                None => String::new(),
            }
        };
        let source = std::fs::read_to_string(dir.join("chat_template.jinja"))
            .ok()
            .or_else(|| config.get("chat_template").and_then(|t| t.as_str()).map(str::to_string))
            .unwrap_or_else(|| CHATML.to_string());
        let template = ChatTemplate::new(&source, &text("bos_token"), &text("eos_token"))?;
        let name = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "model".into());
        Self::assemble(model, tokenizer, template, &text("eos_token"), name)
    }

    fn assemble(model: Model, tokenizer: Tokenizer, template: ChatTemplate, eos: &str, name: String) -> Result<Self> {
        let mut end_tokens: Vec<u32> = ["<|im_end|>", "<|endoftext|>", "<|eot_id|>", "</s>", eos]
            .iter()
            .filter(|t| !t.is_empty())
            .filter_map(|t| tokenizer.token_to_id(t))
            .collect();
        end_tokens.sort_unstable();
        end_tokens.dedup();
        Ok(LocalModel { model, tokenizer, template, end_tokens, name })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn model(&self) -> &Model {
        &self.model
    }

    /// See [`Model::set_fused_decode`].
    pub fn set_fused_decode(&mut self, enabled: bool) {
        self.model.set_fused_decode(enabled);
    }

    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    /// Positions the model can attend over (prompt plus answer).
    pub fn context_length(&self) -> usize {
        self.model.config().max_positions
    }

    pub fn count_tokens(&self, text: &str) -> usize {
        self.tokenizer.encode_fast(text, false).map(|e| e.len()).unwrap_or(text.len() / 3)
    }

    /// The chat template applied to `messages`.
    pub fn prompt(&self, messages: &[ChatMessage]) -> Result<String> {
        self.template.render(messages)
    }

    /// Merges one adapter into the base weights (for a hot adapter served alone): later
    /// requests pay no LoRA cost, and must not apply the same adapter again.
    pub fn merge(&mut self, adapter: &Adapter, weight: f32) -> Result<()> {
        self.model.merge_adapter(adapter, weight)
    }

    /// The log-likelihood of `reply` as the assistant's answer to each of `prompts`, in one
    /// batched forward pass (no generation): what ablation-based attribution compares.
    pub fn reply_log_likelihoods(
        &self,
        prompts: &[Vec<ChatMessage>],
        reply: &str,
        adapters: &AdapterMix,
    ) -> Result<Vec<f64>> {
        let encode = |text: &str| -> Result<Vec<u32>> {
            Ok(self.tokenizer.encode_fast(text, false).map_err(|e| Error::Tokenizer(e.to_string()))?.get_ids().to_vec())
        };
        let reply_ids = encode(reply)?;
        if reply_ids.is_empty() {
            return Err(Error::InvalidRequest("an empty reply has no likelihood to compare".into()));
        }
        let mut rows = Vec::with_capacity(prompts.len());
        for messages in prompts {
            let mut ids = encode(&self.prompt(messages)?)?;
            let prefix = ids.len();
            ids.extend_from_slice(&reply_ids);
            if ids.len() > self.context_length() {
                return Err(Error::ContextOverflow { needed: ids.len(), limit: self.context_length() });
            }
            rows.push((ids, prefix));
        }
        let batch_adapters = BatchAdapters::uniform(adapters.clone(), rows.len(), self.model.device())?;
        self.model.continuation_log_likelihoods(&rows, &batch_adapters)
    }

    /// Generates the assistant's reply to `messages`, calling `on_text` with each new piece
    /// of text (it returns false to stop early).
    pub fn complete(
        &self,
        messages: &[ChatMessage],
        params: &GenerationParams,
        adapters: &AdapterMix,
        on_text: &mut dyn FnMut(&str) -> bool,
    ) -> Result<Completion> {
        let prompt = self.prompt(messages)?;
        let encoding =
            self.tokenizer.encode_fast(prompt.as_str(), false).map_err(|e| Error::Tokenizer(e.to_string()))?;
        let prompt_ids = encoding.get_ids().to_vec();
        if prompt_ids.is_empty() {
            return Err(Error::InvalidRequest("empty prompt".into()));
        }
        let limit = self.context_length();
        if prompt_ids.len() >= limit {
            return Err(Error::ContextOverflow { needed: prompt_ids.len() + 1, limit });
        }
        let device = self.model.device();
        let batch_adapters = BatchAdapters::uniform(adapters.clone(), 1, device)?;
        let sampling = match (params.sampling.temperature, params.sampling.top_p) {
            (t, _) if t <= 0.0 => Sampling::ArgMax,
            // A nucleus so small it rounds to zero in f32 (candle's precision) keeps only the
            // most likely token; candle would keep none and fail.
            (_, Some(p)) if p as f32 <= 0.0 => Sampling::ArgMax,
            (temperature, Some(p)) if p < 1.0 => Sampling::TopP { p, temperature },
            (temperature, _) => Sampling::All { temperature },
        };
        let mut sampler = LogitsProcessor::from_sampling(params.sampling.seed, sampling);
        let mut cache = self.model.new_cache();
        let mut decoder = self.tokenizer.decode_stream(true);
        let mut text = String::new();
        // Text already handed to `on_text`; held back while it could be the start of a stop sequence.
        let mut emitted = 0;
        let hold = params.stop.iter().map(String::len).max().unwrap_or(0);
        let mut input = Tensor::new(prompt_ids.as_slice(), device)?.unsqueeze(0)?;
        let mut generated = 0;
        let mut answer_ids: Vec<u32> = Vec::new();
        let finish = loop {
            if generated >= params.max_tokens || cache.len() + input.dim(1)? > limit {
                break FinishReason::Length;
            }
            let mut logits = self.model.forward(&input, &mut cache, &batch_adapters)?.squeeze(0)?;
            if params.repeat_penalty != 1.0 && !answer_ids.is_empty() {
                let recent = &answer_ids[answer_ids.len().saturating_sub(REPEAT_WINDOW)..];
                logits = candle_transformers::utils::apply_repeat_penalty(&logits, params.repeat_penalty, recent)?;
            }
            let next = sampler.sample(&logits)?;
            answer_ids.push(next);
            generated += 1;
            if self.end_tokens.contains(&next) {
                break FinishReason::Stop;
            }
            if let Some(piece) = decoder.step(next).map_err(|e| Error::Tokenizer(e.to_string()))? {
                text.push_str(&piece);
            }
            if let Some(at) = params.stop.iter().filter_map(|s| text.find(s.as_str())).min() {
                text.truncate(at);
                break FinishReason::Stop;
            }
            let safe = text.floor_char_boundary(text.len().saturating_sub(hold));
            if safe > emitted {
                if !on_text(&text[emitted..safe]) {
                    break FinishReason::Cancelled;
                }
                emitted = safe;
            }
            input = Tensor::new(&[next], device)?.unsqueeze(0)?;
        };
        if finish != FinishReason::Cancelled && text.len() > emitted {
            on_text(&text[emitted..]);
        }
        Ok(Completion { text, prompt_tokens: prompt_ids.len(), completion_tokens: generated, finish_reason: finish })
    }
}
