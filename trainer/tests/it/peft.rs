//! The saved adapter follows PEFT's conventions, and the generator, loading it as it loads any
//! PEFT adapter, computes what the trainer trained: on tiny models and on SmolLM2's GGUF
//! (whose q/k rows the file permutes, which the trainer undoes).

use std::sync::Arc;

use candle_core::{DType, Device};
use tributary_generator::{Adapter, Architecture, BatchAdapters, Model, Requantize, tokenizer_from_gguf};
use tributary_trainer::{FrozenBase, LoraParams, LoraShape, Row, row_log_likelihoods};

use crate::{random, small_lora, smollm2, tiny_model};

/// Factors with a visible effect: B random instead of zero.
fn visible(params: &LoraParams, scale: f64) {
    for (name, var) in params.named() {
        if name.contains("lora_B") {
            var.set(&random(var.dims(), scale)).unwrap();
        }
    }
}

/// The log-likelihoods of `rows` from the generator's forward pass, with `adapter` or without.
fn served(model: &Model, rows: &[(Vec<u32>, usize)], adapter: Option<Adapter>) -> Vec<f64> {
    let adapters = match adapter {
        Some(a) => BatchAdapters::uniform(vec![(Arc::new(a), 1.0)], rows.len(), &Device::Cpu).unwrap(),
        None => BatchAdapters::none(),
    };
    model.continuation_log_likelihoods(rows, &adapters).unwrap()
}

fn trained(base: &FrozenBase<'_>, params: Option<&LoraParams>, rows: &[(Vec<u32>, usize)]) -> Vec<f64> {
    let rows: Vec<Row<'_>> = rows.iter().map(|(t, s)| Row { tokens: t, target_start: *s }).collect();
    row_log_likelihoods(base, params, &rows).unwrap()
}

#[test]
fn saved_adapter_has_peft_names_and_config() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(dir.path(), Architecture::Llama);
    let shape = LoraShape { targets: vec!["q_proj".into(), "down_proj".into()], ..small_lora() };
    let params = LoraParams::init(&shape, model.config(), 1, &Device::Cpu).unwrap();
    let out = dir.path().join("adapter");
    params.save_peft(&out, "HuggingFaceTB/SmolLM2-135M-Instruct").unwrap();
    let config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("adapter_config.json")).unwrap()).unwrap();
    assert_eq!(config["peft_type"], "LORA");
    assert_eq!(config["task_type"], "CAUSAL_LM");
    assert_eq!(config["r"], 4);
    assert_eq!(config["lora_alpha"], 8.0);
    assert_eq!(config["target_modules"], serde_json::json!(["down_proj", "q_proj"]));
    assert_eq!(config["base_model_name_or_path"], "HuggingFaceTB/SmolLM2-135M-Instruct");
    assert_eq!(config["fan_in_fan_out"], false);
    let tensors = candle_core::safetensors::load(out.join("adapter_model.safetensors"), &Device::Cpu).unwrap();
    let mut names: Vec<(&String, Vec<usize>)> = tensors.iter().map(|(n, t)| (n, t.dims().to_vec())).collect();
    names.sort();
    let want = [
        ("base_model.model.model.layers.0.mlp.down_proj.lora_A.weight", vec![4, 48]),
        ("base_model.model.model.layers.0.mlp.down_proj.lora_B.weight", vec![32, 4]),
        ("base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight", vec![4, 32]),
        ("base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight", vec![32, 4]),
        ("base_model.model.model.layers.1.mlp.down_proj.lora_A.weight", vec![4, 48]),
        ("base_model.model.model.layers.1.mlp.down_proj.lora_B.weight", vec![32, 4]),
        ("base_model.model.model.layers.1.self_attn.q_proj.lora_A.weight", vec![4, 32]),
        ("base_model.model.model.layers.1.self_attn.q_proj.lora_B.weight", vec![32, 4]),
    ];
    assert_eq!(names.len(), want.len());
    for ((name, dims), (want_name, want_dims)) in names.iter().zip(want) {
        assert_eq!((name.as_str(), dims), (want_name, &want_dims));
    }
    // A fresh adapter (B = 0) changes nothing, as in PEFT.
    assert!(
        tensors
            .iter()
            .filter(|(n, _)| n.contains("lora_B"))
            .all(|(_, t)| { t.abs().unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap() == 0.0 })
    );
}

