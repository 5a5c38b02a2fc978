//! Training-data attribution: which training examples most influenced an output of a trained
//! adapter, by the similarity of their loss gradients on the adapter's parameters (TracIn at
//! the final checkpoint, normalized: the cosine of the two gradients, so an example is not
//! ranked first for a large gradient alone).
//!
//! A gradient has as many numbers as the adapter (4.9 million for rank 16 on every projection
//! of SmolLM2-135M); each is reduced to [`SKETCH_DIM`] numbers by a CountSketch (every
//! parameter adds its value, with a sign, into one bucket, both drawn from a fixed seed), which
//! keeps inner products in expectation at a cost linear in the parameters. Training examples'
//! sketches are computed once, after training, and stored with the adapter; an answer's is
//! computed when it is attributed (one forward and backward pass over its prompt and text).

use candle_core::{DType, Tensor};

use crate::error::{Error, Result};
use crate::forward::{Row, nll};
use crate::frozen::FrozenBase;
use crate::lora::LoraParams;

/// Numbers per sketch.
pub const SKETCH_DIM: usize = 4096;

/// The fixed seed of the sketch's buckets and signs: every sketch of every adapter uses the
/// same map, so stored sketches stay comparable with new ones.
const SKETCH_SEED: u64 = 0x7472_6962_7574_6172;

/// The sketch of the gradient of `row`'s mean target loss with respect to the adapter.
pub fn gradient_sketch(base: &FrozenBase<'_>, params: &LoraParams, row: Row<'_>) -> Result<Vec<f32>> {
    let targets = row.targets().max(1) as f64;
    let loss = (nll(base, Some(params), std::slice::from_ref(&row))? / targets)?;
    let grads = loss.backward()?;
    let mut sketch = vec![0f32; SKETCH_DIM];
    for (v, var) in params.vars().iter().enumerate() {
        let Some(g) = grads.get(var.as_tensor()) else { continue };
        let values: Vec<f32> = g.flatten_all()?.to_dtype(DType::F32)?.to_vec1()?;
        add_sketched(&mut sketch, v as u64, &values);
    }
    Ok(sketch)
}

fn add_sketched(sketch: &mut [f32], var: u64, values: &[f32]) {
    for (i, &x) in values.iter().enumerate() {
        let h = mix(SKETCH_SEED ^ (var << 40) ^ i as u64);
        let bucket = (h % SKETCH_DIM as u64) as usize;
        sketch[bucket] += if h >> 63 == 0 { x } else { -x };
    }
}

fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Cosine similarity of two sketches (0 when either is zero).
pub fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let (mut dot, mut na, mut nb) = (0f64, 0f64, 0f64);
    for (&x, &y) in a.iter().zip(b) {
        dot += x as f64 * y as f64;
        na += x as f64 * x as f64;
        nb += y as f64 * y as f64;
    }
    if na == 0.0 || nb == 0.0 { 0.0 } else { dot / (na.sqrt() * nb.sqrt()) }
}

/// How an answer's sketch is compared with the training examples'.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Similarity {
    /// The cosine of the two sketches.
    Cosine,
    /// The cosine after subtracting the training examples' mean sketch from both: what every
    /// example of the task shares (the answer format, the citation marker, the turn's end)
    /// leaves the comparison, what sets one example apart stays.
    Centered,
}

/// Training examples' sketches, in the training log's example order.
#[derive(Debug, Clone)]
pub struct InfluenceIndex {
    pub hashes: Vec<String>,
    pub sketches: Vec<Vec<f32>>,
}

impl InfluenceIndex {
    /// Every example's sketch at the trained parameters.
    pub fn build(
        base: &FrozenBase<'_>,
        params: &LoraParams,
        examples: &[crate::data::TokenizedExample],
        on_example: &mut dyn FnMut(usize),
    ) -> Result<Self> {
        let mut sketches = Vec::with_capacity(examples.len());
        for (i, e) in examples.iter().enumerate() {
            sketches.push(gradient_sketch(base, params, Row { tokens: &e.tokens, target_start: e.target_start })?);
            on_example(i + 1);
        }
        Ok(InfluenceIndex { hashes: examples.iter().map(|e| e.hash.clone()).collect(), sketches })
    }

    /// The examples most similar to `sketch`, best first, with their cosine similarity.
    pub fn rank(&self, sketch: &[f32], top: usize) -> Vec<(usize, f64)> {
        self.rank_by(sketch, top, Similarity::Cosine)
    }

