//! The fused CPU decoding step against candle's ops, on tiny random GGUF models (Q4_1 layers,
//! Q8_0 embeddings, as the default model ships), with and without adapters, batched.

use std::path::Path;
use std::sync::Arc;

use candle_core::quantized::{GgmlDType, QTensor, gguf_file};
use candle_core::{DType, Device, Tensor};
use tributary_generator::{Adapter, AdapterMix, Architecture, BatchAdapters, Model, Projection, Requantize};

use crate::lora::write_adapter;
use crate::tiny::{LAYERS, max_diff, tokens};

// Widths are whole 32-value blocks.
const VOCAB: usize = 96;
const HIDDEN: usize = 64;
const INTERMEDIATE: usize = 96;
const HEADS: usize = 4;
const KV_HEADS: usize = 2;

/// Fixed pseudo-random values in [-scale, scale): the two paths sum in different orders, so a
/// value at an int8 rounding boundary could round either way; with fixed weights the outcome is
/// the same every run.
fn pseudo(n: usize, seed: u32, scale: f32) -> Vec<f32> {
    (0..n as u32)
        .map(|i| {
            let h = (i ^ seed.wrapping_mul(0x9E37_79B9)).wrapping_mul(2_654_435_761).rotate_left(13) ^ seed;
            (h.wrapping_mul(2_246_822_519) >> 8) as f32 / (1 << 23) as f32 * 2.0 * scale - scale
        })
        .collect()
}

fn quantized((rows, cols): (usize, usize), scale: f32, dtype: GgmlDType, seed: u32) -> QTensor {
    let t = Tensor::from_vec(pseudo(rows * cols, seed, scale), (rows, cols), &Device::Cpu).unwrap();
    QTensor::quantize(&t, dtype).unwrap()
}

fn norm_weight(n: usize, seed: u32) -> QTensor {
    let values: Vec<f32> = pseudo(n, seed, 0.2).iter().map(|v| v + 1.0).collect();
    QTensor::quantize(&Tensor::from_vec(values, n, &Device::Cpu).unwrap(), GgmlDType::F32).unwrap()
}

/// A PEFT adapter of `rank` on `modules`, with fixed values (see [`pseudo`]).
fn write_fixed_adapter(dir: &Path, model: &Model, rank: usize, modules: &[Projection], seed: u32) {
    std::fs::create_dir_all(dir).unwrap();
    let mut tensors = std::collections::HashMap::new();
    for layer in 0..LAYERS {
        for (m, &module) in modules.iter().enumerate() {
            let (input, output) = module.shape(model.config());
            let block = if matches!(module, Projection::Gate | Projection::Up | Projection::Down) {
                "mlp"
            } else {
                "self_attn"
            };
            let p = format!("base_model.model.model.layers.{layer}.{block}.{}", module.peft_name());
            let seed = seed + 100 * layer as u32 + 10 * m as u32;
            let a = Tensor::from_vec(pseudo(rank * input, seed, 0.1), (rank, input), &Device::Cpu).unwrap();
            let b = Tensor::from_vec(pseudo(output * rank, seed + 1, 0.1), (output, rank), &Device::Cpu).unwrap();
            tensors.insert(format!("{p}.lora_A.weight"), a);
            tensors.insert(format!("{p}.lora_B.weight"), b);
        }
    }
    candle_core::safetensors::save(&tensors, dir.join("adapter_model.safetensors")).unwrap();
    let names: Vec<&str> = modules.iter().map(|m| m.peft_name()).collect();
    let config = serde_json::json!({"peft_type": "LORA", "r": rank, "lora_alpha": 2 * rank, "target_modules": names});
    std::fs::write(dir.join("adapter_config.json"), config.to_string()).unwrap();
}

