//! A decoder-only transformer of the Llama family (Llama, SmolLM2, Qwen2): weights from GGUF
//! (quantized, run through candle's quantized matmuls) or from Hugging Face safetensors.
//!
//! candle-transformers has both architectures, but its models keep the KV cache inside the
//! model and offer no hook between a projection and its output. We need both: the cache as a
//! value (one per request, so one loaded base serves many requests) and LoRA deltas added per
//! batch row after each projection (one base, many adapters). So the forward pass is written
//! here, with candle's kernels (quantized matmul, rms_norm, rope, softmax).

use std::collections::HashMap;
use std::path::Path;

use candle_core::quantized::{QMatMul, QTensor, gguf_file};
use candle_core::{D, DType, Device, IndexOp, Tensor};

use crate::adapters::lora::{Adapter, AdapterMix, BatchAdapters};
use crate::config::{Architecture, ModelConfig, Projection};
use crate::error::{Error, Result};
use crate::kernels::qdot::BlockRows;
use crate::runtime::decode::{CpuDecoder, DecodeLayer, ModelParts, StepCaches, block_rows};
use crate::runtime::kv::{KvCache, LayerKv, append_kv};
use crate::runtime::linear::{Linear, Stack};

/// Whether to convert quantized weights when loading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Requantize {
    /// Keep every tensor as stored.
    Keep,
    /// Q4_1, Q5_0 and Q5_1 have only scalar dot products in candle's CPU backend (about 3x
    /// slower than its AVX Q8_0 kernel here): convert them to Q8_0. 8 bits hold a 4/5-bit
    /// block's values almost exactly; memory grows to 8.5 bits a weight.
    SlowToQ8_0,
    /// Every weight to f32: the exact values the file encodes, at four times the memory.
    Dequantize,
}

impl Requantize {
    fn apply(self, tensor: QTensor, device: &Device) -> Result<QTensor> {
        use candle_core::quantized::GgmlDType;
        let slow = matches!(tensor.dtype(), GgmlDType::Q4_1 | GgmlDType::Q5_0 | GgmlDType::Q5_1);
        let fits = tensor.shape().dims().last().is_some_and(|d| d % 32 == 0);
        match self {
            Requantize::SlowToQ8_0 if slow && fits => {
                Ok(QTensor::quantize(&tensor.dequantize(device)?, GgmlDType::Q8_0)?)
            }
            Requantize::Dequantize if tensor.dtype() != GgmlDType::F32 => {
                Ok(QTensor::quantize(&tensor.dequantize(device)?, GgmlDType::F32)?)
            }
            _ => Ok(tensor),
        }
    }
}

#[derive(Debug)]
struct Layer {
    attn_norm: Tensor,
    /// q, k and v, stacked where their weights allow.
    qkv: Stack,
    o: Linear,
    mlp_norm: Tensor,
    /// gate and up, stacked where their weights allow.
    gate_up: Stack,
    down: Linear,
}

/// A layer's projections, as the files name them.
struct LayerWeights {
    attn_norm: Tensor,
    mlp_norm: Tensor,
    q: Linear,
    k: Linear,
    v: Linear,
    o: Linear,
    gate: Linear,
    up: Linear,
    down: Linear,
}

impl Layer {
    /// `tile`: see [`Linear::tiled`].
    fn new(w: LayerWeights, device: &Device, tile: bool) -> Result<Self> {
        Ok(Layer {
            attn_norm: w.attn_norm,
            qkv: Stack::new(vec![(Projection::Q, w.q), (Projection::K, w.k), (Projection::V, w.v)], device, tile)?,
            o: w.o.tiled(device, tile)?,
            mlp_norm: w.mlp_norm,
            gate_up: Stack::new(vec![(Projection::Gate, w.gate), (Projection::Up, w.up)], device, tile)?,
            down: w.down.tiled(device, tile)?,
        })
    }
}

/// A loaded model: weights on one device, immutable.
#[derive(Debug)]
pub struct Model {
    config: ModelConfig,
    embeddings: Tensor,
    layers: Vec<Layer>,
    norm: Tensor,
    lm_head: Linear,
    cos: Tensor,
    sin: Tensor,
    device: Device,
    /// The same weights in their GGUF blocks for the fused CPU decoding step, where they fit.
    decoder: Option<CpuDecoder>,
    /// Whether a decoding step runs fused (on by default where `decoder` exists).
    fused: bool,
    /// Prompts through the fused step too (else candle's ops).
    fused_prompts: bool,
}

fn metadata<'a>(content: &'a gguf_file::Content, key: &str) -> Result<&'a gguf_file::Value> {
    content.metadata.get(key).ok_or_else(|| Error::Model(format!("GGUF metadata has no {key}")))
}

fn gguf_usize(content: &gguf_file::Content, key: &str) -> Result<usize> {
    let value = metadata(content, key)?;
    Ok(value.to_u32().map(|v| v as usize).or_else(|_| value.to_u64().map(|v| v as usize))?)
}

