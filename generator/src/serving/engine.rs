//! Text generation on a local model: prompt -> tokens -> sampled continuation, streamed as
//! text pieces, with stop sequences, a token limit and a context limit.

use std::path::Path;

use candle_core::{DType, Device, Tensor};
use candle_transformers::generation::{LogitsProcessor, Sampling};
use tokenizers::Tokenizer;

use crate::adapters::lora::{Adapter, AdapterMix, BatchAdapters};
use crate::error::{Error, Result};
use crate::runtime::chat::{CHATML, ChatMessage, ChatTemplate};
use crate::runtime::kv::KvCache;
use crate::runtime::model::Model;
use crate::runtime::tokenizer::tokenizer_from_gguf;

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
pub(crate) const REPEAT_WINDOW: usize = 64;

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

/// Positions a request's cache can need: its prompt and answer, within the context.
pub(crate) fn positions(prompt: usize, max_tokens: usize, context: usize) -> usize {
    prompt.saturating_add(max_tokens).min(context)
}

/// Prompt tokens run in one piece by [`LocalModel::complete`] (the scheduler's default too).
pub(crate) const PREFILL_CHUNK: usize = 128;

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
    /// The token a chat turn of the assistant ends with (what training appends to a reply).
    turn_end: Option<u32>,
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
        let mut end_tokens: Vec<u32> = ["<|im_end|>", "<|eot_id|>", "<|endoftext|>", "</s>", eos]
            .iter()
            .filter(|t| !t.is_empty())
            .filter_map(|t| tokenizer.token_to_id(t))
            .collect();
        // The chat templates' own end of a turn comes first in that list.
        let turn_end = end_tokens.first().copied();
        end_tokens.sort_unstable();
        end_tokens.dedup();
        Ok(LocalModel { model, tokenizer, template, end_tokens, turn_end, name })
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

    /// See [`Model::set_fused_prompts`].
    pub fn set_fused_prompts(&mut self, enabled: bool) {
        self.model.set_fused_prompts(enabled);
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
        let reply_ids = self.encode(reply)?;
        if reply_ids.is_empty() {
            return Err(Error::InvalidRequest("an empty reply has no likelihood to compare".into()));
        }
        let mut rows = Vec::with_capacity(prompts.len());
        for messages in prompts {
            let mut ids = self.encode(&self.prompt(messages)?)?;
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

    /// `text`'s token ids (no special tokens added: the chat template writes them).
    fn encode(&self, text: &str) -> Result<Vec<u32>> {
        Ok(self.tokenizer.encode_fast(text, false).map_err(|e| Error::Tokenizer(e.to_string()))?.get_ids().to_vec())
    }

    /// The chat template applied to `messages`, as token ids; refused when empty or when it
    /// leaves no room for an answer.
    pub fn encode_prompt(&self, messages: &[ChatMessage]) -> Result<Vec<u32>> {
        let ids = self.encode(&self.prompt(messages)?)?;
        if ids.is_empty() {
            return Err(Error::InvalidRequest("empty prompt".into()));
        }
        let limit = self.context_length();
        if ids.len() >= limit {
            return Err(Error::ContextOverflow { needed: ids.len() + 1, limit });
        }
        Ok(ids)
    }

    /// The PEFT adapter in `dir`, loaded for this model (its device, its dtype).
    pub fn load_adapter(&self, id: &str, dir: &Path) -> Result<Adapter> {
        Adapter::load(id, dir, self.model.config(), self.model.device(), self.model.embedding_table().dtype())
    }

    /// A training row: the prompt `messages` as the chat template writes them, then `reply`
    /// and the token that ends the assistant's turn. Returns the ids and where the reply starts.
    pub fn training_tokens(&self, messages: &[ChatMessage], reply: &str) -> Result<(Vec<u32>, usize)> {
        let mut ids = self.encode_prompt(messages)?;
        let start = ids.len();
        ids.extend(self.encode(reply)?);
        let end = self.turn_end.ok_or_else(|| Error::Tokenizer("no end-of-turn token".into()))?;
        ids.push(end);
        Ok((ids, start))
    }

    /// Whether `token` ends the assistant's turn.
    pub(crate) fn is_end_token(&self, token: u32) -> bool {
        self.end_tokens.contains(&token)
    }

    /// Generates the assistant's reply to `messages` as the only request (what the scheduler
    /// does for each of its rows, with the same arithmetic), calling `on_text` with each new
    /// piece of text (it returns false to stop early).
    pub fn complete(
        &self,
        messages: &[ChatMessage],
        params: &GenerationParams,
        adapters: &AdapterMix,
        on_text: &mut dyn FnMut(&str) -> bool,
    ) -> Result<Completion> {
        let prompt = self.encode_prompt(messages)?;
        let mut sequence = Sequence::new(self, prompt, params.clone(), adapters.clone());
        while sequence.finished().is_none() {
            if sequence.prefilling() {
                sequence.prefill(PREFILL_CHUNK)?;
            } else if let Some((_, error)) = step(&self.model, &mut [&mut sequence]).pop() {
                return Err(error);
            }
            let piece = sequence.pending();
            if !piece.is_empty() {
                if !on_text(piece) {
                    sequence.cancel();
                    break;
                }
                sequence.mark_sent();
            }
        }
        Ok(sequence.completion())
    }
}

/// One request's decoding state: its cache, sampler, detokenizer, and the text held back while
/// it could still be the start of a stop string.
pub(crate) struct Sequence<'m> {
    local: &'m LocalModel,
    prompt: Vec<u32>,
    /// Prompt tokens already in the cache.
    fed: usize,
    cache: KvCache,
    mix: AdapterMix,
    params: GenerationParams,
    sampler: LogitsProcessor,
    detokenizer: Detokenizer<'m>,
    text: String,
    /// Text handed out so far, and text that may be handed out now.
    sent: usize,
    safe: usize,
    hold: usize,
    answer: Vec<u32>,
    /// The token the next decoding step runs.
    next: Option<u32>,
    finish: Option<FinishReason>,
}

