//! The CPU kernels: quantized dot products on GGUF blocks, low-rank LoRA terms, attention.

pub(crate) mod attend;
pub(crate) mod lowrank;
pub(crate) mod qdot;

#[cfg(target_arch = "x86_64")]
pub(crate) mod simd {
    use std::arch::x86_64::*;

    /// The sum of a vector's eight lanes, in a fixed order.
    ///
    /// # Safety
    /// The caller has AVX.
    #[inline(always)]
    pub(crate) unsafe fn horizontal_sum(v: __m256) -> f32 {
        unsafe {
            let pair = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
            let pair = _mm_add_ps(pair, _mm_movehl_ps(pair, pair));
            _mm_cvtss_f32(_mm_add_ss(pair, _mm_shuffle_ps(pair, pair, 1)))
        }
    }
}