impl Model {
    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Reads a GGUF file (llama or qwen2 architecture), keeping quantized weights quantized.
    /// On the CPU, formats candle has no SIMD kernel for are converted to Q8_0 (see
    /// [`Requantize`]).
    pub fn from_gguf(path: &Path, device: &Device) -> Result<(Self, gguf_file::Content)> {
        let requantize = if device.is_cpu() { Requantize::SlowToQ8_0 } else { Requantize::Keep };
        Self::from_gguf_with(path, device, requantize)
    }

    /// [`Model::from_gguf`] with an explicit choice of weight formats.
    pub fn from_gguf_with(path: &Path, device: &Device, requantize: Requantize) -> Result<(Self, gguf_file::Content)> {
        let mut file = std::fs::File::open(path).map_err(|e| Error::Io(path.display().to_string(), e))?;
        let content = gguf_file::Content::read(&mut file)
            .map_err(|e| Error::Model(format!("{}: not a readable GGUF file: {e}", path.display())))?;
        let arch = metadata(&content, "general.architecture")?.to_string()?.clone();
        let architecture = match arch.as_str() {
            "llama" => Architecture::Llama,
            "qwen2" => Architecture::Qwen2,
            other => return Err(Error::Model(format!("{}: unsupported architecture {other}", path.display()))),
        };
        let num_heads = gguf_usize(&content, &format!("{arch}.attention.head_count"))?;
        let hidden_size = gguf_usize(&content, &format!("{arch}.embedding_length"))?;
        let head_dim = gguf_usize(&content, &format!("{arch}.rope.dimension_count")).unwrap_or(hidden_size / num_heads);
        let embeddings_q = requantize.apply(content.tensor(&mut file, "token_embd.weight", device)?, device)?;
        let vocab_size = embeddings_q.shape().dims()[0];
        let config = ModelConfig {
            architecture,
            vocab_size,
            hidden_size,
            intermediate_size: gguf_usize(&content, &format!("{arch}.feed_forward_length"))?,
            num_layers: gguf_usize(&content, &format!("{arch}.block_count"))?,
            num_heads,
            num_kv_heads: gguf_usize(&content, &format!("{arch}.attention.head_count_kv"))?,
            head_dim,
            rope_theta: metadata(&content, &format!("{arch}.rope.freq_base"))
                .and_then(|v| Ok(v.to_f32()?))
                .unwrap_or(10_000.0),
            rms_norm_eps: metadata(&content, &format!("{arch}.attention.layer_norm_rms_epsilon"))?.to_f32()? as f64,
            max_positions: gguf_usize(&content, &format!("{arch}.context_length")).unwrap_or(4096),
            rope_interleaved: architecture == Architecture::Llama,
        };
        // As stored; `requantize` is applied where a weight becomes candle's.
        let mut read = |name: &str| -> Result<QTensor> {
            content
                .tensor(&mut file, name, device)
                .map_err(|e| Error::Model(format!("{}: tensor {name}: {e}", path.display())))
        };
        // The fused decoding step runs on the CPU, on the blocks as stored.
        let fuse = device.is_cpu() && requantize != Requantize::Dequantize;
        let mut fused_layers = Some(Vec::with_capacity(config.num_layers));
        let qkv_bias = architecture == Architecture::Qwen2;
        // Converted for speed: run the fastest kernels too. Kept as stored: as candle runs them.
        let tile = requantize == Requantize::SlowToQ8_0;
        let mut layers = Vec::with_capacity(config.num_layers);
        for i in 0..config.num_layers {
            let p = format!("blk.{i}");
            let mut blocks: Vec<Option<BlockRows>> = Vec::with_capacity(7);
            let mut linear = |name: &str, bias: bool| -> Result<Linear> {
                let stored = read(&format!("{p}.{name}.weight"))?;
                blocks.push(if fuse { block_rows(&stored)? } else { None });
                let weight = QMatMul::from_qtensor(requantize.apply(stored, device)?)?;
                let bias = if bias { Some(read(&format!("{p}.{name}.bias"))?.dequantize(device)?) } else { None };
                Ok(Linear::new(weight, bias))
            };
            // In `Projection::ALL`'s order, as the fused step keeps them.
            let (q, k, v) = (linear("attn_q", qkv_bias)?, linear("attn_k", qkv_bias)?, linear("attn_v", qkv_bias)?);
            let (o, gate, up, down) = (
                linear("attn_output", false)?,
                linear("ffn_gate", false)?,
                linear("ffn_up", false)?,
                linear("ffn_down", false)?,
            );
            let attn_norm = read(&format!("{p}.attn_norm.weight"))?.dequantize(device)?;
            let mlp_norm = read(&format!("{p}.ffn_norm.weight"))?.dequantize(device)?;
            let weights: Option<Vec<BlockRows>> = blocks.into_iter().collect();
            fused_layers = match (fused_layers, weights.and_then(|w| <[BlockRows; 7]>::try_from(w).ok())) {
                (Some(mut done), Some(weights)) => {
                    let biases = match (&q.bias, &k.bias, &v.bias) {
                        (Some(q), Some(k), Some(v)) => Some([q.to_vec1()?, k.to_vec1()?, v.to_vec1()?]),
                        _ => None,
                    };
                    done.push(DecodeLayer {
                        attn_norm: attn_norm.to_vec1()?,
                        mlp_norm: mlp_norm.to_vec1()?,
                        weights,
                        qkv_bias: biases,
                    });
                    Some(done)
                }
                _ => None,
            };
            let weights = LayerWeights { q, k, v, o, gate, up, down, attn_norm, mlp_norm };
            layers.push(Layer::new(weights, device, tile)?);
        }
        let norm = read("output_norm.weight")?.dequantize(device)?;
        let embeddings = embeddings_q.dequantize(device)?;
        // Tied embeddings (SmolLM2) have no output.weight: the quantized embedding table is the head.
        let head = match content.tensor_infos.contains_key("output.weight") {
            true => requantize.apply(read("output.weight")?, device)?,
            false => embeddings_q,
        };
        let head_blocks = if fuse { block_rows(&head)? } else { None };
        let lm_head = Linear::new(QMatMul::from_qtensor(head)?, None).tiled(device, tile)?;
        let mut model = Self::assemble(config, embeddings, layers, norm, lm_head, device)?;
        if let Some(layers) = fused_layers {
            model.decoder = CpuDecoder::new(&model.config, layers, &model.norm, head_blocks, &model.cos, &model.sin)?;
            model.set_fused_prompts(model.fused_prompts);
        }
        Ok((model, content))
    }

