//! LoRA deltas for one decoding step on the CPU, every row with its own adapters, in one pass.
//!
//! A decoding step multiplies one activation row per request by rank-r factors: tiny products
//! (576 x 16) for which candle's batched matmul makes one gemm call per row and per factor, and
//! the calls, not the arithmetic, were most of a mixed-adapter step (3,360 calls a step at batch
//! 8). Here each row runs its own terms directly on the factors' storage: `t = A x` as dot
//! products over A's contiguous rows, then `y += B t` as scaled rows of the stored Bᵀ.
//!
//! Factors are kept as f16 on the CPU (see [`crate::adapters::lora`]) and widened to f32 in registers:
//! a batch whose rows use different adapters reads every row's factors each step, so that
//! step is bound by the bytes of the factors (8 adapters of rank 16 on SmolLM2: 155 MB a step
//! in f32, half that in f16).

use half::f16;
use half::slice::HalfFloatSliceExt;
use rayon::prelude::*;

/// One adapter's factors for one projection, as stored: A is `rank x input` and Bᵀ is
/// `rank x output`, both row-major; `coef` is the adapter's scale times its weight in the mix.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Term<'a> {
    pub a: &'a [f16],
    pub b_t: &'a [f16],
    pub coef: f32,
}

impl Term<'_> {
    /// (rank, output) for an `input`-wide activation, or None when the factors do not fit it
    /// (the caller checked the fit; a misfit term adds nothing rather than reading past it).
    fn dims(&self, input: usize) -> Option<(usize, usize)> {
        let rank = self.a.len().checked_div(input)?;
        if rank == 0 || self.a.len() != rank * input || !self.b_t.len().is_multiple_of(rank) {
            return None;
        }
        Some((rank, self.b_t.len() / rank))
    }
}

