//! LoRA adapters on a tiny random model: unmerged equals merged, mixed batches equal single
//! requests, the cache evicts under its budget, and bad adapters are refused.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use candle_core::{DType, Device, Tensor};
use tributary_generator::{
    Adapter, AdapterCache, AdapterRegistry, AdapterSource, Architecture, BatchAdapters, Error, Model, Projection,
};

use crate::tiny::{LAYERS, max_diff, tokens, write_tiny};

/// Writes a random PEFT adapter of `rank` on `modules` for the tiny model.
pub fn write_adapter(dir: &Path, model: &Model, rank: usize, modules: &[Projection]) {
    write_adapter_scaled(dir, model, rank, modules, 0.3);
}

/// Pseudo-random N(0, `scale`) values seeded by `name` (splitmix64, Box-Muller): the same
/// adapter every run, so a test's outcome does not depend on the draw (candle's CPU `randn`
/// cannot be seeded).
fn normal(name: &str, shape: (usize, usize), scale: f32) -> Tensor {
    let mut state = name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ b as u64).wrapping_mul(0x100_0000_01b3));
    let mut next = || {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
    };
    let values: Vec<f32> = (0..shape.0 * shape.1)
        .map(|_| {
            let (u, v) = (next().max(1e-12), next());
            ((-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()) as f32 * scale
        })
        .collect();
    Tensor::from_vec(values, shape, &Device::Cpu).unwrap()
}

/// [`write_adapter`] for every layer of `model`, the factors N(0, `scale`), drawn the same for
/// the same directory name.
pub fn write_adapter_scaled(dir: &Path, model: &Model, rank: usize, modules: &[Projection], scale: f32) {
    std::fs::create_dir_all(dir).unwrap();
    let seed = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let mut tensors = HashMap::new();
    for layer in 0..model.config().num_layers {
        for &m in modules {
            let (input, output) = m.shape(model.config());
            let block =
                if matches!(m, Projection::Gate | Projection::Up | Projection::Down) { "mlp" } else { "self_attn" };
            let p = format!("base_model.model.model.layers.{layer}.{block}.{}", m.peft_name());
            for (name, shape) in
                [(format!("{p}.lora_A.weight"), (rank, input)), (format!("{p}.lora_B.weight"), (output, rank))]
            {
                let values = normal(&format!("{seed}/{name}"), shape, scale);
                tensors.insert(name, values);
            }
        }
    }
    candle_core::safetensors::save(&tensors, dir.join("adapter_model.safetensors")).unwrap();
    let names: Vec<&str> = modules.iter().map(|m| m.peft_name()).collect();
    let config = serde_json::json!({"peft_type": "LORA", "r": rank, "lora_alpha": 2 * rank,
        "target_modules": names, "base_model_name_or_path": "tiny-llama"});
    std::fs::write(dir.join("adapter_config.json"), config.to_string()).unwrap();
}

fn setup() -> (tempfile::TempDir, Model) {
    let dir = tempfile::tempdir().unwrap();
    write_tiny(dir.path(), Architecture::Llama);
    let model = Model::from_safetensors(dir.path(), DType::F32, &Device::Cpu).unwrap();
    (dir, model)
}

fn load(dir: &Path, model: &Model) -> Arc<Adapter> {
    Arc::new(Adapter::load("a", dir, model.config(), &Device::Cpu, DType::F32).unwrap())
}

fn logits(model: &Model, rows: &[&[u32]], adapters: &BatchAdapters) -> Tensor {
    let mut cache = model.new_cache();
    let first = model.forward(&tokens(rows), &mut cache, adapters).unwrap();
    // One decode step too, so the cached path is covered.
    let next: Vec<Vec<u32>> = rows.iter().map(|_| vec![7]).collect();
    let next: Vec<&[u32]> = next.iter().map(|r| r.as_slice()).collect();
    let second = model.forward(&tokens(&next), &mut cache, adapters).unwrap();
    Tensor::cat(&[first, second], 1).unwrap()
}