/// Writes a random model of `arch` as GGUF.
fn write_tiny_gguf(path: &Path, arch: Architecture) {
    let name = match arch {
        Architecture::Llama => "llama",
        Architecture::Qwen2 => "qwen2",
    };
    let head_dim = HIDDEN / HEADS;
    let mut tensors: Vec<(String, QTensor)> = vec![
        ("token_embd.weight".into(), quantized((VOCAB, HIDDEN), 0.5, GgmlDType::Q8_0, 1)),
        ("output_norm.weight".into(), norm_weight(HIDDEN, 10)),
        ("output.weight".into(), quantized((VOCAB, HIDDEN), 0.2, GgmlDType::Q8_0, 2)),
    ];
    for i in 0..LAYERS {
        let mut put = |n: &str, t: QTensor| tensors.push((format!("blk.{i}.{n}"), t));
        put("attn_q.weight", quantized((HEADS * head_dim, HIDDEN), 0.15, GgmlDType::Q4_1, 3 + 20 * i as u32));
        put("attn_k.weight", quantized((KV_HEADS * head_dim, HIDDEN), 0.15, GgmlDType::Q4_1, 4 + 20 * i as u32));
        put("attn_v.weight", quantized((KV_HEADS * head_dim, HIDDEN), 0.15, GgmlDType::Q4_1, 5 + 20 * i as u32));
        put("attn_output.weight", quantized((HIDDEN, HEADS * head_dim), 0.15, GgmlDType::Q4_1, 6 + 20 * i as u32));
        put("ffn_gate.weight", quantized((INTERMEDIATE, HIDDEN), 0.15, GgmlDType::Q4_1, 7 + 20 * i as u32));
        put("ffn_up.weight", quantized((INTERMEDIATE, HIDDEN), 0.15, GgmlDType::Q4_1, 8 + 20 * i as u32));
        put("ffn_down.weight", quantized((HIDDEN, INTERMEDIATE), 0.15, GgmlDType::Q4_1, 9 + 20 * i as u32));
        put("attn_norm.weight", norm_weight(HIDDEN, 11 + 20 * i as u32));
        put("ffn_norm.weight", norm_weight(HIDDEN, 12 + 20 * i as u32));
        if arch == Architecture::Qwen2 {
            put("attn_q.bias", norm_weight(HEADS * head_dim, 13 + 20 * i as u32));
            put("attn_k.bias", norm_weight(KV_HEADS * head_dim, 14 + 20 * i as u32));
            put("attn_v.bias", norm_weight(KV_HEADS * head_dim, 15 + 20 * i as u32));
        }
    }
    let u32_value = |v: usize| gguf_file::Value::U32(v as u32);
    let metadata: Vec<(String, gguf_file::Value)> = vec![
        ("general.architecture".into(), gguf_file::Value::String(name.into())),
        (format!("{name}.attention.head_count"), u32_value(HEADS)),
        (format!("{name}.attention.head_count_kv"), u32_value(KV_HEADS)),
        (format!("{name}.embedding_length"), u32_value(HIDDEN)),
        (format!("{name}.feed_forward_length"), u32_value(INTERMEDIATE)),
        (format!("{name}.block_count"), u32_value(LAYERS)),
        (format!("{name}.context_length"), u32_value(64)),
        (format!("{name}.rope.freq_base"), gguf_file::Value::F32(10_000.0)),
        (format!("{name}.attention.layer_norm_rms_epsilon"), gguf_file::Value::F32(1e-5)),
    ];
    let metadata: Vec<(&str, &gguf_file::Value)> = metadata.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let tensors: Vec<(&str, &QTensor)> = tensors.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let mut file = std::fs::File::create(path).unwrap();
    gguf_file::write(&mut file, &metadata, &tensors).unwrap();
}

/// Logits of a prompt (candle's ops) and then of `steps` single-token steps, [rows, 1 + steps, vocab].
fn run(model: &Model, rows: &[&[u32]], adapters: &BatchAdapters, steps: usize) -> Tensor {
    let mut cache = model.new_cache();
    let mut all = vec![model.forward(&tokens(rows), &mut cache, adapters).unwrap()];
    for step in 0..steps {
        let next: Vec<Vec<u32>> = (0..rows.len()).map(|r| vec![(7 + 13 * step + r) as u32 % VOCAB as u32]).collect();
        let next: Vec<&[u32]> = next.iter().map(|r| r.as_slice()).collect();
        all.push(model.forward(&tokens(&next), &mut cache, adapters).unwrap());
    }
    Tensor::stack(&all, 1).unwrap()
}

