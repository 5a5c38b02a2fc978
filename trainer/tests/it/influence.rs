//! Training-data attribution: the gradient sketches keep the gradients' similarities, and an
//! output close to a training example (its prompt changed) ranks that example first.

use candle_core::Device;
use tributary_generator::Architecture;
use tributary_trainer::{
    Control, FrozenBase, InfluenceIndex, LoraParams, Row, TrainSettings, cosine, gradient_sketch, nll, train,
};

use crate::{header, small_lora, tiny_examples, tiny_model};

/// The full gradient of a row's mean loss, every variable's values end to end.
fn full_gradient(base: &FrozenBase<'_>, params: &LoraParams, row: Row<'_>) -> Vec<f32> {
    let loss = (nll(base, Some(params), &[row]).unwrap() / row.targets() as f64).unwrap();
    let grads = loss.backward().unwrap();
    params
        .vars()
        .iter()
        .flat_map(|v| grads.get(v.as_tensor()).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap())
        .collect()
}

#[test]
fn sketches_keep_similarity_and_rank_the_source_example_first() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(dir.path(), Architecture::Llama);
    let base = FrozenBase::new(&model).unwrap();
    let examples = tiny_examples(8);
    let settings =
        TrainSettings { epochs: 5, learning_rate: 1e-2, batch_size: 2, micro_batch: 2, ..TrainSettings::default() };
    let run = tempfile::tempdir().unwrap();
    let outcome =
        train(&base, &examples, &header(&examples, small_lora(), settings), run.path(), &mut |_| Control::Continue)
            .unwrap();
    let params = &outcome.params;
    let row = |i: usize| Row { tokens: &examples[i].tokens, target_start: examples[i].target_start };

    // Inner products survive the sketch (here the sketch has more buckets than the adapter
    // has parameters, so few collide).
    for (i, j) in [(0, 1), (2, 5), (3, 3)] {
        let (a, b) = (full_gradient(&base, params, row(i)), full_gradient(&base, params, row(j)));
        let exact = cosine(&a, &b);
        let sketched =
            cosine(&gradient_sketch(&base, params, row(i)).unwrap(), &gradient_sketch(&base, params, row(j)).unwrap());
        assert!((exact - sketched).abs() < 0.05, "examples {i}, {j}: cosine {exact}, sketched {sketched}");
    }

    // Each example's reply after a changed prompt ranks that example first.
    let index = InfluenceIndex::build(&base, params, &examples, &mut |_| {}).unwrap();
    assert_eq!(index.hashes.len(), 8);
    for (i, e) in examples.iter().enumerate() {
        let mut tokens = e.tokens.clone();
        tokens[1] = (tokens[1] + 1) % crate::VOCAB as u32;
        let sketch = gradient_sketch(&base, params, Row { tokens: &tokens, target_start: e.target_start }).unwrap();
        let ranked = index.rank(&sketch, 3);
        assert_eq!(ranked[0].0, i, "example {i}: ranked {ranked:?}");
    }

    // Saved and loaded, the index ranks the same.
    let saved = tempfile::tempdir().unwrap();
    index.save(saved.path()).unwrap();
    let loaded = InfluenceIndex::load(saved.path()).unwrap();
    assert_eq!(loaded.hashes, index.hashes);
    assert_eq!(loaded.sketches, index.sketches);
    // And the adapter reloaded from its PEFT files gives the same sketches.
    let reloaded = LoraParams::init(&small_lora(), model.config(), 99, &Device::Cpu).unwrap();
    let peft = tempfile::tempdir().unwrap();
    params.save_peft(peft.path(), "tiny").unwrap();
    reloaded.load_peft(peft.path()).unwrap();
    assert_eq!(gradient_sketch(&base, &reloaded, row(4)).unwrap(), index.sketches[4]);
}
