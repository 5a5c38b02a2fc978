//! Softmax attention of one query head over the positions a cache holds, on the CPU: the
//! kernel of the fused step's attention (decoding and prompts run the same one, so a position's
//! result does not depend on how it was reached). AVX2 + FMA where the CPU has them and the
//! head width is a multiple of 64; plain loops otherwise.

/// `out` = Σ_p softmax(q · k_p · scale)_p v_p over the cached keys and values. `scores` is
/// scratch.
pub(crate) fn head(query: &[f32], cached: Cached<'_>, scale: f32, scores: &mut Vec<f32>, out: &mut [f32]) {
    let Cached { keys, values, positions, width: d } = cached;
    assert!(
        query.len() == d && out.len() == d && keys.len() >= positions * d && values.len() >= positions * d,
        "attention sizes"
    );
    #[cfg(target_arch = "x86_64")]
    if d.is_multiple_of(64) && fast() {
        // SAFETY: the CPU has AVX2 and FMA (checked once); sizes are checked above.
        unsafe { x86::head(query, cached, scale, scores, out) };
        return;
    }
    scores.clear();
    scores.extend((0..positions).map(|p| plain_dot(query, &keys[p * d..(p + 1) * d]) * scale));
    let total = softmax_numerators(scores);
    out.fill(0.0);
    for (p, s) in scores.iter().enumerate() {
        let weight = s / total;
        out.iter_mut().zip(&values[p * d..(p + 1) * d]).for_each(|(o, v)| *o += weight * v);
    }
}

/// The keys and values one key/value head holds: `positions` rows of `width` floats each, one
/// after another.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Cached<'a> {
    pub(crate) keys: &'a [f32],
    pub(crate) values: &'a [f32],
    pub(crate) positions: usize,
    pub(crate) width: usize,
}

/// [`head`] for the `queries.len() / width` query heads that share one key/value head (grouped-query
/// attention), written one after another to `out`: each key and value is read once for all of
/// them. `scores` is scratch.
pub(crate) fn group(queries: &[f32], cached: Cached<'_>, scale: f32, scores: &mut Vec<f32>, out: &mut [f32]) {
    let Cached { keys, values, positions, width: d } = cached;
    let heads = queries.len() / d;
    assert!(queries.len() == heads * d && out.len() == heads * d, "attention sizes");
    #[cfg(target_arch = "x86_64")]
    if d == 64 && (1..=4).contains(&heads) && wide() {
        assert!(keys.len() >= positions * d && values.len() >= positions * d, "attention sizes");
        // SAFETY: the CPU has AVX-512 F (checked once); sizes are checked above.
        unsafe { x86::group(queries, cached, scale, scores, out) };
        return;
    }
    for (query, out) in queries.chunks_exact(d).zip(out.chunks_exact_mut(d)) {
        head(query, cached, scale, scores, out);
    }
}

#[cfg(target_arch = "x86_64")]
fn wide() -> bool {
    static WIDE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *WIDE.get_or_init(|| std::arch::is_x86_feature_detected!("avx512f"))
}