#[test]
fn fused_steps_equal_candles_ops_with_adapters_in_batches() {
    for arch in [Architecture::Llama, Architecture::Qwen2] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tiny.gguf");
        write_tiny_gguf(&path, arch);
        // As stored: both paths multiply the same Q4_1 blocks by the same int8 activations.
        let (mut model, _) = Model::from_gguf_with(&path, &Device::Cpu, Requantize::Keep).unwrap();
        assert!(model.fused_decode(), "{arch:?}: Q4_1 and Q8_0 weights run fused");
        assert!(model.fused_decode_bytes() > 0);
        write_fixed_adapter(&dir.path().join("a1"), &model, 4, &Projection::ALL, 1000);
        write_fixed_adapter(&dir.path().join("a2"), &model, 8, &[Projection::K, Projection::O, Projection::Up], 2000);
        let load = |name: &str| {
            Arc::new(Adapter::load(name, &dir.path().join(name), model.config(), &Device::Cpu, DType::F32).unwrap())
        };
        let (a1, a2) = (load("a1"), load("a2"));
        let rows: [&[u32]; 3] = [&[1, 2, 3, 4], &[9, 8, 7, 6], &[40, 41, 42, 43]];
        let mixes: Vec<AdapterMix> = vec![vec![(a1.clone(), 1.0)], vec![], vec![(a1.clone(), 0.3), (a2.clone(), 0.7)]];
        let plans = [
            ("base", BatchAdapters::none()),
            ("uniform", BatchAdapters::uniform(vec![(a2.clone(), 1.0)], 3, &Device::Cpu).unwrap()),
            // Rows with different adapters: each row's deltas added by the thread that owns it.
            ("per row", BatchAdapters::per_row(&mixes, &Device::Cpu).unwrap()),
        ];
        for (name, adapters) in &plans {
            model.set_fused_decode(true);
            let fused = run(&model, &rows, adapters, 5);
            model.set_fused_decode(false);
            let ops = run(&model, &rows, adapters, 5);
            let diff = max_diff(&fused, &ops);
            let scale = max_diff(&ops, &ops.zeros_like().unwrap());
            let values = ops.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            assert!(scale > 1.0 && values.iter().all(|v| v.is_finite()), "{arch:?} {name}: logits {scale}");
            assert!(diff <= 1e-3 * scale.max(1.0), "{arch:?} {name}: max |diff| {diff} (logits up to {scale})");
            // A step that must change the answer does: adapters matter in the fused step.
            if *name != "base" {
                model.set_fused_decode(true);
                let without = run(&model, &rows, &BatchAdapters::none(), 5);
                assert!(max_diff(&fused, &without) > 1e-3, "{arch:?} {name}: adapters had no effect");
            }
        }
        // A single row decoded from an empty cache (a one-token prompt) and a cache copied
        // mid-answer go on exactly as the original.
        model.set_fused_decode(true);
        let mut cache = model.new_cache();
        model.forward(&tokens(&[&[5]]), &mut cache, &BatchAdapters::none()).unwrap();
        let mut copy = cache.clone();
        let a = model.forward(&tokens(&[&[6]]), &mut cache, &BatchAdapters::none()).unwrap();
        let b = model.forward(&tokens(&[&[6]]), &mut copy, &BatchAdapters::none()).unwrap();
        assert_eq!(max_diff(&a, &b), 0.0);
        assert_eq!(cache.len(), 2);
        model.set_fused_decode(false);
        let mut cache = model.new_cache();
        model.forward(&tokens(&[&[5]]), &mut cache, &BatchAdapters::none()).unwrap();
        let c = model.forward(&tokens(&[&[6]]), &mut cache, &BatchAdapters::none()).unwrap();
        assert!(max_diff(&a, &c) <= 1e-3 * max_diff(&c, &c.zeros_like().unwrap()).max(1.0));
    }
}

#[test]
fn fused_steps_refuse_what_candle_refuses() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tiny.gguf");
    write_tiny_gguf(&path, Architecture::Llama);
    let (mut model, _) = Model::from_gguf(&path, &Device::Cpu).unwrap();
    assert!(model.fused_decode());
    // A token outside the vocabulary is an error, not a panic, and the cache is unchanged.
    let mut cache = model.new_cache();
    model.forward(&tokens(&[&[1, 2]]), &mut cache, &BatchAdapters::none()).unwrap();
    assert!(model.forward(&tokens(&[&[VOCAB as u32]]), &mut cache, &BatchAdapters::none()).is_err());
    assert_eq!(cache.len(), 2);
    // Past the context length.
    let mut cache = model.new_cache();
    let prompt: Vec<u32> = (0..64).map(|i| i % VOCAB as u32).collect();
    model.forward(&tokens(&[&prompt]), &mut cache, &BatchAdapters::none()).unwrap();
    let overflow = model.forward(&tokens(&[&[1]]), &mut cache, &BatchAdapters::none());
    assert!(matches!(overflow, Err(tributary_generator::Error::ContextOverflow { .. })), "{overflow:?}");
    // Merging an adapter into the weights turns the fused step off (its blocks are the old weights).
    write_adapter(&dir.path().join("a"), &model, 4, &[Projection::Q]);
    let adapter = Adapter::load("a", &dir.path().join("a"), model.config(), &Device::Cpu, DType::F32).unwrap();
    model.merge_adapter(&adapter, 1.0).unwrap();
    assert!(!model.fused_decode());
}

