//! LoRA deltas for one decoding step on the CPU, every row with its own adapters, in one pass.
//!
//! A decoding step multiplies one activation row per request by rank-r factors: tiny products
//! (576 x 16) for which candle's batched matmul makes one gemm call per row and per factor, and
//! the calls, not the arithmetic, were most of a mixed-adapter step (3,360 calls a step at batch
//! 8). Here each row runs its own terms directly on the factors' storage: `t = A x` as dot
//! products over A's contiguous rows, then `y += B t` as scaled rows of the stored Bᵀ.

use rayon::prelude::*;

/// One adapter's factors for one projection, as stored: A is `rank x input` and Bᵀ is
/// `rank x output`, both row-major; `coef` is the adapter's scale times its weight in the mix.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Term<'a> {
    pub a: &'a [f32],
    pub b_t: &'a [f32],
    pub coef: f32,
}

/// `y[r] += Σ coef · B (A x[r])` over row r's terms, for `x` [rows, input] and `y` [rows,
/// output], both row-major. Rows run in parallel when there are several.
pub(crate) fn add_rows(x: &[f32], input: usize, y: &mut [f32], output: usize, terms: &[Vec<Term<'_>>]) {
    let rows = terms.len();
    debug_assert_eq!(x.len(), rows * input);
    debug_assert_eq!(y.len(), rows * output);
    let run = |((y, x), terms): ((&mut [f32], &[f32]), &Vec<Term<'_>>)| add_row(x, y, terms);
    if rows > 1 {
        y.par_chunks_mut(output).zip(x.par_chunks(input)).zip(terms.par_iter()).for_each(run);
    } else {
        y.chunks_mut(output).zip(x.chunks(input)).zip(terms.iter()).for_each(run);
    }
}

fn add_row(x: &[f32], y: &mut [f32], terms: &[Term<'_>]) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
        // SAFETY: the CPU has the features this copy was compiled for (checked just above).
        unsafe { add_row_fma(x, y, terms) };
        return;
    }
    add_row_with::<false>(x, y, terms);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn add_row_fma(x: &[f32], y: &mut [f32], terms: &[Term<'_>]) {
    add_row_with::<true>(x, y, terms);
}

/// `FMA` picks fused multiply-adds, which are only fast where the CPU has them (otherwise
/// `mul_add` is a library call per element).
#[inline(always)]
fn add_row_with<const FMA: bool>(x: &[f32], y: &mut [f32], terms: &[Term<'_>]) {
    add_row_range_with::<FMA>(x, y, 0, terms);
}

/// `y += Σ coef · B (A x)` for outputs `start..start + y.len()` of one row: the share of a
/// projection's outputs one thread of a decoding step owns ([`crate::decode`]).
pub(crate) fn add_row_range(x: &[f32], y: &mut [f32], start: usize, terms: &[Term<'_>]) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
        // SAFETY: the CPU has the features this copy was compiled for (checked just above).
        unsafe { add_row_range_fma(x, y, start, terms) };
        return;
    }
    add_row_range_with::<false>(x, y, start, terms);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn add_row_range_fma(x: &[f32], y: &mut [f32], start: usize, terms: &[Term<'_>]) {
    add_row_range_with::<true>(x, y, start, terms);
}

#[inline(always)]
fn add_row_range_with<const FMA: bool>(x: &[f32], y: &mut [f32], start: usize, terms: &[Term<'_>]) {
    let input = x.len();
    for term in terms {
        let rank = term.a.len().checked_div(input).unwrap_or(0);
        if rank == 0 || term.b_t.len() < rank {
            continue;
        }
        let output = term.b_t.len() / rank;
        for (a_row, b_row) in term.a.chunks_exact(input).zip(term.b_t.chunks_exact(output)) {
            let t = term.coef * dot::<FMA>(a_row, x);
            for (y, b) in y.iter_mut().zip(&b_row[start..]) {
                *y = madd::<FMA>(t, *b, *y);
            }
        }
    }
}

#[inline(always)]
fn madd<const FMA: bool>(a: f32, b: f32, c: f32) -> f32 {
    if FMA { a.mul_add(b, c) } else { a * b + c }
}

/// A dot product with 16 independent partial sums, so that it vectorizes (a single running
/// sum is a chain the compiler may not reorder).
#[inline(always)]
fn dot<const FMA: bool>(a: &[f32], b: &[f32]) -> f32 {
    const LANES: usize = 16;
    let mut acc = [0f32; LANES];
    let mut a_blocks = a.chunks_exact(LANES);
    let mut b_blocks = b.chunks_exact(LANES);
    for (a, b) in a_blocks.by_ref().zip(b_blocks.by_ref()) {
        for lane in 0..LANES {
            acc[lane] = madd::<FMA>(a[lane], b[lane], acc[lane]);
        }
    }
    let mut tail = 0f32;
    for (a, b) in a_blocks.remainder().iter().zip(b_blocks.remainder()) {
        tail = madd::<FMA>(*a, *b, tail);
    }
    let mut width = LANES;
    while width > 1 {
        width /= 2;
        for lane in 0..width {
            acc[lane] += acc[lane + width];
        }
    }
    acc[0] + tail
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(n: usize, seed: u32) -> Vec<f32> {
        (0..n).map(|i| ((i as u32).wrapping_mul(2654435761).wrapping_add(seed) % 2001) as f32 / 1000.0 - 1.0).collect()
    }

    /// The plain definition, in f64: y + Σ coef · B (A x).
    fn reference(x: &[f32], y: &[f32], terms: &[Term<'_>]) -> Vec<f64> {
        let mut out: Vec<f64> = y.iter().map(|v| *v as f64).collect();
        for term in terms {
            let rank = term.a.len() / x.len();
            for k in 0..rank {
                let t: f64 = (0..x.len()).map(|i| term.a[k * x.len() + i] as f64 * x[i] as f64).sum();
                for (j, o) in out.iter_mut().enumerate() {
                    *o += term.coef as f64 * t * term.b_t[k * y.len() + j] as f64;
                }
            }
        }
        out
    }

    #[test]
    fn rows_with_their_own_terms_match_the_definition() {
        // Widths that are not multiples of 16 exercise the dot product's tail.
        let (input, output, rows) = (37, 23, 3);
        let x = values(rows * input, 1);
        let y0 = values(rows * output, 2);
        let (a1, b1) = (values(4 * input, 3), values(4 * output, 4));
        let (a2, b2) = (values(2 * input, 5), values(2 * output, 6));
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
}