type Detokenizer<'t> = tokenizers::DecodeStream<
    't,
    tokenizers::ModelWrapper,
    tokenizers::NormalizerWrapper,
    tokenizers::PreTokenizerWrapper,
    tokenizers::PostProcessorWrapper,
    tokenizers::DecoderWrapper,
>;

impl<'m> Sequence<'m> {
    /// A request for `prompt` (token ids; see [`LocalModel::encode_prompt`]).
    pub(crate) fn new(local: &'m LocalModel, prompt: Vec<u32>, params: GenerationParams, mix: AdapterMix) -> Self {
        let sampling = match (params.sampling.temperature, params.sampling.top_p) {
            (t, _) if t <= 0.0 => Sampling::ArgMax,
            // A nucleus so small it rounds to zero in f32 (candle's precision) keeps only the
            // most likely token; candle would keep none and fail.
            (_, Some(p)) if p as f32 <= 0.0 => Sampling::ArgMax,
            (temperature, Some(p)) if p < 1.0 => Sampling::TopP { p, temperature },
            (temperature, _) => Sampling::All { temperature },
        };
        let hold = params.stop.iter().map(String::len).max().unwrap_or(0);
        let finish = (params.max_tokens == 0).then_some(FinishReason::Length);
        let cache = local.model().cache_for(positions(prompt.len(), params.max_tokens, local.context_length()));
        Sequence {
            local,
            prompt,
            fed: 0,
            cache,
            mix,
            sampler: LogitsProcessor::from_sampling(params.sampling.seed, sampling),
            params,
            detokenizer: local.tokenizer().decode_stream(true),
            text: String::new(),
            sent: 0,
            safe: 0,
            hold,
            answer: Vec::new(),
            next: None,
            finish,
        }
    }

    /// Starts from the first `positions` keys and values of `prefix`, the cache of an earlier
    /// prompt that begins with the same tokens under the same adapters (fewer positions than
    /// the prompt: the last runs, for the first answer token's logits).
    pub(crate) fn reuse(&mut self, prefix: &KvCache, positions: usize) -> Result<()> {
        if positions >= self.prompt.len() || self.fed != 0 {
            return Err(Error::Model(format!("a prefix of {positions} for a prompt of {}", self.prompt.len())));
        }
        self.cache.start_from(prefix, positions)?;
        self.fed = positions;
        Ok(())
    }

    pub(crate) fn prompt(&self) -> &[u32] {
        &self.prompt
    }

    pub(crate) fn mix(&self) -> &AdapterMix {
        &self.mix
    }

    pub(crate) fn cache(&self) -> &KvCache {
        &self.cache
    }

    /// Whether prompt tokens are still to run.
    pub(crate) fn prefilling(&self) -> bool {
        self.finish.is_none() && self.fed < self.prompt.len()
    }

    /// Runs the next piece of the prompt: at most `chunk` tokens, cut at multiples of `chunk`
    /// from its start whatever else runs, so the arithmetic is the same in every batch. After
    /// the last piece, samples the first token. Returns the tokens run.
    pub(crate) fn prefill(&mut self, chunk: usize) -> Result<usize> {
        let model = self.local.model();
        let end = (self.fed + chunk.max(1)).min(self.prompt.len());
        let piece = Tensor::new(&self.prompt[self.fed..end], model.device())?.unsqueeze(0)?;
        let adapters = BatchAdapters::each_row(std::slice::from_ref(&self.mix), model.device())?;
        let ran = end - self.fed;
        if end < self.prompt.len() {
            model.extend(&piece, &mut self.cache, &adapters)?;
            self.fed = end;
        } else {
            let logits = model.prompt_logits(&piece, &mut self.cache, &adapters)?;
            self.fed = end;
            self.accept(&logits.squeeze(0)?)?;
        }
        Ok(ran)
    }