    /// Reads a Hugging Face checkpoint directory: `config.json` and `model.safetensors` (or
    /// sharded `model-*.safetensors`), as `dtype`.
    pub fn from_safetensors(dir: &Path, dtype: DType, device: &Device) -> Result<Self> {
        let config_path = dir.join("config.json");
        let raw = std::fs::read(&config_path).map_err(|e| Error::Io(config_path.display().to_string(), e))?;
        let hf: HfConfig =
            serde_json::from_slice(&raw).map_err(|e| Error::Model(format!("{}: {e}", config_path.display())))?;
        let architecture = match hf.model_type.as_str() {
            "llama" => Architecture::Llama,
            "qwen2" => Architecture::Qwen2,
            other => return Err(Error::Model(format!("{}: unsupported model_type {other}", config_path.display()))),
        };
        // Scaled RoPE (llama3, yarn, ...) changes every position's angles: refuse rather than
        // answer with a silently different model.
        for rope in [&hf.rope_parameters, &hf.rope_scaling].into_iter().flatten() {
            if let Some(kind) = rope.rope_type.as_deref().filter(|k| *k != "default") {
                return Err(Error::Model(format!("{}: unsupported RoPE type {kind}", config_path.display())));
            }
        }
        let rope_theta = hf.rope_theta.or(hf.rope_parameters.as_ref().and_then(|r| r.rope_theta));
        let config = ModelConfig {
            architecture,
            vocab_size: hf.vocab_size,
            hidden_size: hf.hidden_size,
            intermediate_size: hf.intermediate_size,
            num_layers: hf.num_hidden_layers,
            num_heads: hf.num_attention_heads,
            num_kv_heads: hf.num_key_value_heads.unwrap_or(hf.num_attention_heads),
            head_dim: hf.head_dim.unwrap_or(hf.hidden_size / hf.num_attention_heads),
            rope_theta: rope_theta.unwrap_or(10_000.0),
            rms_norm_eps: hf.rms_norm_eps,
            max_positions: hf.max_position_embeddings.unwrap_or(4096),
            rope_interleaved: false,
        };
        let mut files: Vec<_> = std::fs::read_dir(dir)
            .map_err(|e| Error::Io(dir.display().to_string(), e))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.extension().is_some_and(|x| x == "safetensors")
                    && p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("model"))
            })
            .collect();
        files.sort();
        if files.is_empty() {
            return Err(Error::Model(format!("{}: no model*.safetensors", dir.display())));
        }
        let mut tensors = HashMap::new();
        for file in &files {
            let loaded = candle_core::safetensors::load(file, device)
                .map_err(|e| Error::Model(format!("{}: {e}", file.display())))?;
            tensors.extend(loaded);
        }
        let has_head = tensors.contains_key("lm_head.weight");
        let mut take = |name: &str| -> Result<Tensor> {
            let t = tensors.remove(name).ok_or_else(|| Error::Model(format!("{}: no tensor {name}", dir.display())))?;
            Ok(t.to_dtype(dtype)?)
        };
        let qkv_bias = architecture == Architecture::Qwen2;
        let mut layers = Vec::with_capacity(config.num_layers);
        for i in 0..config.num_layers {
            let p = format!("model.layers.{i}");
            let mut linear = |name: &str, bias: bool| -> Result<Linear> {
                let weight = QMatMul::Tensor(take(&format!("{p}.{name}.weight"))?);
                let bias = if bias { Some(take(&format!("{p}.{name}.bias"))?) } else { None };
                Ok(Linear::new(weight, bias))
            };
            let q = linear("self_attn.q_proj", qkv_bias)?;
            let k = linear("self_attn.k_proj", qkv_bias)?;
            let v = linear("self_attn.v_proj", qkv_bias)?;
            let o = linear("self_attn.o_proj", false)?;
            let gate = linear("mlp.gate_proj", false)?;
            let up = linear("mlp.up_proj", false)?;
            let down = linear("mlp.down_proj", false)?;
            let weights = LayerWeights {
                q,
                k,
                v,
                o,
                gate,
                up,
                down,
                attn_norm: take(&format!("{p}.input_layernorm.weight"))?,
                mlp_norm: take(&format!("{p}.post_attention_layernorm.weight"))?,
            };
            layers.push(Layer::new(weights, device, false)?);
        }
        let embeddings = take("model.embed_tokens.weight")?;
        let norm = take("model.norm.weight")?;
        // Tied embeddings (tie_word_embeddings, or no lm_head stored): the embedding table is the head.
        let lm_head = if has_head { take("lm_head.weight")? } else { embeddings.clone() };
        Self::assemble(config, embeddings, layers, norm, Linear::new(QMatMul::Tensor(lm_head), None), device)
    }

    fn assemble(
        config: ModelConfig,
        embeddings: Tensor,
        layers: Vec<Layer>,
        norm: Tensor,
        lm_head: Linear,
        device: &Device,
    ) -> Result<Self> {
        let dtype = embeddings.dtype();
        let half = config.head_dim / 2;
        let inv_freq: Vec<f32> =
            (0..half).map(|i| 1.0 / config.rope_theta.powf(2.0 * i as f32 / config.head_dim as f32)).collect();
        let inv_freq = Tensor::from_vec(inv_freq, (1, half), device)?;
        let positions = Tensor::arange(0u32, config.max_positions as u32, device)?
            .to_dtype(DType::F32)?
            .reshape((config.max_positions, 1))?;
        let angles = positions.matmul(&inv_freq)?;
        Ok(Model {
            cos: angles.cos()?.to_dtype(dtype)?,
            sin: angles.sin()?.to_dtype(dtype)?,
            config,
            embeddings,
            layers,
            norm,
            lm_head,
            device: device.clone(),
            decoder: None,
            fused: true,
            // Where the tiled kernel runs (AVX-512 VNNI): faster than candle's ops there
            // (benches/RESULTS.md); elsewhere the per-row kernels are slower than candle's.
            fused_prompts: crate::kernels::qdot::tiles_available(),
        })
    }

    /// A fresh, empty cache for this model.
    pub fn new_cache(&self) -> KvCache {
        self.cache_for(self.config.max_positions)
    }

    /// A fresh cache whose buffers never grow beyond `positions` (what a request with that
    /// many prompt and answer tokens needs): it holds at most
    /// [`Model::kv_bytes_per_position`] times that.
    pub fn cache_for(&self, positions: usize) -> KvCache {
        let layers = (0..self.config.num_layers).map(|_| LayerKv::default()).collect();
        KvCache { layers, len: 0, max_capacity: positions }
    }

    /// Bytes of keys and values one position takes in a cache of this model.
    pub fn kv_bytes_per_position(&self) -> usize {
        let c = &self.config;
        2 * c.num_layers * c.num_kv_heads * c.head_dim * self.embeddings.dtype().size_in_bytes()
    }

    /// Runs `tokens` ([batch, seq], u32) after what `cache` holds, appends them to it, and
    /// returns the logits of the last position of each row ([batch, vocab], f32). Row `r`
    /// uses the adapters `adapters` assigns it (none: the base model). One position per row on
    /// the CPU runs as the fused step of [`crate::runtime::decode`] where the weights allow it.
    pub fn forward(&self, tokens: &Tensor, cache: &mut KvCache, adapters: &BatchAdapters) -> Result<Tensor> {
        if tokens.dim(1)? > 1
            && let Some(logits) = self.fused_prompt(tokens, cache, adapters, true)?
        {
            return Ok(logits);
        }
        if let Some(decoder) = self.decoder.as_ref().filter(|_| self.fused)
            && let (batch, 1) = tokens.dims2()?
            && tokens.dtype() == DType::U32
            && cache.layers.len() == self.layers.len()
        {
            adapters.check_batch(batch)?;
            if cache.len + 1 > self.config.max_positions {
                return Err(Error::ContextOverflow { needed: cache.len + 1, limit: self.config.max_positions });
            }
            let ids = tokens.flatten_all()?.to_vec1::<u32>()?;
            if let Some(logits) = decoder.step(self, &ids, StepCaches::Batch(cache), adapters)? {
                return Ok(logits);
            }
        }
        let x = self.hidden_states(tokens, cache, adapters)?;
        let seq = x.dim(1)?;
        self.logits(&x.i((.., seq - 1, ..))?.contiguous()?)
    }

    /// One new token per row, each row with a cache of its own (one row each, at any
    /// position): the logits of each row ([rows, vocab], f32). Row `r` runs `mixes[r]`. On the
    /// CPU the rows run as one fused step; elsewhere each row runs alone through candle's ops
    /// (rows at different positions do not fit one batched tensor). Either way a row's
    /// arithmetic does not depend on the other rows: a request gets the same logits alone as in
    /// any batch.
    pub fn step_rows(&self, tokens: &[u32], caches: &mut [&mut KvCache], mixes: &[AdapterMix]) -> Result<Tensor> {
        if tokens.len() != caches.len() || tokens.len() != mixes.len() {
            return Err(Error::Model(format!(
                "{} tokens, {} caches and {} adapter mixes for one step",
                tokens.len(),
                caches.len(),
                mixes.len()
            )));
        }
        if tokens.is_empty() {
            return Ok(Tensor::zeros((0, self.config.vocab_size), DType::F32, &self.device)?);
        }
        if let Some(decoder) = self.decoder.as_ref().filter(|_| self.fused) {
            let adapters = BatchAdapters::each_row(mixes, &self.device)?;
            let rows: Vec<&mut KvCache> = caches.iter_mut().map(|c| &mut **c).collect();
            if let Some(logits) = decoder.step(self, tokens, StepCaches::Rows(rows), &adapters)? {
                return Ok(logits);
            }
        }
        let mut logits = Vec::with_capacity(tokens.len());
        for ((token, cache), mix) in tokens.iter().zip(caches.iter_mut()).zip(mixes) {
            let adapters = BatchAdapters::each_row(std::slice::from_ref(mix), &self.device)?;
            let input = Tensor::new(&[*token], &self.device)?.unsqueeze(0)?;
            logits.push(self.forward(&input, cache, &adapters)?);
        }
        Ok(Tensor::cat(&logits, 0)?)
    }

    /// The last piece of a prompt ([1, seq], any length): [`Model::forward`], except that with
    /// prompts run fused a one-token piece runs as a prompt too, with the same arithmetic as
    /// the pieces before it (a decoding step adds a row's adapter deltas in another order).
    pub fn prompt_logits(&self, tokens: &Tensor, cache: &mut KvCache, adapters: &BatchAdapters) -> Result<Tensor> {
        match self.fused_prompt(tokens, cache, adapters, true)? {
            Some(logits) => Ok(logits),
            None => self.forward(tokens, cache, adapters),
        }
    }

    /// Runs `tokens` ([batch, seq]) after what `cache` holds and appends them to it, without
    /// the logits (a piece of a prompt that more pieces follow).
    pub fn extend(&self, tokens: &Tensor, cache: &mut KvCache, adapters: &BatchAdapters) -> Result<()> {
        if self.fused_prompt(tokens, cache, adapters, false)?.is_some() {
            return Ok(());
        }
        self.hidden_states(tokens, cache, adapters).map(drop)
    }

    /// A prompt of one row (several positions) through the fused step, where it applies: its
    /// positions run as the step's rows, each attending to those before it, on the GGUF's own
    /// blocks. The last position's logits ([1, vocab]) when `logits`, else an empty tensor.
    fn fused_prompt(
        &self,
        tokens: &Tensor,
        cache: &mut KvCache,
        adapters: &BatchAdapters,
        logits: bool,
    ) -> Result<Option<Tensor>> {
        let Some(decoder) = self.decoder.as_ref().filter(|_| self.fused && self.fused_prompts) else {
            return Ok(None);
        };
        let (1, seq) = tokens.dims2()? else { return Ok(None) };
        if seq == 0 || tokens.dtype() != DType::U32 || cache.layers.len() != self.layers.len() {
            return Ok(None);
        }
        let Some(spread) = adapters.spread(seq) else { return Ok(None) };
        if cache.len + seq > self.config.max_positions {
            return Err(Error::ContextOverflow { needed: cache.len + seq, limit: self.config.max_positions });
        }
        let ids = tokens.flatten_all()?.to_vec1::<u32>()?;
        decoder.step(self, &ids, StepCaches::Prompt { cache, logits }, &spread)
    }

    /// Whether decoding steps run fused on the CPU ([`crate::runtime::decode`]): where the weights'
    /// formats allow it, unless turned off.
    pub fn fused_decode(&self) -> bool {
        self.fused && self.decoder.is_some()
    }

    /// Turns the fused CPU decoding step on or off (off: every step through candle's ops), to
    /// compare the two.
    pub fn set_fused_decode(&mut self, enabled: bool) {
        self.fused = enabled;
    }

    /// Whether a prompt's keys and values at a position are the same bits however the prompt
    /// was cut into pieces (prompts run fused: each position's arithmetic is its own), so a
    /// cached prefix of any length can stand in for running it again. Otherwise only prefixes
    /// cut where every prompt is cut (whole pieces from its start) are the same bits.
    pub fn exact_prefixes(&self) -> bool {
        self.decoder.is_some() && self.fused && self.fused_prompts
    }

    /// Turns prompts through the fused step on or off (off: candle's ops, as before), to
    /// compare the two; decoding steps keep [`Model::set_fused_decode`]'s setting.
    pub fn set_fused_prompts(&mut self, enabled: bool) {
        self.fused_prompts = enabled;
        // Their tiled weights are made here, at load, not by the first prompt; and dropped
        // when prompts go through candle's ops.
        if let Some(decoder) = self.decoder.as_mut() {
            decoder.keep_tiles(enabled);
        }
    }

    /// Bytes of the second copy of the weights the fused step reads (0 without one).
    pub fn fused_decode_bytes(&self) -> usize {
        self.decoder.as_ref().map_or(0, CpuDecoder::bytes)
    }

    /// Logits ([n, vocab], f32) of hidden states ([n, hidden]) from [`Model::hidden_states`].
    fn logits(&self, hidden: &Tensor) -> Result<Tensor> {
        let normed = candle_nn::ops::rms_norm(hidden, &self.norm, self.config.rms_norm_eps as f32)?;
        Ok(self.lm_head.forward(&normed)?.to_dtype(DType::F32)?)
    }

    /// The total log-probability the model gives each row's continuation: row `(tokens,
    /// prefix)` scores `tokens[prefix..]` after `tokens[..prefix]`. Rows run as one batch,
    /// right-padded: causal attention keeps the padding out of every real position.
    pub fn continuation_log_likelihoods(
        &self,
        rows: &[(Vec<u32>, usize)],
        adapters: &BatchAdapters,
    ) -> Result<Vec<f64>> {
        let Some(longest) = rows.iter().map(|(t, _)| t.len()).max() else { return Ok(Vec::new()) };
        for (tokens, prefix) in rows {
            if *prefix == 0 || *prefix >= tokens.len() {
                return Err(Error::Model(format!("a row of {} tokens cannot score after {prefix}", tokens.len())));
            }
        }
        let flat: Vec<u32> =
            rows.iter().flat_map(|(t, _)| t.iter().copied().chain(std::iter::repeat_n(0, longest - t.len()))).collect();
        let input = Tensor::from_vec(flat, (rows.len(), longest), &self.device)?;
        let hidden = self.hidden_states(&input, &mut self.new_cache(), adapters)?;
        let mut out = Vec::with_capacity(rows.len());
        for (r, (tokens, prefix)) in rows.iter().enumerate() {
            // Position i predicts token i + 1.
            let positions = hidden.i((r, prefix - 1..tokens.len() - 1, ..))?.contiguous()?;
            let log_probs = candle_nn::ops::log_softmax(&self.logits(&positions)?, D::Minus1)?;
            let targets = Tensor::new(&tokens[*prefix..], &self.device)?.unsqueeze(1)?;
            let picked = log_probs.gather(&targets, 1)?.to_dtype(DType::F64)?;
            out.push(picked.sum_all()?.to_scalar::<f64>()?);
        }
        Ok(out)
    }

    /// The residual stream after the last layer ([batch, seq, hidden], before the final norm).
    fn hidden_states(&self, tokens: &Tensor, cache: &mut KvCache, adapters: &BatchAdapters) -> Result<Tensor> {
        let (batch, seq) = tokens.dims2()?;
        let start = cache.len;
        if start + seq > self.config.max_positions {
            return Err(Error::ContextOverflow { needed: start + seq, limit: self.config.max_positions });
        }
        if cache.layers.len() != self.layers.len() {
            return Err(Error::Model("KV cache belongs to another model".into()));
        }
        adapters.check_batch(batch)?;
        let mut x =
            self.embeddings.embedding(&tokens.flatten_all()?)?.reshape((batch, seq, self.config.hidden_size))?;
        let mask = if seq > 1 { Some(causal_mask(seq, start, &self.device)?) } else { None };
        let cos = self.cos.narrow(0, start, seq)?;
        let sin = self.sin.narrow(0, start, seq)?;
        let eps = self.config.rms_norm_eps as f32;
        for (index, layer) in self.layers.iter().enumerate() {
            let apply = |linear: &Linear, projection: Projection, input: &Tensor| -> Result<Tensor> {
                let base = linear.forward(input)?;
                adapters.add_delta(base, input, index, projection)
            };
            let h = candle_nn::ops::rms_norm(&x, &layer.attn_norm, eps)?;
            let (c, hd) = (&self.config, self.config.head_dim);
            let [q, k, v] = outputs(layer.qkv.forward(&h, |p, base| adapters.add_delta(base, &h, index, p))?)?;
            let q = q.reshape((batch, seq, c.num_heads, hd))?.transpose(1, 2)?;
            let k = k.reshape((batch, seq, c.num_kv_heads, hd))?.transpose(1, 2)?;
            let v = v.reshape((batch, seq, c.num_kv_heads, hd))?.transpose(1, 2)?.contiguous()?;
            let (q, k) = if c.rope_interleaved {
                let (q, k) = (q.contiguous()?, k.contiguous()?);
                (candle_nn::rotary_emb::rope_i(&q, &cos, &sin)?, candle_nn::rotary_emb::rope_i(&k, &cos, &sin)?)
            } else {
                let (q, k) = (q.contiguous()?, k.contiguous()?);
                (candle_nn::rotary_emb::rope(&q, &cos, &sin)?, candle_nn::rotary_emb::rope(&k, &cos, &sin)?)
            };
            let layer_kv = &mut cache.layers[index];
            let k = append_kv(&mut layer_kv.keys, &k, start, cache.max_capacity)?;
            let v = append_kv(&mut layer_kv.values, &v, start, cache.max_capacity)?;
            let attended = attend(&q, &k, &v, mask.as_ref())?;
            x = (apply(&layer.o, Projection::O, &attended)? + &x)?;
            let h = candle_nn::ops::rms_norm(&x, &layer.mlp_norm, eps)?;
            let [gate, up] = outputs(layer.gate_up.forward(&h, |p, base| adapters.add_delta(base, &h, index, p))?)?;
            let gate = candle_nn::ops::silu(&gate)?;
            x = (apply(&layer.down, Projection::Down, &(gate * up)?)? + &x)?;
        }
        cache.len = start + seq;
        Ok(x)
    }

    /// The dense weight of one projection as an (out, in) f32 matrix: to merge an adapter in,
    /// or to test the unmerged path against a merged one.
    pub fn projection_weight(&self, layer: usize, projection: Projection) -> Result<Tensor> {
        let layer = self.layers.get(layer).ok_or_else(|| Error::Model(format!("no layer {layer}")))?;
        match projection {
            Projection::Q | Projection::K | Projection::V => layer.qkv.weight(projection, &self.device),
            Projection::Gate | Projection::Up => layer.gate_up.weight(projection, &self.device),
            Projection::O => layer.o.dense_weight(&self.device),
            Projection::Down => layer.down.dense_weight(&self.device),
        }
    }

    /// `projection`'s bias in `layer` (Qwen2's q/k/v have one), as the forward pass adds it.
    pub fn projection_bias(&self, layer: usize, projection: Projection) -> Result<Option<Tensor>> {
        let layer = self.layers.get(layer).ok_or_else(|| Error::Model(format!("no layer {layer}")))?;
        match projection {
            Projection::Q | Projection::K | Projection::V => layer.qkv.bias(projection),
            Projection::Gate | Projection::Up => layer.gate_up.bias(projection),
            Projection::O => Ok(layer.o.bias.clone()),
            Projection::Down => Ok(layer.down.bias.clone()),
        }
    }

    /// The token embedding table, (vocab, hidden), in the model's dtype.
    pub fn embedding_table(&self) -> &Tensor {
        &self.embeddings
    }

    /// `layer`'s two RMS norm weights: before attention and before the MLP.
    pub fn layer_norms(&self, layer: usize) -> Result<(&Tensor, &Tensor)> {
        let layer = self.layers.get(layer).ok_or_else(|| Error::Model(format!("no layer {layer}")))?;
        Ok((&layer.attn_norm, &layer.mlp_norm))
    }

    /// The RMS norm weight after the last layer.
    pub fn final_norm(&self) -> &Tensor {
        &self.norm
    }

    /// The output head as a dense (vocab, hidden) f32 matrix (the embedding table where tied).
    pub fn head_weight(&self) -> Result<Tensor> {
        self.lm_head.dense_weight(&self.device)
    }

    /// Replaces one projection's weight with a dense (out, in) matrix (an adapter merged in).
    pub fn set_projection_weight(&mut self, layer: usize, projection: Projection, weight: Tensor) -> Result<()> {
        let weight = QMatMul::Tensor(weight.to_dtype(self.embeddings.dtype())?);
        // Its blocks would now be another model's weights.
        self.decoder = None;
        let device = self.device.clone();
        let layer = self.layers.get_mut(layer).ok_or_else(|| Error::Model(format!("no layer {layer}")))?;
        match projection {
            Projection::Q | Projection::K | Projection::V => layer.qkv.set_weight(projection, weight, &device)?,
            Projection::Gate | Projection::Up => layer.gate_up.set_weight(projection, weight, &device)?,
            Projection::O => layer.o.set_weight(weight),
            Projection::Down => layer.down.set_weight(weight),
        }
        Ok(())
    }

    /// Adds `weight` times `adapter`'s deltas into the base weights (they become dense).
    pub fn merge_adapter(&mut self, adapter: &Adapter, weight: f32) -> Result<()> {
        for layer in 0..self.config.num_layers {
            for projection in Projection::ALL {
                if let Some(delta) = adapter.delta_weight(layer, projection)? {
                    let merged = (self.projection_weight(layer, projection)? + (delta * weight as f64)?)?;
                    self.set_projection_weight(layer, projection, merged)?;
                }
            }
        }
        Ok(())
    }
}