    /// [`InfluenceIndex::rank`] with a chosen similarity.
    pub fn rank_by(&self, sketch: &[f32], top: usize, similarity: Similarity) -> Vec<(usize, f64)> {
        let mut scored: Vec<(usize, f64)> = match similarity {
            Similarity::Cosine => self.sketches.iter().map(|s| cosine(s, sketch)).enumerate().collect(),
            Similarity::Centered => {
                let mean = self.mean();
                let centre = |s: &[f32]| -> Vec<f32> { s.iter().zip(&mean).map(|(x, m)| x - m).collect() };
                let query = centre(sketch);
                self.sketches.iter().map(|s| cosine(&centre(s), &query)).enumerate().collect()
            }
        };
        scored.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        scored.truncate(top);
        scored
    }

    /// The mean of the training examples' sketches (zeros without examples).
    pub fn mean(&self) -> Vec<f32> {
        let mut mean = vec![0f64; SKETCH_DIM];
        for s in &self.sketches {
            for (m, x) in mean.iter_mut().zip(s) {
                *m += *x as f64;
            }
        }
        let n = self.sketches.len().max(1) as f64;
        mean.into_iter().map(|m| (m / n) as f32).collect()
    }

    /// Writes the sketches (safetensors, `sketches`: examples x dim) and their hashes (JSON).
    pub fn save(&self, dir: &std::path::Path) -> Result<()> {
        let n = self.sketches.len();
        let flat: Vec<f32> = self.sketches.iter().flatten().copied().collect();
        let tensor = Tensor::from_vec(flat, (n, SKETCH_DIM), &candle_core::Device::Cpu)?;
        candle_core::safetensors::save(
            &std::collections::HashMap::from([("sketches".to_string(), tensor)]),
            dir.join(SKETCHES_FILE),
        )?;
        let json = serde_json::to_vec(&self.hashes).map_err(|e| Error::Invalid(e.to_string()))?;
        let path = dir.join(HASHES_FILE);
        std::fs::write(&path, json).map_err(|e| Error::Io(path.display().to_string(), e))
    }

    pub fn load(dir: &std::path::Path) -> Result<Self> {
        let path = dir.join(HASHES_FILE);
        let bad = |reason: String| Error::Checkpoint { path: path.display().to_string(), reason };
        let bytes = std::fs::read(&path).map_err(|e| Error::Io(path.display().to_string(), e))?;
        let hashes: Vec<String> = serde_json::from_slice(&bytes).map_err(|e| bad(e.to_string()))?;
        let tensors = candle_core::safetensors::load(dir.join(SKETCHES_FILE), &candle_core::Device::Cpu)?;
        let t = tensors.get("sketches").ok_or_else(|| bad("no sketches".into()))?;
        if t.dims() != [hashes.len(), SKETCH_DIM] {
            return Err(bad(format!("sketches are {:?} for {} examples", t.dims(), hashes.len())));
        }
        Ok(InfluenceIndex { hashes, sketches: t.to_vec2()? })
    }
}

pub const SKETCHES_FILE: &str = "influence_sketches.safetensors";
pub const HASHES_FILE: &str = "influence_examples.json";

#[cfg(test)]
mod tests {
    use super::*;

    fn sketch(seed: u64) -> Vec<f32> {
        (0..SKETCH_DIM as u64).map(|i| ((mix(seed ^ i) % 2001) as f32 - 1000.0) / 1000.0).collect()
    }

    #[test]
    fn centering_ignores_what_every_example_shares() {
        let examples: Vec<Vec<f32>> = (1..=5).map(sketch).collect();
        let query: Vec<f32> = examples[2].iter().zip(sketch(99)).map(|(a, b)| a + 0.5 * b).collect();
        let index = InfluenceIndex { hashes: (0..5).map(|i| i.to_string()).collect(), sketches: examples.clone() };
        // A large direction every example and the answer share (the format, the end of turn).
        let shared: Vec<f32> = sketch(7).iter().map(|x| 40.0 * x).collect();
        let plus = |s: &[f32]| -> Vec<f32> { s.iter().zip(&shared).map(|(a, b)| a + b).collect() };
        let shifted =
            InfluenceIndex { hashes: index.hashes.clone(), sketches: examples.iter().map(|s| plus(s)).collect() };
        let centered = index.rank_by(&query, 5, Similarity::Centered);
        assert_eq!(centered[0].0, 2);
        let after = shifted.rank_by(&plus(&query), 5, Similarity::Centered);
        for (a, b) in centered.iter().zip(&after) {
            assert_eq!(a.0, b.0);
            assert!((a.1 - b.1).abs() < 1e-4, "{a:?} {b:?}");
        }
        // Plain cosines are swamped by the shared direction: every example looks alike.
        let cosines = shifted.rank_by(&plus(&query), 5, Similarity::Cosine);
        assert!(cosines[4].1 > 0.9, "{cosines:?}");
        let mean = index.mean();
        let direct: f32 = examples.iter().map(|s| s[17]).sum::<f32>() / 5.0;
        assert!((mean[17] - direct).abs() < 1e-6);
    }
}