#[test]
fn generator_serves_what_was_trained_on_tiny_models() {
    for arch in [Architecture::Llama, Architecture::Qwen2] {
        let dir = tempfile::tempdir().unwrap();
        let model = tiny_model(dir.path(), arch);
        let base = FrozenBase::new(&model).unwrap();
        let params = LoraParams::init(&small_lora(), model.config(), 3, &Device::Cpu).unwrap();
        visible(&params, 0.5);
        let out = dir.path().join("adapter");
        params.save_peft(&out, "tiny").unwrap();
        let adapter = Adapter::load("tiny", &out, model.config(), &Device::Cpu, DType::F32).unwrap();
        let rows = vec![((0..20).map(|i| (i * 7 % 96) as u32).collect::<Vec<_>>(), 12), ((3..14).collect(), 5)];
        let (base_ours, base_theirs) = (trained(&base, None, &rows), served(&model, &rows, None));
        let (ours, theirs) = (trained(&base, Some(&params), &rows), served(&model, &rows, Some(adapter)));
        // Dequantized at every pass instead of kept dense: the same numbers.
        let per_pass = FrozenBase::with_cache_budget(&model, 0).unwrap();
        assert!(base.keeps_dense() && !per_pass.keeps_dense());
        assert_eq!(trained(&per_pass, Some(&params), &rows), ours);
        let effect: f64 = (0..rows.len()).map(|r| (ours[r] - base_ours[r]).abs()).sum();
        assert!(effect > 1.0, "{arch:?}: the adapter changes little: {base_ours:?} -> {ours:?}");
        for r in 0..rows.len() {
            assert!((base_ours[r] - base_theirs[r]).abs() < 1e-3, "{arch:?}: base {base_ours:?} {base_theirs:?}");
            // The generator keeps factors as f16 on the CPU.
            assert!((ours[r] - theirs[r]).abs() < 2e-2, "{arch:?}: trained {ours:?}, served {theirs:?}");
        }
    }
}

#[test]
fn generator_serves_what_was_trained_on_smollm2_gguf() {
    // Weights dequantized in the generator too, so both compute in f32 from the same values
    // (its quantized kernels also quantize activations: close, not equal).
    let (model, content) = Model::from_gguf_with(&smollm2(), &Device::Cpu, Requantize::Dequantize).unwrap();
    let model = &model;
    let tokenizer = tokenizer_from_gguf(&content).unwrap();
    assert!(model.config().rope_interleaved, "the GGUF keeps llama.cpp's q/k order");
    let base = FrozenBase::new(model).unwrap();
    let shape = LoraShape { rank: 8, alpha: 16.0, targets: vec!["q_proj".into(), "k_proj".into(), "v_proj".into()] };
    let params = LoraParams::init(&shape, model.config(), 5, &Device::Cpu).unwrap();
    visible(&params, 0.1);
    let dir = tempfile::tempdir().unwrap();
    params.save_peft(dir.path(), "HuggingFaceTB/SmolLM2-135M-Instruct").unwrap();
    let adapter = Adapter::load("t", dir.path(), model.config(), &Device::Cpu, DType::F32).unwrap();
    let tokens = |s: &str| tokenizer.encode_fast(s, false).unwrap().get_ids().to_vec();
    let prompt = tokens("The Missouri River is the longest river in North America. It rises in the Rocky Mountains");
    let reply = tokens(" of western Montana and flows east and south.");
    let row = [prompt.clone(), reply].concat();
    let rows = vec![(row, prompt.len())];
    let (base_ours, base_theirs) = (trained(&base, None, &rows)[0], served(model, &rows, None)[0]);
    let (ours, theirs) = (trained(&base, Some(&params), &rows)[0], served(model, &rows, Some(adapter))[0]);
    assert!((base_ours - base_theirs).abs() < 1e-2, "base: trainer {base_ours}, generator {base_theirs}");
    let effect = (ours - base_ours).abs();
    assert!(effect > 1.0, "the adapter changes little: {base_ours} -> {ours}");
    assert!((ours - theirs).abs() < 0.05 * effect, "trainer {ours}, generator {theirs} (base {base_ours})");
}
