//! Integration tests of the trainer: one binary (it links once).

mod gradients;
mod influence;
mod peft;
mod provenance;
mod resume;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use tributary_generator::{Architecture, Model};
use tributary_trainer::{DatanetVersion, LoraShape, RunHeader, TokenizedExample, TrainSettings};

pub const VOCAB: usize = 96;
pub const HIDDEN: usize = 32;
pub const INTERMEDIATE: usize = 48;
pub const LAYERS: usize = 2;
pub const HEADS: usize = 4;
pub const KV_HEADS: usize = 2;

/// The real SmolLM2 GGUF, installed by scripts/setup.sh.
pub fn smollm2() -> PathBuf {
    let path = std::env::var_os("TRIBUTARY_LLM").map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models").join(tributary_generator::DEFAULT_MODEL_FILE)
    });
    assert!(path.exists(), "model missing at {}: run scripts/setup.sh", path.display());
    path
}

/// Reproducible random values (uniform, with standard deviation `scale`): every test process
/// draws the same sequence, so a test's models and factors are the same on every run.
pub fn random(shape: &[usize], scale: f64) -> Tensor {
    static STATE: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0x5EED);
    let n: usize = shape.iter().product();
    let values: Vec<f32> = (0..n)
        .map(|_| {
            let mut z = STATE.fetch_add(0x9E37_79B9_7F4A_7C15, std::sync::atomic::Ordering::Relaxed);
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            let unit = ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64;
            ((unit * 2.0 - 1.0) * 3f64.sqrt() * scale) as f32
        })
        .collect();
    Tensor::from_vec(values, shape, &Device::Cpu).unwrap()
}

/// A tiny random model of `arch` in Hugging Face's layout, loaded by the generator.
pub fn tiny_model(dir: &Path, arch: Architecture) -> Model {
    let head_dim = HIDDEN / HEADS;
    let mut tensors: HashMap<String, Tensor> = HashMap::new();
    tensors.insert("model.embed_tokens.weight".into(), random(&[VOCAB, HIDDEN], 0.5));
    tensors.insert("model.norm.weight".into(), (random(&[HIDDEN], 0.1) + 1.0).unwrap());
    tensors.insert("lm_head.weight".into(), random(&[VOCAB, HIDDEN], 0.2));
    for i in 0..LAYERS {
        let p = format!("model.layers.{i}");
        let mut put = |name: &str, shape: &[usize]| {
            tensors.insert(format!("{p}.{name}"), random(shape, 0.15));
        };
        put("self_attn.q_proj.weight", &[HEADS * head_dim, HIDDEN]);
        put("self_attn.k_proj.weight", &[KV_HEADS * head_dim, HIDDEN]);
        put("self_attn.v_proj.weight", &[KV_HEADS * head_dim, HIDDEN]);
        put("self_attn.o_proj.weight", &[HIDDEN, HEADS * head_dim]);
        put("mlp.gate_proj.weight", &[INTERMEDIATE, HIDDEN]);
        put("mlp.up_proj.weight", &[INTERMEDIATE, HIDDEN]);
        put("mlp.down_proj.weight", &[HIDDEN, INTERMEDIATE]);
        if arch == Architecture::Qwen2 {
            put("self_attn.q_proj.bias", &[HEADS * head_dim]);
            put("self_attn.k_proj.bias", &[KV_HEADS * head_dim]);
            put("self_attn.v_proj.bias", &[KV_HEADS * head_dim]);
        }
        tensors.insert(format!("{p}.input_layernorm.weight"), (random(&[HIDDEN], 0.1) + 1.0).unwrap());
        tensors.insert(format!("{p}.post_attention_layernorm.weight"), (random(&[HIDDEN], 0.1) + 1.0).unwrap());
    }
    candle_core::safetensors::save(&tensors, dir.join("model.safetensors")).unwrap();
    let config = serde_json::json!({
        "model_type": match arch { Architecture::Llama => "llama", Architecture::Qwen2 => "qwen2" },
        "vocab_size": VOCAB, "hidden_size": HIDDEN, "intermediate_size": INTERMEDIATE,
        "num_hidden_layers": LAYERS, "num_attention_heads": HEADS, "num_key_value_heads": KV_HEADS,
        "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "max_position_embeddings": 64,
        "tie_word_embeddings": false
    });
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
    Model::from_safetensors(dir, DType::F32, &Device::Cpu).unwrap()
}

/// `n` examples of random tokens: a prompt of 6..12 tokens and a reply of 3..6.
pub fn tiny_examples(n: usize) -> Vec<TokenizedExample> {
    (0..n)
        .map(|i| {
            let prompt = 6 + i % 7;
            let reply = 3 + i % 4;
            let tokens: Vec<u32> = (0..prompt + reply).map(|j| ((i * 31 + j * 17 + 5) % VOCAB) as u32).collect();
            TokenizedExample {
                tokens,
                target_start: prompt,
                hash: blake3::hash(format!("example {i}").as_bytes()).to_hex().to_string(),
                chunk_ids: vec![format!("chunk-{}", i % 3)],
            }
        })
        .collect()
}

pub fn header(examples: &[TokenizedExample], lora: LoraShape, settings: TrainSettings) -> RunHeader {
    RunHeader {
        adapter: "tiny".into(),
        base_model: "tiny-llama".into(),
        base_model_blake3: "00".repeat(32),
        lora,
        settings,
        datanets: vec![DatanetVersion { name: "demo".into(), root: "11".repeat(32), chunks: 3 }],
        examples: examples.iter().map(|e| e.hash.clone()).collect(),
    }
}

pub fn small_lora() -> LoraShape {
    LoraShape {
        rank: 4,
        alpha: 8.0,
        targets: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
            .map(String::from)
            .to_vec(),
    }
}