#[test]
fn unmerged_equals_merged_and_ensembles_are_weighted_sums() {
    let (dir, model) = setup();
    write_adapter(&dir.path().join("a1"), &model, 4, &Projection::ALL);
    write_adapter(&dir.path().join("a2"), &model, 8, &[Projection::Q, Projection::V, Projection::Down]);
    let (a1, a2) = (load(&dir.path().join("a1"), &model), load(&dir.path().join("a2"), &model));
    let prompt: &[&[u32]] = &[&[3, 14, 15, 92, 6]];
    let base = logits(&model, prompt, &BatchAdapters::none());
    let unmerged = logits(&model, prompt, &BatchAdapters::uniform(vec![(a1.clone(), 1.0)], 1, &Device::Cpu).unwrap());
    assert!(max_diff(&base, &unmerged) > 1e-2, "the adapter must change the output");
    let mut merged_model = Model::from_safetensors(dir.path(), DType::F32, &Device::Cpu).unwrap();
    merged_model.merge_adapter(&a1, 1.0).unwrap();
    let merged = logits(&merged_model, prompt, &BatchAdapters::none());
    assert!(max_diff(&unmerged, &merged) < 1e-4, "unmerged vs merged: {}", max_diff(&unmerged, &merged));

    let mix = vec![(a1.clone(), 0.3), (a2.clone(), 0.7)];
    let ensemble = logits(&model, prompt, &BatchAdapters::uniform(mix, 1, &Device::Cpu).unwrap());
    let mut both = Model::from_safetensors(dir.path(), DType::F32, &Device::Cpu).unwrap();
    both.merge_adapter(&a1, 0.3).unwrap();
    both.merge_adapter(&a2, 0.7).unwrap();
    let want = logits(&both, prompt, &BatchAdapters::none());
    assert!(max_diff(&ensemble, &want) < 1e-4, "ensemble: {}", max_diff(&ensemble, &want));
}

#[test]
fn a_mixed_batch_equals_each_request_alone() {
    let (dir, model) = setup();
    write_adapter(&dir.path().join("a1"), &model, 4, &Projection::ALL);
    write_adapter(&dir.path().join("a2"), &model, 16, &[Projection::K, Projection::O, Projection::Up]);
    let (a1, a2) = (load(&dir.path().join("a1"), &model), load(&dir.path().join("a2"), &model));
    let rows: [&[u32]; 5] = [&[1, 2, 3, 4], &[9, 8, 7, 6], &[5, 5, 5, 5], &[40, 41, 42, 43], &[2, 7, 1, 8]];
    let mixes = vec![
        vec![(a1.clone(), 1.0)],
        vec![],
        vec![(a2.clone(), 1.0)],
        vec![(a1.clone(), 1.0)],
        vec![(a1.clone(), 0.3), (a2.clone(), 0.7)],
    ];
    let batch = logits(&model, &rows, &BatchAdapters::per_row(&mixes, &Device::Cpu).unwrap());
    // The GPU's plan (factors gathered per row, batched matmuls), run here on the CPU.
    let gathered = logits(&model, &rows, &BatchAdapters::per_row_gathered(&mixes, &Device::Cpu).unwrap());
    assert!(max_diff(&batch, &gathered) < 1e-4, "gathered: {}", max_diff(&batch, &gathered));
    for (i, (row, mix)) in rows.iter().zip(&mixes).enumerate() {
        let alone = logits(&model, &[row], &BatchAdapters::uniform(mix.clone(), 1, &Device::Cpu).unwrap());
        let diff = max_diff(&batch.narrow(0, i, 1).unwrap(), &alone);
        assert!(diff < 1e-4, "row {i}: {diff}");
    }
}

#[test]
fn the_cache_loads_just_in_time_and_evicts_least_recently_used() {
    let (dir, model) = setup();
    let registry = AdapterRegistry::open(dir.path().join("adapters.json")).unwrap();
    for id in ["a", "b", "c"] {
        write_adapter(&dir.path().join(id), &model, 4, &Projection::ALL);
        registry.register(id, AdapterSource::Path(dir.path().join(id)), model.config()).unwrap();
    }
    let size = load(&dir.path().join("a"), &model).bytes();
    // Kept as f16 on the CPU: two bytes a value.
    let values: usize = Projection::ALL
        .iter()
        .map(|p| {
            let (input, output) = p.shape(model.config());
            4 * (input + output)
        })
        .sum();
    assert_eq!(size, 2 * LAYERS * values);
    let cache = AdapterCache::new(2 * size + size / 2, Device::Cpu, DType::F32);
    assert!(!cache.is_loaded("a"));
    cache.get(&registry, "a", model.config()).unwrap();
    cache.get(&registry, "b", model.config()).unwrap();
    cache.get(&registry, "a", model.config()).unwrap(); // a is now the most recent
    cache.get(&registry, "c", model.config()).unwrap(); // evicts b
    assert!(cache.is_loaded("a") && cache.is_loaded("c") && !cache.is_loaded("b"));
    let stats = cache.stats();
    assert_eq!((stats.loaded, stats.hits, stats.loads, stats.evictions), (2, 1, 3, 1));
    assert!(stats.bytes <= stats.budget);
    // The registry survives a reopen; removal forgets it.
    let reopened = AdapterRegistry::open(dir.path().join("adapters.json")).unwrap();
    assert_eq!(reopened.list().unwrap().len(), 3);
    assert!(reopened.remove("b").unwrap());
    assert!(!reopened.remove("b").unwrap());
    assert!(matches!(cache.get(&reopened, "b", model.config()), Err(Error::UnknownAdapter(_))));
}

