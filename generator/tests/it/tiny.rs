//! Tiny random-weight models of the real architectures, written as Hugging Face checkpoints,
//! run by our forward pass and by candle-transformers' own implementations.

use std::path::Path;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use tributary_generator::testing::{TINY, write_tiny_checkpoint};
use tributary_generator::{Architecture, BatchAdapters, Model};

pub const VOCAB: usize = TINY.vocab;
pub const LAYERS: usize = TINY.layers;

fn random(shape: &[usize], scale: f64) -> Tensor {
    (Tensor::randn(0f32, 1.0, shape, &Device::Cpu).unwrap() * scale).unwrap()
}

/// Writes config.json and model.safetensors of a random model into `dir`.
pub fn write_tiny(dir: &Path, arch: Architecture) {
    write_tiny_checkpoint(dir, arch, TINY, &mut random).unwrap();
}

pub fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
    (a - b).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap()
}

pub fn tokens(rows: &[&[u32]]) -> Tensor {
    Tensor::new(rows.iter().map(|r| r.to_vec()).collect::<Vec<_>>(), &Device::Cpu).unwrap()
}

/// Our forward pass and candle-transformers' reference agree, over a prompt then decode steps.
#[test]
fn matches_candle_reference_llama_and_qwen2() {
    for arch in [Architecture::Llama, Architecture::Qwen2] {
        let dir = tempfile::tempdir().unwrap();
        write_tiny(dir.path(), arch);
        let device = Device::Cpu;
        let ours = Model::from_safetensors(dir.path(), DType::F32, &device).unwrap();
        assert_eq!(ours.config().architecture, arch);
        let vb = unsafe {
            VarBuilder::from_mmaped_safetensors(&[dir.path().join("model.safetensors")], DType::F32, &device)
        }
        .unwrap();
        let config_json = std::fs::read_to_string(dir.path().join("config.json")).unwrap();
        let prompt = tokens(&[&[1, 5, 9, 33, 2, 70, 4]]);
        let steps = [tokens(&[&[11]]), tokens(&[&[95]]), tokens(&[&[0]])];
        let mut cache = ours.new_cache();
        let mut got = vec![ours.forward(&prompt, &mut cache, &BatchAdapters::none()).unwrap()];
        for step in &steps {
            got.push(ours.forward(step, &mut cache, &BatchAdapters::none()).unwrap());
        }
        assert_eq!(cache.len(), 10);
        let want: Vec<Tensor> = match arch {
            Architecture::Llama => {
                use candle_transformers::models::llama::{Cache, Llama, LlamaConfig};
                let config = serde_json::from_str::<LlamaConfig>(&config_json).unwrap().into_config(false);
                let reference = Llama::load(vb, &config).unwrap();
                let mut cache = Cache::new(true, DType::F32, &config, &device).unwrap();
                let mut out = vec![reference.forward(&prompt, 0, &mut cache).unwrap()];
                for (i, step) in steps.iter().enumerate() {
                    out.push(reference.forward(step, 7 + i, &mut cache).unwrap());
                }
                out
            }
            Architecture::Qwen2 => {
                use candle_transformers::models::qwen2::{Config, ModelForCausalLM};
                let config: Config = serde_json::from_str(&config_json).unwrap();
                let mut reference = ModelForCausalLM::new(&config, vb).unwrap();
                let mut out = vec![reference.forward(&prompt, 0).unwrap().squeeze(1).unwrap()];
                for (i, step) in steps.iter().enumerate() {
                    out.push(reference.forward(step, 7 + i).unwrap().squeeze(1).unwrap());
                }
                out
            }
        };
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            assert_eq!(g.dims(), w.dims(), "{arch:?} step {i}");
            let diff = max_diff(g, w);
            assert!(diff < 1e-4, "{arch:?} step {i}: max |diff| {diff}");
        }
    }
}