/// Requests decoding at the same time (each step then takes a share of the threads) get what
/// each gets alone.
#[test]
fn concurrent_steps_equal_steps_alone() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tiny.gguf");
    write_tiny_gguf(&path, Architecture::Llama);
    let (model, _) = Model::from_gguf_with(&path, &Device::Cpu, Requantize::Keep).unwrap();
    let prompts: Vec<Vec<u32>> = (0..4u32).map(|i| vec![1 + i, 2 + i, 3 + i]).collect();
    let alone: Vec<Tensor> = prompts.iter().map(|p| run(&model, &[p], &BatchAdapters::none(), 6)).collect();
    let together: Vec<Tensor> = std::thread::scope(|scope| {
        let handles: Vec<_> =
            prompts.iter().map(|p| scope.spawn(|| run(&model, &[p], &BatchAdapters::none(), 6))).collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (i, (a, t)) in alone.iter().zip(&together).enumerate() {
        assert!(max_diff(a, t) <= 1e-3 * max_diff(a, &a.zeros_like().unwrap()).max(1.0), "request {i}");
    }
}

/// Prompts through the fused step (a prompt's positions as the step's rows, each attending to
/// those before it), in pieces, then decoding steps: the logits of candle's ops, within the
/// int8 rounding both share, with and without an adapter; and where the pieces are cut
/// changes nothing.
#[test]
fn fused_prompts_equal_candles_ops_in_pieces() {
    for arch in [Architecture::Llama, Architecture::Qwen2] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tiny.gguf");
        write_tiny_gguf(&path, arch);
        let (mut model, _) = Model::from_gguf_with(&path, &Device::Cpu, Requantize::Keep).unwrap();
        write_fixed_adapter(&dir.path().join("a"), &model, 4, &Projection::ALL, 3000);
        let adapter =
            Arc::new(Adapter::load("a", &dir.path().join("a"), model.config(), &Device::Cpu, DType::F32).unwrap());
        let prompt: Vec<u32> = (0..20u32).map(|i| (i * 7 + 3) % VOCAB as u32).collect();
        for (name, mix) in [("base", AdapterMix::new()), ("adapter", vec![(adapter.clone(), 1.0)])] {
            let adapters = BatchAdapters::uniform(mix, 1, &Device::Cpu).unwrap();
            let run_in = |model: &Model, cut: usize| -> Tensor {
                let mut cache = model.new_cache();
                model.extend(&tokens(&[&prompt[..cut]]), &mut cache, &adapters).unwrap();
                let mut all = vec![model.forward(&tokens(&[&prompt[cut..]]), &mut cache, &adapters).unwrap()];
                assert_eq!(cache.len(), prompt.len());
                for step in 0..4u32 {
                    all.push(
                        model.forward(&tokens(&[&[(5 + step * 11) % VOCAB as u32]]), &mut cache, &adapters).unwrap(),
                    );
                }
                Tensor::cat(&all, 0).unwrap()
            };
            model.set_fused_prompts(true);
            let fused = run_in(&model, 7);
            let fused_other_cut = run_in(&model, 12);
            model.set_fused_prompts(false);
            let ops = run_in(&model, 7);
            let scale = max_diff(&ops, &ops.zeros_like().unwrap());
            assert!(scale > 1.0, "{arch:?} {name}: logits {scale}");
            let diff = max_diff(&fused, &ops);
            assert!(diff <= 1e-3 * scale, "{arch:?} {name}: fused prompt vs ops, max |diff| {diff} of {scale}");
            // Each position's arithmetic is its own: where the pieces are cut changes no bit
            // (what makes reusing a cached prefix exact).
            assert_eq!(max_diff(&fused, &fused_other_cut), 0.0, "{arch:?} {name}: two cuts");
        }
    }
}