/// A stack's outputs as the `N` projections it was built with.
impl ModelParts for Model {
    fn config(&self) -> &ModelConfig {
        &self.config
    }

    fn embeddings(&self) -> &Tensor {
        &self.embeddings
    }

    fn final_logits(&self, hidden: &Tensor) -> Result<Tensor> {
        self.logits(hidden)
    }
}

fn outputs<const N: usize>(outputs: Vec<Tensor>) -> Result<[Tensor; N]> {
    outputs.try_into().map_err(|v: Vec<Tensor>| Error::Model(format!("a stack of {N} gave {} outputs", v.len())))
}

/// Softmax attention of the queries `q` ([b, heads, seq, head dim], rotated) over the keys
/// and values `k`, `v` ([b, kv heads, start + seq, head dim]), each query seeing the positions
/// up to its own (`mask`, for `seq > 1`): [b, seq, heads * head dim].
fn attend(q: &Tensor, k: &Tensor, v: &Tensor, mask: Option<&Tensor>) -> Result<Tensor> {
    let (batch, heads, seq, head_dim) = q.dims4()?;
    let kv_heads = k.dim(1)?;
    let groups = heads / kv_heads;
    let scale = 1.0 / (head_dim as f64).sqrt();
    if seq == 1 {
        // One new token: the query heads that share a key/value head become rows of one
        // matmul against it ([batch, kv heads, groups, head dim]), so the keys and values
        // are not copied once per query head (repeat_kv) at every step.
        let q = q.reshape((batch, kv_heads, groups, head_dim))?;
        let scores = (q.matmul(&k.t()?)? * scale)?;
        let probs = candle_nn::ops::softmax_last_dim(&scores)?;
        return Ok(probs.matmul(v)?.reshape((batch, 1, heads * head_dim))?);
    }
    let k = candle_transformers::utils::repeat_kv(k.clone(), groups)?;
    let v = candle_transformers::utils::repeat_kv(v.clone(), groups)?.contiguous()?;
    let mut scores = (q.matmul(&k.t()?)? * scale)?;
    if let Some(mask) = mask {
        scores = scores.broadcast_add(&mask.to_dtype(scores.dtype())?)?;
    }
    let probs = candle_nn::ops::softmax_last_dim(&scores)?;
    Ok(probs.matmul(&v)?.transpose(1, 2)?.reshape((batch, seq, heads * head_dim))?)
}