#[test]
fn refuses_what_does_not_fit() {
    let dir = tempfile::tempdir().unwrap();
    let err = Model::from_safetensors(dir.path(), DType::F32, &Device::Cpu).unwrap_err().to_string();
    assert!(err.contains("config.json"), "{err}");
    write_tiny(dir.path(), Architecture::Llama);
    let model = Model::from_safetensors(dir.path(), DType::F32, &Device::Cpu).unwrap();
    // Past the context limit: an error, not a panic.
    let mut cache = model.new_cache();
    let long: Vec<u32> = (0..65).map(|i| i % VOCAB as u32).collect();
    let err = model.forward(&tokens(&[&long]), &mut cache, &BatchAdapters::none()).unwrap_err().to_string();
    assert!(err.contains("64"), "{err}");
    std::fs::write(dir.path().join("config.json"), r#"{"model_type":"gpt2"}"#).unwrap();
    assert!(Model::from_safetensors(dir.path(), DType::F32, &Device::Cpu).is_err());
}

/// transformers 5 writes `rope_parameters` instead of `rope_theta`; both read the same, and a
/// scaled RoPE we do not implement is refused.
#[test]
fn reads_transformers5_rope_parameters() {
    let dir = tempfile::tempdir().unwrap();
    write_tiny(dir.path(), Architecture::Qwen2);
    let path = dir.path().join("config.json");
    let mut config: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    config["rope_theta"] = 500_000.0.into();
    std::fs::write(&path, config.to_string()).unwrap();
    let old = Model::from_safetensors(dir.path(), DType::F32, &Device::Cpu).unwrap();
    let object = config.as_object_mut().unwrap();
    object.remove("rope_theta");
    object.insert("rope_parameters".into(), serde_json::json!({"rope_theta": 500000.0, "rope_type": "default"}));
    std::fs::write(&path, config.to_string()).unwrap();
    let new = Model::from_safetensors(dir.path(), DType::F32, &Device::Cpu).unwrap();
    assert_eq!(new.config().rope_theta, 500_000.0);
    let prompt = tokens(&[&[3, 1, 4, 1, 5, 9, 2, 6]]);
    let a = old.forward(&prompt, &mut old.new_cache(), &BatchAdapters::none()).unwrap();
    let b = new.forward(&prompt, &mut new.new_cache(), &BatchAdapters::none()).unwrap();
    assert_eq!(max_diff(&a, &b), 0.0);
    config["rope_parameters"]["rope_type"] = "llama3".into();
    std::fs::write(&path, config.to_string()).unwrap();
    let err = Model::from_safetensors(dir.path(), DType::F32, &Device::Cpu).unwrap_err().to_string();
    assert!(err.contains("llama3"), "{err}");
}

/// Scoring a continuation in one right-padded batch equals scoring each row alone, and equals
/// the sum of log-softmax values the step-by-step forward gives.
#[test]
fn continuation_log_likelihoods_match_step_by_step() {
    let dir = tempfile::tempdir().unwrap();
    write_tiny(dir.path(), Architecture::Llama);
    let model = Model::from_safetensors(dir.path(), DType::F32, &Device::Cpu).unwrap();
    let rows = vec![(vec![1u32, 5, 9, 33, 2, 70, 4, 8], 5usize), (vec![7u32, 3, 11, 40], 2), (vec![9u32, 9, 12], 1)];
    let batched = model.continuation_log_likelihoods(&rows, &BatchAdapters::none()).unwrap();
    for (row, got) in rows.iter().zip(&batched) {
        let alone = model.continuation_log_likelihoods(std::slice::from_ref(row), &BatchAdapters::none()).unwrap()[0];
        assert!((alone - got).abs() < 1e-4, "batched {got} vs alone {alone}");
        let (ids, prefix) = row;
        let mut cache = model.new_cache();
        let mut logits = model.forward(&tokens(&[&ids[..*prefix]]), &mut cache, &BatchAdapters::none()).unwrap();
        let mut want = 0f64;
        for &next in &ids[*prefix..] {
            let log_probs = candle_nn::ops::log_softmax(&logits, candle_core::D::Minus1).unwrap();
            want += log_probs.get(0).unwrap().get(next as usize).unwrap().to_scalar::<f32>().unwrap() as f64;
            logits = model.forward(&tokens(&[&[next]]), &mut cache, &BatchAdapters::none()).unwrap();
        }
        assert!((want - got).abs() < 1e-3, "step by step {want} vs {got}");
        assert!(*got < 0.0);
    }
    assert!(model.continuation_log_likelihoods(&[(vec![1, 2], 2)], &BatchAdapters::none()).is_err());
}

/// Decoding token by token past the KV buffers' first capacity (256 positions, then doubled)
/// gives the logits of one forward over the whole sequence, for a batch of two; a cloned cache
/// is a value of its own (writes to one never show in the other).
#[test]
fn kv_cache_grows_in_place_and_clones_are_independent() {
    let dir = tempfile::tempdir().unwrap();
    write_tiny(dir.path(), Architecture::Llama);
    let config_path = dir.path().join("config.json");
    let mut config: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&config_path).unwrap()).unwrap();
    config["max_position_embeddings"] = 640.into();
    std::fs::write(&config_path, config.to_string()).unwrap();
    let model = Model::from_safetensors(dir.path(), DType::F32, &Device::Cpu).unwrap();
    let none = BatchAdapters::none();
    let row = |r: u32| (0..300u32).map(|i| (i * 7 + r * 13) % VOCAB as u32).collect::<Vec<_>>();
    let (a, b) = (row(0), row(1));
    let whole = model.forward(&tokens(&[&a, &b]), &mut model.new_cache(), &none).unwrap();
    let mut cache = model.new_cache();
    model.forward(&tokens(&[&a[..250], &b[..250]]), &mut cache, &none).unwrap();
    let mut snapshot = cache.clone();
    let step = |cache: &mut tributary_generator::KvCache, i: usize| {
        model.forward(&tokens(&[&[a[i]], &[b[i]]]), cache, &none).unwrap()
    };
    for i in 250..255 {
        step(&mut cache, i);
    }
    // The snapshot, still at 250 positions, takes other tokens; were its buffers shared, this
    // would overwrite position 250 of the original (which has not regrown yet).
    assert_eq!(snapshot.len(), 250);
    let (c, d) = ((a[250] + 1) % VOCAB as u32, (b[250] + 1) % VOCAB as u32);
    let other = model.forward(&tokens(&[&[c], &[d]]), &mut snapshot, &none).unwrap();
    let with = |row: &[u32], last: u32| row[..250].iter().copied().chain([last]).collect::<Vec<_>>();
    let fresh = model.forward(&tokens(&[&with(&a, c), &with(&b, d)]), &mut model.new_cache(), &none).unwrap();
    let diff = max_diff(&other, &fresh);
    assert!(diff < 1e-4, "cloned cache: max |diff| {diff}");
    let mut last = None;
    for i in 255..300 {
        last = Some(step(&mut cache, i));
    }
    assert_eq!(cache.len(), 300);
    let diff = max_diff(&last.unwrap(), &whole);
    assert!(diff < 1e-4, "step by step vs whole: max |diff| {diff}");
}