    /// The token the next decoding step runs for this row, if it is decoding.
    pub(crate) fn next_input(&self) -> Option<u32> {
        self.next.filter(|_| self.finish.is_none())
    }

    /// Takes the logits ([vocab]) of the position just run: samples the next token and checks
    /// the end token, the stop strings and the limits.
    pub(crate) fn accept(&mut self, logits: &Tensor) -> Result<()> {
        let mut logits = logits.clone();
        if self.params.repeat_penalty != 1.0 && !self.answer.is_empty() {
            let recent = &self.answer[self.answer.len().saturating_sub(REPEAT_WINDOW)..];
            logits = candle_transformers::utils::apply_repeat_penalty(&logits, self.params.repeat_penalty, recent)?;
        }
        let next = self.sampler.sample(&logits)?;
        self.answer.push(next);
        self.next = None;
        if self.local.is_end_token(next) {
            self.finish = Some(FinishReason::Stop);
            return Ok(());
        }
        if let Some(piece) = self.detokenizer.step(next).map_err(|e| Error::Tokenizer(e.to_string()))? {
            self.text.push_str(&piece);
        }
        if let Some(at) = self.params.stop.iter().filter_map(|s| self.text.find(s.as_str())).min() {
            self.text.truncate(at);
            self.finish = Some(FinishReason::Stop);
            return Ok(());
        }
        self.safe = self.text.floor_char_boundary(self.text.len().saturating_sub(self.hold));
        if self.answer.len() >= self.params.max_tokens || self.cache.len() + 1 > self.local.context_length() {
            self.finish = Some(FinishReason::Length);
        } else {
            self.next = Some(next);
        }
        Ok(())
    }

    /// Why it ended, once it has.
    pub(crate) fn finished(&self) -> Option<FinishReason> {
        self.finish
    }

    /// Ends it because the consumer went away.
    pub(crate) fn cancel(&mut self) {
        self.finish = Some(FinishReason::Cancelled);
    }

    /// Text not handed out yet that may be now (all of it once finished, unless cancelled).
    pub(crate) fn pending(&self) -> &str {
        match self.finish {
            Some(FinishReason::Cancelled) => "",
            Some(_) => &self.text[self.sent.min(self.text.len())..],
            None => &self.text[self.sent.min(self.safe)..self.safe],
        }
    }

    /// Marks [`Sequence::pending`] as handed out.
    pub(crate) fn mark_sent(&mut self) {
        self.sent = self.sent.max(if self.finish.is_some() { self.text.len() } else { self.safe });
    }

    pub(crate) fn completion(&self) -> Completion {
        Completion {
            text: self.text.clone(),
            prompt_tokens: self.prompt.len(),
            completion_tokens: self.answer.len(),
            finish_reason: self.finish.unwrap_or(FinishReason::Length),
        }
    }
}

/// One decoding step for `rows` (each of which has a next input): their logits, accepted.
/// A failed batch is retried row by row, so one bad row fails alone; what failed is returned
/// by row index.
pub(crate) fn step(model: &Model, rows: &mut [&mut Sequence<'_>]) -> Vec<(usize, Error)> {
    let tokens: Vec<u32> = rows.iter().filter_map(|s| s.next_input()).collect();
    if tokens.len() != rows.len() {
        return vec![(0, Error::Model("a row without an input joined a step".into()))];
    }
    let mixes: Vec<AdapterMix> = rows.iter().map(|s| s.mix.clone()).collect();
    let batched = {
        let mut caches: Vec<&mut KvCache> = rows.iter_mut().map(|s| &mut s.cache).collect();
        model.step_rows(&tokens, &mut caches, &mixes)
    };
    let mut failed = Vec::new();
    match batched {
        Ok(logits) => {
            for (r, row) in rows.iter_mut().enumerate() {
                if let Err(e) = logits.get(r).map_err(Error::from).and_then(|l| row.accept(&l)) {
                    failed.push((r, e));
                }
            }
        }
        Err(_) if rows.len() > 1 => {
            for (r, row) in rows.iter_mut().enumerate() {
                let alone = model
                    .step_rows(&tokens[r..=r], &mut [&mut row.cache], &mixes[r..=r])
                    .and_then(|l| Ok(l.get(0)?))
                    .and_then(|l| row.accept(&l));
                if let Err(e) = alone {
                    failed.push((r, e));
                }
            }
        }
        Err(e) => failed.push((0, e)),
    }
    failed
}