/// Additive causal mask [seq, start + seq]: 0 where a query may attend, -inf after it.
fn causal_mask(seq: usize, start: usize, device: &Device) -> Result<Tensor> {
    let total = start + seq;
    let values: Vec<f32> =
        (0..seq).flat_map(|i| (0..total).map(move |j| if j > start + i { f32::NEG_INFINITY } else { 0.0 })).collect();
    Ok(Tensor::from_vec(values, (seq, total), device)?)
}

/// The fields of a Hugging Face `config.json` that the forward pass needs.
#[derive(Debug, serde::Deserialize)]
struct HfConfig {
    model_type: String,
    vocab_size: usize,
    hidden_size: usize,
    intermediate_size: usize,
    num_hidden_layers: usize,
    num_attention_heads: usize,
    num_key_value_heads: Option<usize>,
    head_dim: Option<usize>,
    rope_theta: Option<f32>,
    /// Where transformers 5 writes rope_theta (and the scaling type).
    rope_parameters: Option<RopeParameters>,
    /// Where transformers 4 writes the scaling type.
    rope_scaling: Option<RopeParameters>,
    rms_norm_eps: f64,
    max_position_embeddings: Option<usize>,
}

#[derive(Debug, serde::Deserialize)]
struct RopeParameters {
    rope_theta: Option<f32>,
    rope_type: Option<String>,
}

/// Greedy argmax of each row of [batch, vocab] logits.
pub fn argmax_rows(logits: &Tensor) -> Result<Vec<u32>> {
    Ok(logits.argmax(D::Minus1)?.to_vec1::<u32>()?)
}