/// Issue #22, item 5: a generator model named as in the Hugging Face hub (`org/name`, or
/// `org/name/file.gguf`) is found in the local hub cache, as adapters are.
#[test]
fn models_are_found_in_the_hub_cache() {
    let hub = tempfile::tempdir().unwrap();
    let snapshot = |repo: &str, files: &[&str]| {
        let root = hub.path().join(format!("models--{}", repo.replace('/', "--")));
        std::fs::create_dir_all(root.join("refs")).unwrap();
        std::fs::write(root.join("refs/main"), "0123abcd").unwrap();
        let dir = root.join("snapshots/0123abcd");
        std::fs::create_dir_all(&dir).unwrap();
        for f in files {
            std::fs::write(dir.join(f), b"{}").unwrap();
        }
        dir
    };
    let checkpoint = snapshot("org/tiny", &["config.json", "tokenizer.json", "model.safetensors"]);
    let gguf = snapshot("org/quant", &["tiny.Q4_1.gguf"]);
    snapshot("org/partial", &["config.json"]);
    let cache = hf_hub::Cache::new(hub.path().to_path_buf());
    let find = |spec: &str| tributary_generator::locate_model_in(Some(Path::new(spec)), &cache);
    assert_eq!(find("org/tiny").unwrap(), checkpoint);
    assert_eq!(find("org/quant/tiny.Q4_1.gguf").unwrap(), gguf.join("tiny.Q4_1.gguf"));
    for missing in ["org/partial", "org/absent", "org/quant/other.gguf", "../escape"] {
        let err = find(missing).unwrap_err().to_string();
        assert!(err.contains("huggingface-cli download"), "{missing}: {err}");
    }
}
