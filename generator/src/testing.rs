//! Test support, built with the `testing` feature: tiny random-weight checkpoints of the
//! supported architectures in Hugging Face's layout, for tests of the forward pass, adapters
//! and training that must not wait for a real model. A random model answers nothing useful;
//! nothing outside tests uses this.

use std::collections::HashMap;
use std::path::Path;

use candle_core::Tensor;

use crate::config::Architecture;
use crate::error::{Error, Result};

/// The dimensions of a tiny model.
#[derive(Debug, Clone, Copy)]
pub struct TinyShape {
    pub vocab: usize,
    pub hidden: usize,
    pub intermediate: usize,
    pub layers: usize,
    pub heads: usize,
    pub kv_heads: usize,
}

/// The shape the generator's and trainer's tests use.
pub const TINY: TinyShape = TinyShape { vocab: 96, hidden: 32, intermediate: 48, layers: 2, heads: 4, kv_heads: 2 };

fn model_error(e: impl std::fmt::Display) -> Error {
    Error::Model(e.to_string())
}

/// Writes `config.json` and `model.safetensors` of a model of `arch` and `shape` into `dir`,
/// drawing each weight from `random(shape, scale)` in a fixed order (so a reproducible
/// `random` gives the same model on every run).
pub fn write_tiny_checkpoint(
    dir: &Path,
    arch: Architecture,
    shape: TinyShape,
    random: &mut dyn FnMut(&[usize], f64) -> Tensor,
) -> Result<()> {
    let TinyShape { vocab, hidden, intermediate, layers, heads, kv_heads } = shape;
    let head_dim = hidden / heads;
    let norm = |random: &mut dyn FnMut(&[usize], f64) -> Tensor| (random(&[hidden], 0.1) + 1.0).map_err(model_error);
    let mut tensors: HashMap<String, Tensor> = HashMap::new();
    tensors.insert("model.embed_tokens.weight".into(), random(&[vocab, hidden], 0.5));
    tensors.insert("model.norm.weight".into(), norm(random)?);
    tensors.insert("lm_head.weight".into(), random(&[vocab, hidden], 0.2));
    for i in 0..layers {
        let p = format!("model.layers.{i}");
        let mut put = |name: &str, shape: &[usize]| {
            tensors.insert(format!("{p}.{name}"), random(shape, 0.15));
        };
        put("self_attn.q_proj.weight", &[heads * head_dim, hidden]);
        put("self_attn.k_proj.weight", &[kv_heads * head_dim, hidden]);
        put("self_attn.v_proj.weight", &[kv_heads * head_dim, hidden]);
        put("self_attn.o_proj.weight", &[hidden, heads * head_dim]);
        put("mlp.gate_proj.weight", &[intermediate, hidden]);
        put("mlp.up_proj.weight", &[intermediate, hidden]);
        put("mlp.down_proj.weight", &[hidden, intermediate]);
        if arch == Architecture::Qwen2 {
            put("self_attn.q_proj.bias", &[heads * head_dim]);
            put("self_attn.k_proj.bias", &[kv_heads * head_dim]);
            put("self_attn.v_proj.bias", &[kv_heads * head_dim]);
        }
        tensors.insert(format!("{p}.input_layernorm.weight"), norm(random)?);
        tensors.insert(format!("{p}.post_attention_layernorm.weight"), norm(random)?);
    }
    let weights = dir.join("model.safetensors");
    candle_core::safetensors::save(&tensors, &weights).map_err(model_error)?;
    let config = serde_json::json!({
        "model_type": match arch { Architecture::Llama => "llama", Architecture::Qwen2 => "qwen2" },
        "vocab_size": vocab, "hidden_size": hidden, "intermediate_size": intermediate,
        "num_hidden_layers": layers, "num_attention_heads": heads, "num_key_value_heads": kv_heads,
        "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "max_position_embeddings": 64,
        "tie_word_embeddings": false, "sliding_window": 64, "max_window_layers": layers,
        "use_sliding_window": false, "hidden_act": "silu"
    });
    let path = dir.join("config.json");
    std::fs::write(&path, config.to_string()).map_err(|e| Error::Io(path.display().to_string(), e))
}