/// `y[r] += Σ coef · B (A x[r])` over row r's terms, for `x` [rows, input] and `y` [rows,
/// output], both row-major. Rows run in parallel when there are several.
pub(crate) fn add_rows(x: &[f32], input: usize, y: &mut [f32], output: usize, terms: &[Vec<Term<'_>>]) {
    let rows = terms.len();
    debug_assert_eq!(x.len(), rows * input);
    debug_assert_eq!(y.len(), rows * output);
    let run = |((y, x), terms): ((&mut [f32], &[f32]), &Vec<Term<'_>>)| add_row_range(x, y, 0, terms);
    if rows > 1 {
        y.par_chunks_mut(output).zip(x.par_chunks(input)).zip(terms.par_iter()).for_each(run);
    } else {
        y.chunks_mut(output).zip(x.chunks(input)).zip(terms.iter()).for_each(run);
    }
}

/// `y += Σ coef · B (A x)` for outputs `start..start + y.len()` of one row: the whole row, or
/// the share of a projection's outputs one thread of a decoding step owns ([`crate::runtime::decode`]).
pub(crate) fn add_row_range(x: &[f32], y: &mut [f32], start: usize, terms: &[Term<'_>]) {
    #[cfg(target_arch = "x86_64")]
    if x86::available() {
        // SAFETY: the CPU has the features these copies were compiled for (checked just above).
        unsafe { x86::add_row_range(x, y, start, terms) };
        return;
    }
    add_row_range_plain(x, y, start, terms);
}

/// The same sums with plain loops (other CPUs): each factor row widened into a scratch row by
/// `half`'s slice conversion (vectorized where the CPU can), then f32 arithmetic.
fn add_row_range_plain(x: &[f32], y: &mut [f32], start: usize, terms: &[Term<'_>]) {
    let input = x.len();
    let mut a_wide = vec![0f32; input];
    let mut b_wide = vec![0f32; y.len()];
    for term in terms {
        let Some((rank, output)) = term.dims(input) else { continue };
        if start + y.len() > output {
            continue;
        }
        for k in 0..rank {
            term.a[k * input..][..input].convert_to_f32_slice(&mut a_wide);
            let t = term.coef * dot(&a_wide, x);
            term.b_t[k * output + start..][..y.len()].convert_to_f32_slice(&mut b_wide);
            for (y, b) in y.iter_mut().zip(&b_wide) {
                *y = t.mul_add(*b, *y);
            }
        }
    }
}

/// A dot product with 16 independent partial sums, so that it vectorizes (a single running
/// sum is a chain the compiler may not reorder).
fn dot(a: &[f32], b: &[f32]) -> f32 {
    const LANES: usize = 16;
    let mut acc = [0f32; LANES];
    let mut a_blocks = a.chunks_exact(LANES);
    let mut b_blocks = b.chunks_exact(LANES);
    for (a, b) in a_blocks.by_ref().zip(b_blocks.by_ref()) {
        for lane in 0..LANES {
            acc[lane] += a[lane] * b[lane];
        }
    }
    let mut tail = 0f32;
    for (a, b) in a_blocks.remainder().iter().zip(b_blocks.remainder()) {
        tail += *a * *b;
    }
    acc.iter().sum::<f32>() + tail
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    //! AVX2 + FMA, the factors widened by F16C's `vcvtph2ps` as they are loaded.

    use std::arch::x86_64::*;

    use half::f16;

    use super::Term;

    /// Whether this CPU has AVX2, FMA and F16C (detected once).
    pub(super) fn available() -> bool {
        static AVAILABLE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        *AVAILABLE.get_or_init(|| {
            is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") && is_x86_feature_detected!("f16c")
        })
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) fn add_row_range(x: &[f32], y: &mut [f32], start: usize, terms: &[Term<'_>]) {
        let input = x.len();
        for term in terms {
            let Some((rank, output)) = term.dims(input) else { continue };
            if start + y.len() > output {
                continue;
            }
            for k in 0..rank {
                let t = term.coef * dot(&term.a[k * input..][..input], x);
                axpy(t, &term.b_t[k * output + start..][..y.len()], y);
            }
        }
    }

    /// 8 f16 from `values[i..]` as f32. The caller has F16C and `i + 8 <= values.len()`.
    #[inline(always)]
    unsafe fn widen8(values: &[f16], i: usize) -> __m256 {
        debug_assert!(i + 8 <= values.len());
        // SAFETY: 8 f16 (16 bytes) from i on are in `values` (the caller's bound).
        unsafe { _mm256_cvtph_ps(_mm_loadu_si128(values.as_ptr().add(i).cast())) }
    }

    /// `Σ a · x` over the shorter of the two, four sums of 8 lanes in flight.
    #[target_feature(enable = "avx2,fma,f16c")]
    fn dot(a: &[f16], x: &[f32]) -> f32 {
        let n = a.len().min(x.len());
        let mut acc = [_mm256_setzero_ps(); 4];
        let mut i = 0;
        // SAFETY (loads below): every load is of 8 elements from i + 8 j, below n.
        while i + 32 <= n {
            for (j, acc) in acc.iter_mut().enumerate() {
                let (a8, x8) = unsafe { (widen8(a, i + 8 * j), _mm256_loadu_ps(x.as_ptr().add(i + 8 * j))) };
                *acc = _mm256_fmadd_ps(a8, x8, *acc);
            }
            i += 32;
        }
        while i + 8 <= n {
            let (a8, x8) = unsafe { (widen8(a, i), _mm256_loadu_ps(x.as_ptr().add(i))) };
            acc[0] = _mm256_fmadd_ps(a8, x8, acc[0]);
            i += 8;
        }
        let sum = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
        let pair = _mm_add_ps(_mm256_castps256_ps128(sum), _mm256_extractf128_ps(sum, 1));
        let pair = _mm_add_ps(pair, _mm_movehl_ps(pair, pair));
        let mut total = _mm_cvtss_f32(_mm_add_ss(pair, _mm_shuffle_ps(pair, pair, 1)));
        for (a, x) in a[i..n].iter().zip(&x[i..n]) {
            total = a.to_f32().mul_add(*x, total);
        }
        total
    }

    /// `y += t · b` over the shorter of the two (fused multiply-adds, as the tail's `mul_add`,
    /// so an output's value does not depend on where a thread's share starts).
    #[target_feature(enable = "avx2,fma,f16c")]
    fn axpy(t: f32, b: &[f16], y: &mut [f32]) {
        let n = b.len().min(y.len());
        let t8 = _mm256_set1_ps(t);
        let mut i = 0;
        while i + 8 <= n {
            // SAFETY: 8 elements from i on are in `b` and `y` (i + 8 <= n).
            unsafe {
                let sum = _mm256_fmadd_ps(t8, widen8(b, i), _mm256_loadu_ps(y.as_ptr().add(i)));
                _mm256_storeu_ps(y.as_mut_ptr().add(i), sum);
            }
            i += 8;
        }
        for (y, b) in y[i..n].iter_mut().zip(&b[i..n]) {
            *y = t.mul_add(b.to_f32(), *y);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(n: usize, seed: u32) -> Vec<f32> {
        (0..n).map(|i| ((i as u32).wrapping_mul(2654435761).wrapping_add(seed) % 2001) as f32 / 1000.0 - 1.0).collect()
    }

    fn halves(n: usize, seed: u32) -> Vec<f16> {
        values(n, seed).into_iter().map(f16::from_f32).collect()
    }

    /// The plain definition, in f64: y + Σ coef · B (A x).
    fn reference(x: &[f32], y: &[f32], terms: &[Term<'_>]) -> Vec<f64> {
        let mut out: Vec<f64> = y.iter().map(|v| *v as f64).collect();
        for term in terms {
            let rank = term.a.len() / x.len();
            for k in 0..rank {
                let t: f64 = (0..x.len()).map(|i| term.a[k * x.len() + i].to_f64() * x[i] as f64).sum();
                for (j, o) in out.iter_mut().enumerate() {
                    *o += term.coef as f64 * t * term.b_t[k * y.len() + j].to_f64();
                }
            }
        }
        out
    }

    #[test]
    fn rows_with_their_own_terms_match_the_definition() {
        // Widths that are not multiples of 8 or 32 exercise the vector loops' tails.
        let (input, output, rows) = (77, 23, 3);
        let x = values(rows * input, 1);
        let y0 = values(rows * output, 2);
        let (a1, b1) = (halves(4 * input, 3), halves(4 * output, 4));
        let (a2, b2) = (halves(2 * input, 5), halves(2 * output, 6));
        let one = Term { a: &a1, b_t: &b1, coef: 0.5 };
        let two = Term { a: &a2, b_t: &b2, coef: -2.0 };
        let terms = vec![vec![one], vec![], vec![one, two]];
        let mut y = y0.clone();
        add_rows(&x, input, &mut y, output, &terms);
        for (r, row_terms) in terms.iter().enumerate() {
            let want = reference(&x[r * input..][..input], &y0[r * output..][..output], row_terms);
            for (got, want) in y[r * output..][..output].iter().zip(&want) {
                assert!((*got as f64 - want).abs() < 1e-4, "row {r}: {got} vs {want}");
            }
            // The plain loops (CPUs without F16C) compute the same sums.
            let mut plain = y0[r * output..][..output].to_vec();
            add_row_range_plain(&x[r * input..][..input], &mut plain, 0, row_terms);
            for (got, want) in plain.iter().zip(&want) {
                assert!((*got as f64 - want).abs() < 1e-4, "row {r}, plain loops: {got} vs {want}");
            }
        }
        // The row without terms is untouched.
        assert_eq!(&y[output..2 * output], &y0[output..2 * output]);

        // Outputs in two shares (as two threads of a step own them) are the whole row's.
        let mut shares = y0[2 * output..].to_vec();
        let (left, right) = shares.split_at_mut(9);
        add_row_range(&x[2 * input..], left, 0, &terms[2]);
        add_row_range(&x[2 * input..], right, 9, &terms[2]);
        assert_eq!(shares, y[2 * output..]);
    }

    #[test]
    fn factors_that_do_not_fit_add_nothing() {
        let (input, output) = (16, 8);
        let x = values(input, 1);
        let (a, b) = (halves(2 * input + 1, 2), halves(2 * output, 3));
        let y0 = values(output, 4);
        let mut y = y0.clone();
        // A's length is not a multiple of the input; then a share past B's outputs.
        add_row_range(&x, &mut y, 0, &[Term { a: &a, b_t: &b, coef: 1.0 }]);
        add_row_range(&x, &mut y, 4, &[Term { a: &a[..2 * input], b_t: &b, coef: 1.0 }]);
        assert_eq!(y, y0);
    }
}