/// Issue #22, item 6: requests that ask for one cold adapter at once load it once.
#[test]
fn concurrent_requests_for_a_cold_adapter_load_it_once() {
    let (dir, model) = setup();
    let registry = AdapterRegistry::open(dir.path().join("adapters.json")).unwrap();
    write_adapter(&dir.path().join("a"), &model, 64, &Projection::ALL);
    registry.register("a", AdapterSource::Path(dir.path().join("a")), model.config()).unwrap();
    let cache = AdapterCache::new(1 << 30, Device::Cpu, DType::F32);
    let start = std::sync::Barrier::new(16);
    let adapters: Vec<Arc<Adapter>> = std::thread::scope(|scope| {
        let runs: Vec<_> = (0..16)
            .map(|_| {
                scope.spawn(|| {
                    start.wait();
                    cache.get(&registry, "a", model.config()).unwrap()
                })
            })
            .collect();
        runs.into_iter().map(|r| r.join().unwrap()).collect()
    });
    assert!(adapters.iter().all(|a| Arc::ptr_eq(a, &adapters[0])), "one loaded copy, shared");
    let stats = cache.stats();
    assert_eq!((stats.loads, stats.hits, stats.loaded), (1, 15, 1), "{stats:?}");
}

#[test]
fn bad_adapters_are_refused_with_a_reason() {
    let (dir, model) = setup();
    let registry = AdapterRegistry::open(dir.path().join("adapters.json")).unwrap();
    let refuse = |name: &str, edit: &dyn Fn(&Path)| -> String {
        let path = dir.path().join(name);
        write_adapter(&path, &model, 4, &[Projection::Q, Projection::Down]);
        edit(&path);
        let err = registry.register(name, AdapterSource::Path(path), model.config()).unwrap_err();
        assert!(matches!(err, Error::Adapter { .. }), "{err}");
        err.to_string()
    };
    let corrupt =
        refuse("corrupt", &|p| std::fs::write(p.join("adapter_model.safetensors"), b"\x10\0\0\0garbage").unwrap());
    assert!(corrupt.contains("adapter_model.safetensors"), "{corrupt}");
    // Cut short by a few bytes: the header's tensors no longer fill the file.
    let truncated = refuse("truncated", &|p| {
        let path = p.join("adapter_model.safetensors");
        let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        file.set_len(file.metadata().unwrap().len() - 4).unwrap();
    });
    assert!(truncated.contains("adapter_model.safetensors") && truncated.contains("bytes of tensors"), "{truncated}");
    let rank = refuse("rank", &|p| {
        let config = serde_json::json!({"peft_type": "LORA", "r": 8, "lora_alpha": 16, "target_modules": ["q_proj", "down_proj"]});
        std::fs::write(p.join("adapter_config.json"), config.to_string()).unwrap();
    });
    assert!(rank.contains("rank 8"), "{rank}");
    let module = refuse("module", &|p| {
        let config = serde_json::json!({"peft_type": "LORA", "r": 4, "lora_alpha": 8, "target_modules": ["lm_head"]});
        std::fs::write(p.join("adapter_config.json"), config.to_string()).unwrap();
    });
    assert!(module.contains("lm_head"), "{module}");
    // A value f16 cannot hold (adapters are kept as f16 on the CPU).
    let range = refuse("range", &|p| {
        let mut tensors = candle_core::safetensors::load(p.join("adapter_model.safetensors"), &Device::Cpu).unwrap();
        let name = "base_model.model.model.layers.0.mlp.down_proj.lora_B.weight";
        let huge = (tensors[name].zeros_like().unwrap() + 1e6).unwrap();
        tensors.insert(name.to_string(), huge);
        candle_core::safetensors::save(&tensors, p.join("adapter_model.safetensors")).unwrap();
    });
    assert!(range.contains("down_proj lora_B") && range.contains("f16"), "{range}");
    // Another model's shapes (hidden 64 instead of 32).
    let other = tempfile::tempdir().unwrap();
    let mut tensors = HashMap::new();
    tensors.insert(
        "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight".to_string(),
        Tensor::zeros((4, 64), DType::F32, &Device::Cpu).unwrap(),
    );
    tensors.insert(
        "base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight".to_string(),
        Tensor::zeros((64, 4), DType::F32, &Device::Cpu).unwrap(),
    );
    candle_core::safetensors::save(&tensors, other.path().join("adapter_model.safetensors")).unwrap();
    std::fs::write(other.path().join("adapter_config.json"), r#"{"r":4,"lora_alpha":8,"target_modules":["q_proj"]}"#)
        .unwrap();
    let err = registry.register("shapes", AdapterSource::Path(other.path().to_path_buf()), model.config()).unwrap_err();
    assert!(err.to_string().contains("do not fit"), "{err}");
    assert!(registry.list().unwrap().is_empty(), "nothing refused is registered");
    assert!(registry.register("../escape", AdapterSource::Path(dir.path().into()), model.config()).is_err());
}
