//! The adapter's gradients from candle's autograd (through the frozen matmul's own backward)
//! against central finite differences of the loss, on tiny models of both architectures.

use candle_core::{DType, Device, Tensor};
use tributary_generator::Architecture;
use tributary_trainer::{FrozenBase, LoraParams, Row, TrainSettings, nll, train};

use crate::{header, random, small_lora, tiny_examples, tiny_model};

fn loss(base: &FrozenBase<'_>, params: &LoraParams, rows: &[Row<'_>], tokens: f64) -> Tensor {
    (nll(base, Some(params), rows).unwrap() / tokens).unwrap()
}

#[test]
fn lora_gradients_match_finite_differences() {
    for arch in [Architecture::Llama, Architecture::Qwen2] {
        let dir = tempfile::tempdir().unwrap();
        let model = tiny_model(dir.path(), arch);
        let base = FrozenBase::new(&model).unwrap();
        let params = LoraParams::init(&small_lora(), model.config(), 7, &Device::Cpu).unwrap();
        // B starts at zero, where A has no gradient: give both a value.
        for (name, var) in params.named() {
            if name.contains("lora_B") {
                var.set(&random(var.dims(), 0.3)).unwrap();
            }
        }
        let examples = tiny_examples(2);
        let rows: Vec<Row<'_>> =
            examples.iter().map(|e| Row { tokens: &e.tokens, target_start: e.target_start }).collect();
        let tokens = rows.iter().map(|r| r.targets()).sum::<usize>() as f64;
        let grads = loss(&base, &params, &rows, tokens).backward().unwrap();
        let mut checked = 0;
        for (name, var) in params.named() {
            let g: Vec<f32> = grads.get(var.as_tensor()).unwrap().flatten_all().unwrap().to_vec1().unwrap();
            let values: Vec<f32> = var.as_tensor().flatten_all().unwrap().to_vec1().unwrap();
            // The two coordinates with the largest gradients: where f32 differences are reliable.
            let mut order: Vec<usize> = (0..g.len()).collect();
            order.sort_by(|&a, &b| g[b].abs().total_cmp(&g[a].abs()));
            for &i in &order[..2] {
                let h = 1e-2f32;
                let at = |delta: f32| {
                    let mut v = values.clone();
                    v[i] += delta;
                    var.set(&Tensor::from_vec(v, var.dims(), &Device::Cpu).unwrap()).unwrap();
                    let l = loss(&base, &params, &rows, tokens).to_dtype(DType::F64).unwrap();
                    l.to_scalar::<f64>().unwrap()
                };
                let fd = (at(h) - at(-h)) / (2.0 * h as f64);
                var.set(&Tensor::from_vec(values.clone(), var.dims(), &Device::Cpu).unwrap()).unwrap();
                let got = g[i] as f64;
                assert!(
                    (fd - got).abs() <= 0.03 * got.abs() + 2e-4,
                    "{arch:?} {name}[{i}]: autograd {got}, finite differences {fd}"
                );
                checked += 1;
            }
        }
        assert_eq!(checked, 2 * 2 * 7 * 2, "{arch:?}: every factor of every projection checked");
    }
}

/// A few dozen steps fit the tiny examples: the loss falls to under half where it started.
#[test]
fn training_lowers_the_loss() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(dir.path(), Architecture::Llama);
    let base = FrozenBase::new(&model).unwrap();
    let examples = tiny_examples(4);
    let settings = TrainSettings {
        epochs: 15,
        learning_rate: 2e-2,
        batch_size: 2,
        micro_batch: 2,
        warmup_steps: 2,
        checkpoint_every: 100,
        ..TrainSettings::default()
    };
    let run = tempfile::tempdir().unwrap();
    let mut losses = Vec::new();
    let outcome = train(&base, &examples, &header(&examples, small_lora(), settings), run.path(), &mut |s| {
        losses.push(s.loss);
        tributary_trainer::Control::Continue
    })
    .unwrap();
    assert!(outcome.finished());
    assert_eq!(losses.len(), 30);
    let (first, last) = (losses[..2].iter().sum::<f64>() / 2.0, losses[28..].iter().sum::<f64>() / 2.0);
    assert!(last < first * 0.5, "loss {first} -> {last}");
}