#[cfg(target_arch = "x86_64")]
fn fast() -> bool {
    static FAST: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *FAST.get_or_init(|| std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma"))
}

fn plain_dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Replaces each score by exp(score - max) and returns their sum.
fn softmax_numerators(scores: &mut [f32]) -> f32 {
    let max = scores.iter().fold(f32::NEG_INFINITY, |m, s| m.max(*s));
    let mut total = 0f32;
    for s in scores.iter_mut() {
        *s = (*s - max).exp();
        total += *s;
    }
    total
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::Cached;
    use crate::kernels::simd::horizontal_sum;

    /// [`super::head`] with 256-bit vectors: two accumulators per dot product, and the output
    /// in blocks of 64 floats held in eight registers while every position's value is added.
    ///
    /// # Safety
    /// AVX2 and FMA; `query.len()` a multiple of 64; `keys` and `values` hold `positions` rows.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn head(query: &[f32], cached: Cached<'_>, scale: f32, scores: &mut Vec<f32>, out: &mut [f32]) {
        let Cached { keys, values, positions, width: d } = cached;
        unsafe {
            scores.clear();
            let q = query.as_ptr();
            for p in 0..positions {
                let k = keys.as_ptr().add(p * d);
                let (mut a0, mut a1) = (_mm256_setzero_ps(), _mm256_setzero_ps());
                for j in (0..d).step_by(16) {
                    a0 = _mm256_fmadd_ps(_mm256_loadu_ps(q.add(j)), _mm256_loadu_ps(k.add(j)), a0);
                    a1 = _mm256_fmadd_ps(_mm256_loadu_ps(q.add(j + 8)), _mm256_loadu_ps(k.add(j + 8)), a1);
                }
                scores.push(horizontal_sum(_mm256_add_ps(a0, a1)) * scale);
            }
            let total = super::softmax_numerators(scores);
            let inverse = 1.0 / total;
            for block in (0..d).step_by(64) {
                let mut acc = [_mm256_setzero_ps(); 8];
                for (p, s) in scores.iter().enumerate() {
                    let weight = _mm256_set1_ps(s * inverse);
                    let v = values.as_ptr().add(p * d + block);
                    for (i, lane) in acc.iter_mut().enumerate() {
                        *lane = _mm256_fmadd_ps(weight, _mm256_loadu_ps(v.add(8 * i)), *lane);
                    }
                }
                for (i, lane) in acc.iter().enumerate() {
                    _mm256_storeu_ps(out.as_mut_ptr().add(block + 8 * i), *lane);
                }
            }
        }
    }

    /// [`super::group`] with 512-bit vectors for heads of 64: per position, the key's four
    /// registers against each head's query, then the value's four into each head's four
    /// accumulators.
    ///
    /// # Safety
    /// AVX-512 F; `query.len()` 64 per head, 1 to 4 heads; `keys` and `values` hold `positions`
    /// rows of 64.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn group(
        queries: &[f32],
        cached: Cached<'_>,
        scale: f32,
        scores: &mut Vec<f32>,
        out: &mut [f32],
    ) {
        const D: usize = 64;
        let Cached { keys, values, positions, .. } = cached;
        let heads = queries.len() / D;
        unsafe {
            scores.clear();
            scores.resize(heads * positions, 0.0);
            let q: Vec<[__m512; 4]> = (0..heads)
                .map(|h| std::array::from_fn(|i| _mm512_loadu_ps(queries.as_ptr().add(h * D + 16 * i))))
                .collect();
            for p in 0..positions {
                let k = keys.as_ptr().add(p * D);
                let key: [__m512; 4] = std::array::from_fn(|i| _mm512_loadu_ps(k.add(16 * i)));
                for (h, q) in q.iter().enumerate() {
                    let pair = _mm512_fmadd_ps(q[1], key[1], _mm512_mul_ps(q[0], key[0]));
                    let pair2 = _mm512_fmadd_ps(q[3], key[3], _mm512_mul_ps(q[2], key[2]));
                    *scores.get_unchecked_mut(h * positions + p) =
                        _mm512_reduce_add_ps(_mm512_add_ps(pair, pair2)) * scale;
                }
            }
            let mut inverse = [0f32; 4];
            for (h, inv) in inverse.iter_mut().enumerate().take(heads) {
                *inv = 1.0 / super::softmax_numerators(&mut scores[h * positions..(h + 1) * positions]);
            }
            let mut acc = [[_mm512_setzero_ps(); 4]; 4];
            for p in 0..positions {
                let v = values.as_ptr().add(p * D);
                let value: [__m512; 4] = std::array::from_fn(|i| _mm512_loadu_ps(v.add(16 * i)));
                for (h, lanes) in acc.iter_mut().enumerate().take(heads) {
                    let weight = _mm512_set1_ps(*scores.get_unchecked(h * positions + p) * inverse[h]);
                    for (lane, v) in lanes.iter_mut().zip(&value) {
                        *lane = _mm512_fmadd_ps(weight, *v, *lane);
                    }
                }
            }
            for (h, lanes) in acc.iter().enumerate().take(heads) {
                for (i, lane) in lanes.iter().enumerate() {
                    _mm512_storeu_ps(out.as_mut_ptr().add(h * D + 16 * i), *lane);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Grouped heads (one key/value head for several queries) against each head alone.
    #[test]
    fn grouped_heads_match_each_head_alone() {
        for d in [64, 24] {
            for heads in 1..=5 {
                let positions = 29;
                let value = |i: usize| ((i * 7919) % 1000) as f32 / 500.0 - 1.0;
                let queries: Vec<f32> = (0..heads * d).map(|i| value(i + 5)).collect();
                let keys: Vec<f32> = (0..positions * d).map(|i| value(i + 3)).collect();
                let values: Vec<f32> = (0..positions * d).map(|i| value(i + 11)).collect();
                let (mut scores, mut grouped) = (Vec::new(), vec![0f32; heads * d]);
                let cached = Cached { keys: &keys, values: &values, positions, width: d };
                group(&queries, cached, 0.125, &mut scores, &mut grouped);
                for h in 0..heads {
                    let mut alone = vec![0f32; d];
                    head(&queries[h * d..(h + 1) * d], cached, 0.125, &mut scores, &mut alone);
                    for (j, (g, a)) in grouped[h * d..(h + 1) * d].iter().zip(&alone).enumerate() {
                        assert!((g - a).abs() < 1e-5, "d {d}, {heads} heads, head {h}, lane {j}: {g} vs {a}");
                    }
                }
            }
        }
    }

    /// The vector kernel against the definition, with a head width it runs (64) and one it
    /// leaves to the plain loops (24).
    #[test]
    fn attention_matches_the_definition() {
        for d in [64, 128, 24] {
            let positions = 37;
            let value = |i: usize| ((i * 7919) % 1000) as f32 / 500.0 - 1.0;
            let query: Vec<f32> = (0..d).map(value).collect();
            let keys: Vec<f32> = (0..positions * d).map(|i| value(i + 3)).collect();
            let values: Vec<f32> = (0..positions * d).map(|i| value(i + 11)).collect();
            let (mut scores, mut out) = (Vec::new(), vec![0f32; d]);
            let cached = Cached { keys: &keys, values: &values, positions, width: d };
            head(&query, cached, 0.125, &mut scores, &mut out);
            let logits: Vec<f64> = (0..positions)
                .map(|p| (0..d).map(|j| query[j] as f64 * keys[p * d + j] as f64).sum::<f64>() * 0.125)
                .collect();
            let max = logits.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let weights: Vec<f64> = logits.iter().map(|l| (l - max).exp()).collect();
            let total: f64 = weights.iter().sum();
            for j in 0..d {
                let want: f64 = (0..positions).map(|p| weights[p] / total * values[p * d + j] as f64).sum();
                assert!((out[j] as f64 - want).abs() < 1e-5, "d {d}, lane {j}: {} vs {want}", out[j]);
            }
        }
    }
}
