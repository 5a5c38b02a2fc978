//! Integration tests of the trainer: one binary (it links once).

mod gradients;
mod influence;
mod peft;
mod provenance;
mod resume;

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use tributary_generator::testing::{TINY, write_tiny_checkpoint};
use tributary_generator::{Architecture, Model};
use tributary_trainer::{DatanetVersion, LoraShape, RunHeader, TokenizedExample, TrainSettings};

pub const VOCAB: usize = TINY.vocab;

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
    write_tiny_checkpoint(dir, arch, TINY, &mut random).unwrap();
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
