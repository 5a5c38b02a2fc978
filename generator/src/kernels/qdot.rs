//! Quantized matrix-vector products for one decoding step on the CPU, on the weights in the
//! block formats GGUF stores them in (Q4_1 and Q8_0).
//!
//! Decoding a token reads every weight once, so on a small CPU a step is bound by memory
//! traffic. candle multiplies Q4_1 with scalar loops only, so the loader converts it to Q8_0
//! (and pads it for candle's VNNI tiles): for SmolLM2 that is 1.9 times the bytes a step reads.
//! Here the 4-bit blocks are read as stored, unpacked in registers and multiplied with the
//! activation quantized to int8 (AVX-512 VNNI `vpdpbusd`, AVX2 `vpmaddubsw`, or plain loops).
//! The arithmetic is llama.cpp's (and candle's) Q4_1 x Q8_1 and Q8_0 x Q8_0 dot products.
//!
//! Each row is stored as its blocks' quants followed by their f16 scales (and Q4_1's offsets),
//! not block after block: the scales of 8 blocks convert to f32 in one instruction.

use half::f16;

/// Values per block, in every format here.
pub(crate) const BLOCK: usize = 32;
/// Blocks whose scales are converted together.
const GROUP: usize = 8;

/// A weight block format, as GGUF (ggml) defines it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BlockFormat {
    /// 32 unsigned 4-bit quants `q`, a scale `d` and an offset `m`: `d * q + m`.
    Q4_1,
    /// 32 signed 8-bit quants and a scale: `d * q`.
    Q8_0,
}

impl BlockFormat {
    /// Bytes of one block as GGUF stores it (and as a row here stores it, rearranged).
    pub(crate) fn block_bytes(self) -> usize {
        match self {
            BlockFormat::Q4_1 => 20,
            BlockFormat::Q8_0 => 34,
        }
    }

    fn quant_bytes(self) -> usize {
        match self {
            BlockFormat::Q4_1 => 16,
            BlockFormat::Q8_0 => 32,
        }
    }
}

/// A (rows, cols) weight matrix in a block format, each row as its quants, then its scales,
/// then (Q4_1) its offsets.
#[derive(Debug, Clone)]
pub(crate) struct BlockRows {
    format: BlockFormat,
    rows: usize,
    cols: usize,
    data: Vec<u8>,
    /// The same Q4_1 weights laid out for many activations at once ([`Tiles`]): made when
    /// prompts are set to run fused ([`BlockRows::keep_tiles`]), else on first use.
    tiles: std::sync::OnceLock<Option<Tiles>>,
}

impl BlockRows {
    /// From GGUF's layout (blocks one after another, row after row); None when the sizes do
    /// not describe whole blocks.
    pub(crate) fn from_gguf_blocks(format: BlockFormat, rows: usize, cols: usize, stored: &[u8]) -> Option<Self> {
        if cols == 0 || !cols.is_multiple_of(BLOCK) || stored.len() != rows * cols / BLOCK * format.block_bytes() {
            return None;
        }
        let blocks = cols / BLOCK;
        let quants = format.quant_bytes();
        let mut data = Vec::with_capacity(stored.len());
        for row in stored.chunks_exact(blocks * format.block_bytes()) {
            let blocks_of_row = || row.chunks_exact(format.block_bytes());
            match format {
                // d (f16), m (f16), 16 bytes of nibbles.
                BlockFormat::Q4_1 => {
                    blocks_of_row().for_each(|b| data.extend_from_slice(&b[4..4 + quants]));
                    blocks_of_row().for_each(|b| data.extend_from_slice(&b[0..2]));
                    blocks_of_row().for_each(|b| data.extend_from_slice(&b[2..4]));
                }
                // d (f16), 32 signed bytes.
                BlockFormat::Q8_0 => {
                    blocks_of_row().for_each(|b| data.extend_from_slice(&b[2..2 + quants]));
                    blocks_of_row().for_each(|b| data.extend_from_slice(&b[0..2]));
                }
            }
        }
        Some(BlockRows { format, rows, cols, data, tiles: std::sync::OnceLock::new() })
    }

    pub(crate) fn rows(&self) -> usize {
        self.rows
    }

    pub(crate) fn cols(&self) -> usize {
        self.cols
    }

    pub(crate) fn bytes(&self) -> usize {
        self.data.len()
    }

    fn row_bytes(&self) -> usize {
        self.cols / BLOCK * self.format.block_bytes()
    }

    /// `out[r * n + i]` = row `start + i` · `xs[r]`, for `i < n` and every activation `r`.
    /// Each weight row is read from memory once and multiplied by every activation while it is
    /// in the cache: a batch's rows share one pass over the weights.
    ///
    /// Panics if the rows or the activations' width do not fit (callers size both from this
    /// matrix).
    pub(crate) fn mul_rows(&self, xs: &[QuantizedActivation], start: usize, n: usize, out: &mut [f32]) {
        self.mul_rows_prefetching(xs, start, n, out, &mut Prefetch::none());
    }

    /// [`BlockRows::mul_rows`], touching `prefetch`'s next cache lines after each weight row.
    pub(crate) fn mul_rows_prefetching(
        &self,
        xs: &[QuantizedActivation],
        start: usize,
        n: usize,
        out: &mut [f32],
        prefetch: &mut Prefetch<'_>,
    ) {
        self.mul_rows_on(Isa::detect(), xs, start, n, out, prefetch);
    }

    /// [`BlockRows::mul_rows`] on `isa`, which the CPU must have ([`Isa::available`]).
    fn mul_rows_on(
        &self,
        isa: Isa,
        xs: &[QuantizedActivation],
        start: usize,
        n: usize,
        out: &mut [f32],
        prefetch: &mut Prefetch<'_>,
    ) {
        assert!(start + n <= self.rows, "rows {start}+{n} of {}", self.rows);
        assert!(xs.iter().all(|x| x.qs.len() == self.cols), "activation width");
        assert_eq!(out.len(), xs.len() * n, "output size");
        let row_bytes = self.row_bytes();
        let rows = &self.data[start * row_bytes..(start + n) * row_bytes];
        assert!(Isa::available().contains(&isa), "{isa:?} on a CPU without it");
        match isa {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: the CPU has the features these copies were compiled for (checked).
            Isa::Vnni => unsafe { x86::mul_rows_vnni(self.format, rows, row_bytes, xs, out, prefetch) },
            #[cfg(target_arch = "x86_64")]
            // SAFETY: as above.
            Isa::Avx2 => unsafe { x86::mul_rows_avx2(self.format, rows, row_bytes, xs, out, prefetch) },
            Isa::Plain => {
                for (i, row) in rows.chunks_exact(row_bytes).enumerate() {
                    for (r, x) in xs.iter().enumerate() {
                        out[r * n + i] = dot_plain(self.format, row, x);
                    }
                    prefetch.row_done();
                }
            }
        }
    }
}

/// Memory a thread will read soon, touched a few cache lines at a time while it multiplies
/// weight rows. A batch's base products are bound by arithmetic and leave the memory bus
/// mostly idle; the LoRA factors of rows with different adapters, read right after them, are
/// bound by memory (8 adapters of rank 16 on SmolLM2: 78 MB a step). Requested during the
/// products, the factors are in the cache (L2, or the L3 that L2 spills into) when they are
/// read.
#[derive(Debug, Default)]
pub(crate) struct Prefetch<'a> {
    spans: Vec<&'a [half::f16]>,
    span: usize,
    offset: usize,
    lines_per_row: usize,
}

impl<'a> Prefetch<'a> {
    /// Cache lines (64 bytes) of f16 values.
    const LINE: usize = 32;

    pub(crate) fn none() -> Self {
        Prefetch::default()
    }

    /// `spans`, spread over the next `weight_rows` weight rows.
    pub(crate) fn new(spans: Vec<&'a [half::f16]>, weight_rows: usize) -> Self {
        let lines: usize = spans.iter().map(|s| s.len().div_ceil(Self::LINE)).sum();
        Prefetch { spans, span: 0, offset: 0, lines_per_row: lines.div_ceil(weight_rows.max(1)) }
    }

    /// Requests this row's share of the lines.
    #[inline(always)]
    fn row_done(&mut self) {
        let mut left = self.lines_per_row;
        while left > 0 && self.span < self.spans.len() {
            let span = self.spans[self.span];
            if self.offset >= span.len() {
                self.span += 1;
                self.offset = 0;
                continue;
            }
            #[cfg(target_arch = "x86_64")]
            // SAFETY: a prefetch is a hint that never faults; the address is inside `span`.
            unsafe {
                use std::arch::x86_64::{_MM_HINT_T1, _mm_prefetch};
                _mm_prefetch::<_MM_HINT_T1>(span[self.offset..].as_ptr().cast());
            }
            self.offset += Self::LINE;
            left -= 1;
        }
    }
}

/// Rows per tile of [`Tiles`]: one 512-bit register of i32 lanes.
pub(crate) const TILE_ROWS: usize = 16;

/// Q4_1 weights for many activations at once (prompts), as in the GEMM kernels of candle's
/// `repack_x86` and llama.cpp: rows in tiles of 16, each block's 32 values widened to bytes and
/// interleaved four at a time across the tile's rows, so one `vpdpbusd` multiplies four values
/// of sixteen rows by the same four of one activation (broadcast), into one lane per row: no
/// horizontal sums, each weight register reused for every activation. A (row, activation)
/// result is its lane's alone: the same bits whatever else is computed with it. Twice the bytes
/// of the blocks (8-bit values, f32 scales); only for CPUs with AVX-512 VNNI.
#[derive(Debug, Clone)]
pub(crate) struct Tiles {
    blocks: usize,
    /// [tile][block][4-value group (8)][row (16)][4] bytes.
    quants: Vec<u8>,
    /// [tile][block][row (16)]: the scale `d` and the offset `m` of each row's block.
    scales: Vec<f32>,
    offsets: Vec<f32>,
}

impl BlockRows {
    /// [`BlockRows::mul_rows`] for many activations (a prompt's positions) where this CPU and
    /// matrix allow the tiled layout: `start` and `n` multiples of [`TILE_ROWS`]. False (and
    /// `out` untouched) where they do not: the caller runs `mul_rows`.
    pub(crate) fn mul_rows_tiled(&self, xs: &[QuantizedActivation], start: usize, n: usize, out: &mut [f32]) -> bool {
        let Some(tiles) = self.tiles.get_or_init(|| self.tiled()).as_ref() else { return false };
        if !start.is_multiple_of(TILE_ROWS) || !n.is_multiple_of(TILE_ROWS) || start + n > self.rows {
            return false;
        }
        assert!(xs.iter().all(|x| x.qs.len() == self.cols), "activation width");
        assert_eq!(out.len(), xs.len() * n, "output size");
        #[cfg(target_arch = "x86_64")]
        {
            // SAFETY: `tiled` made tiles only where the CPU has AVX-512 VNNI; sizes checked above.
            unsafe { x86_tiles::mul(tiles, xs, start, n, out) };
            true
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            let _ = tiles;
            false
        }
    }

    /// Makes the tiled copy now (where it applies), so that no prompt waits for it; or drops it.
    pub(crate) fn keep_tiles(&mut self, keep: bool) {
        if keep {
            self.tiles.get_or_init(|| self.tiled());
        } else {
            self.tiles.take();
        }
    }

    /// The tiled copy of Q4_1 rows, where the CPU has AVX-512 VNNI and the rows fill whole tiles.
    fn tiled(&self) -> Option<Tiles> {
        if !tiles_available() || self.format != BlockFormat::Q4_1 || !self.rows.is_multiple_of(TILE_ROWS) {
            return None;
        }
        let blocks = self.cols / BLOCK;
        let tiles = self.rows / TILE_ROWS;
        let mut quants = vec![0u8; tiles * blocks * BLOCK * TILE_ROWS];
        let mut scales = vec![0f32; tiles * blocks * TILE_ROWS];
        let mut offsets = vec![0f32; tiles * blocks * TILE_ROWS];
        let row_bytes = self.row_bytes();
        for row in 0..self.rows {
            let (tile, lane) = (row / TILE_ROWS, row % TILE_ROWS);
            let stored = &self.data[row * row_bytes..(row + 1) * row_bytes];
            let half = |at: usize| f16::from_le_bytes([stored[at], stored[at + 1]]).to_f32();
            for b in 0..blocks {
                let packed = &stored[b * 16..(b + 1) * 16];
                // Low nibbles are values 0..16, high nibbles 16..32.
                let value = |j: usize| if j < 16 { packed[j] & 0x0F } else { packed[j - 16] >> 4 };
                let base = (tile * blocks + b) * BLOCK * TILE_ROWS;
                for group in 0..BLOCK / 4 {
                    for i in 0..4 {
                        quants[base + (group * TILE_ROWS + lane) * 4 + i] = value(group * 4 + i);
                    }
                }
                let at = (tile * blocks + b) * TILE_ROWS + lane;
                scales[at] = half(blocks * 16 + 2 * b);
                offsets[at] = half(blocks * 18 + 2 * b);
            }
        }
        Some(Tiles { blocks, quants, scales, offsets })
    }
}

#[cfg(target_arch = "x86_64")]
mod x86_tiles {
    use std::arch::x86_64::*;

    use super::{BLOCK, QuantizedActivation, TILE_ROWS, Tiles};

    /// Activations per pass over a tile's weights.
    const MANY: usize = 4;

    /// `out[a * n + i]` = row `start + i` · `xs[a]`.
    ///
    /// # Safety
    /// AVX-512 F/BW/VNNI; `start`, `n` multiples of 16 within the rows; `out` holds
    /// `xs.len() * n`; every activation as wide as the rows.
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    pub(super) unsafe fn mul(tiles: &Tiles, xs: &[QuantizedActivation], start: usize, n: usize, out: &mut [f32]) {
        for tile in start / TILE_ROWS..(start + n) / TILE_ROWS {
            let column = tile * TILE_ROWS - start;
            for (c, chunk) in xs.chunks(MANY).enumerate() {
                // SAFETY: as this function's.
                unsafe {
                    match chunk.len() {
                        1 => tile_times::<1>(tiles, tile, chunk, out, n, c * MANY, column),
                        2 => tile_times::<2>(tiles, tile, chunk, out, n, c * MANY, column),
                        3 => tile_times::<3>(tiles, tile, chunk, out, n, c * MANY, column),
                        _ => tile_times::<MANY>(tiles, tile, chunk, out, n, c * MANY, column),
                    }
                }
            }
        }
    }

    /// One tile of 16 rows times `A` activations (`xs[..A]`, the `first`th on), written at
    /// `column` of their output rows.
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    unsafe fn tile_times<const A: usize>(
        tiles: &Tiles,
        tile: usize,
        xs: &[QuantizedActivation],
        out: &mut [f32],
        n: usize,
        first: usize,
        column: usize,
    ) {
        let blocks = tiles.blocks;
        assert!(xs.len() >= A && tiles.quants.len() >= (tile + 1) * blocks * BLOCK * TILE_ROWS);
        assert!(
            xs[..A].iter().all(|x| x.qs.len() == blocks * BLOCK && x.scales.len() >= blocks && x.sums.len() >= blocks)
        );
        assert!(out.len() >= (first + A) * n && column + TILE_ROWS <= n);
        // SAFETY: every index below is within the sizes asserted above; the caller has the
        // instructions.
        unsafe {
            let mut acc = [_mm512_setzero_ps(); A];
            let mut off = [_mm512_setzero_ps(); A];
            for b in 0..blocks {
                let at = tile * blocks + b;
                let q = tiles.quants.as_ptr().add(at * BLOCK * TILE_ROWS);
                let w: [__m512i; 8] = std::array::from_fn(|g| _mm512_loadu_si512(q.add(g * 64).cast()));
                let d = _mm512_loadu_ps(tiles.scales.as_ptr().add(at * TILE_ROWS));
                let m = _mm512_loadu_ps(tiles.offsets.as_ptr().add(at * TILE_ROWS));
                for a in 0..A {
                    let x = &xs[a];
                    let values = x.qs.as_ptr().add(b * BLOCK).cast::<i32>();
                    let mut sum = _mm512_setzero_si512();
                    for (g, weights) in w.iter().enumerate() {
                        let four = _mm512_set1_epi32(values.add(g).read_unaligned());
                        sum = _mm512_dpbusd_epi32(sum, *weights, four);
                    }
                    let scale = _mm512_mul_ps(d, _mm512_set1_ps(*x.scales.get_unchecked(b)));
                    acc[a] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sum), scale, acc[a]);
                    off[a] = _mm512_fmadd_ps(m, _mm512_set1_ps(*x.sums.get_unchecked(b)), off[a]);
                }
            }
            for a in 0..A {
                let dst = out.as_mut_ptr().add((first + a) * n + column);
                _mm512_storeu_ps(dst, _mm512_add_ps(acc[a], off[a]));
            }
        }
    }
}

/// `x.round()` (half away from zero) for |x| < 2^23, without the libm call the baseline target
/// makes of it: truncation by conversion, then the exact remainder decides.
#[inline(always)]
fn round_half_away(x: f32) -> i32 {
    let t = x as i32;
    let rest = x - t as f32;
    t + i32::from(rest >= 0.5) - i32::from(rest <= -0.5)
}

/// Whether this CPU runs the tiled kernel for many activations ([`Tiles`]).
pub(crate) fn tiles_available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::is_x86_feature_detected as has;
        has!("avx512f") && has!("avx512bw") && has!("avx512vnni")
    }
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// An activation row quantized to int8 in blocks of 32 (ggml's Q8_1, which is Q8_0 plus each
/// block's sum): value `i` is `qs[i] * scales[i / 32]`. Buffers are reused between rows.
#[derive(Debug, Default, Clone)]
pub(crate) struct QuantizedActivation {
    qs: Vec<i8>,
    /// |qs|: Q8_0 x Q8_0 runs on unsigned-by-signed instructions with the signs moved over.
    abs: Vec<u8>,
    /// One per block, zero-padded to a multiple of [`GROUP`].
    scales: Vec<f32>,
    /// `scale * Σ q` per block (Q4_1's offset term), padded like `scales`.
    sums: Vec<f32>,
}

impl QuantizedActivation {
    /// Quantizes `x` (its length a multiple of 32) exactly as candle and ggml quantize an
    /// activation for Q4_1 or Q8_0 weights, scales rounded through f16 as they store them.
    pub(crate) fn quantize(&mut self, x: &[f32]) {
        debug_assert!(x.len().is_multiple_of(BLOCK));
        let blocks = x.len() / BLOCK;
        let padded = blocks.next_multiple_of(GROUP);
        self.qs.resize(x.len(), 0);
        self.abs.resize(x.len(), 0);
        self.scales.clear();
        self.sums.clear();
        for ((xs, qs), abs) in
            x.chunks_exact(BLOCK).zip(self.qs.chunks_exact_mut(BLOCK)).zip(self.abs.chunks_exact_mut(BLOCK))
        {
            let amax = xs.iter().fold(0f32, |m, v| m.max(v.abs()));
            let d = amax / 127.0;
            let inverse = if d != 0.0 { 1.0 / d } else { 0.0 };
            let mut sum = 0i32;
            for ((q, a), v) in qs.iter_mut().zip(abs.iter_mut()).zip(xs) {
                *q = round_half_away(v * inverse) as i8;
                *a = q.unsigned_abs();
                sum += *q as i32;
            }
            let scale = f16::from_f32(d);
            self.scales.push(scale.to_f32());
            // As candle rounds it (the sum to f16, then the product to f16), so that both paths
            // give the same numbers; ggml rounds `d * sum` once.
            self.sums.push((f16::from_f32(sum as f32) * scale).to_f32());
        }
        self.scales.resize(padded, 0.0);
        self.sums.resize(padded, 0.0);
    }
}

/// The instructions a product runs on, best first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Isa {
    #[cfg(target_arch = "x86_64")]
    Vnni,
    #[cfg(target_arch = "x86_64")]
    Avx2,
    Plain,
}

impl Isa {
    fn detect() -> Isa {
        Isa::available()[0]
    }

    /// What this CPU can run, best first (detected once).
    fn available() -> &'static [Isa] {
        static AVAILABLE: std::sync::OnceLock<Vec<Isa>> = std::sync::OnceLock::new();
        AVAILABLE.get_or_init(|| {
            let mut all = Vec::new();
            #[cfg(target_arch = "x86_64")]
            {
                use std::arch::is_x86_feature_detected as has;
                let avx2 = has!("avx2") && has!("fma") && has!("f16c");
                if avx2 && has!("avx512vnni") && has!("avx512vl") {
                    all.push(Isa::Vnni);
                }
                if avx2 {
                    all.push(Isa::Avx2);
                }
            }
            all.push(Isa::Plain);
            all
        })
    }
}

fn f16_at(bytes: &[u8], i: usize) -> f32 {
    f16::from_le_bytes([bytes[2 * i], bytes[2 * i + 1]]).to_f32()
}

/// One row (in this module's layout) · `x`, with plain loops: the definition the SIMD copies
/// must agree with.
fn dot_plain(format: BlockFormat, row: &[u8], x: &QuantizedActivation) -> f32 {
    let blocks = x.qs.len() / BLOCK;
    let quants = blocks * format.quant_bytes();
    let scales = &row[quants..quants + 2 * blocks];
    let mut total = 0f32;
    for b in 0..blocks {
        let xq = &x.qs[b * BLOCK..][..BLOCK];
        match format {
            BlockFormat::Q4_1 => {
                let q = &row[b * 16..][..16];
                let mut dot = 0i32;
                for j in 0..16 {
                    dot += (q[j] & 0x0F) as i32 * xq[j] as i32 + (q[j] >> 4) as i32 * xq[j + 16] as i32;
                }
                let offsets = &row[quants + 2 * blocks..];
                total += dot as f32 * f16_at(scales, b) * x.scales[b] + f16_at(offsets, b) * x.sums[b];
            }
            BlockFormat::Q8_0 => {
                let q = &row[b * BLOCK..][..BLOCK];
                let dot: i32 = q.iter().zip(xq).map(|(w, v)| (*w as i8) as i32 * *v as i32).sum();
                total += dot as f32 * f16_at(scales, b) * x.scales[b];
            }
        }
    }
    total
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    //! The helpers below are `#[inline(always)]` into the two entry points, which are compiled
    //! with the instructions they use: a helper called from anywhere else would run them on a
    //! CPU that may not have them, hence `unsafe`.

    use std::arch::x86_64::*;

    use super::{BLOCK, BlockFormat, GROUP, Prefetch, QuantizedActivation};
    use crate::kernels::simd::horizontal_sum;

    #[target_feature(enable = "avx2,fma,f16c,avx512vnni,avx512vl")]
    pub(super) fn mul_rows_vnni(
        format: BlockFormat,
        rows: &[u8],
        row_bytes: usize,
        xs: &[QuantizedActivation],
        out: &mut [f32],
        prefetch: &mut Prefetch<'_>,
    ) {
        // SAFETY: this function is compiled with every feature the helpers use.
        unsafe { mul_rows::<true>(format, rows, row_bytes, xs, out, prefetch) }
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) fn mul_rows_avx2(
        format: BlockFormat,
        rows: &[u8],
        row_bytes: usize,
        xs: &[QuantizedActivation],
        out: &mut [f32],
        prefetch: &mut Prefetch<'_>,
    ) {
        // SAFETY: compiled with avx2, fma and f16c; `VNNI = false` uses nothing more.
        unsafe { mul_rows::<false>(format, rows, row_bytes, xs, out, prefetch) }
    }

    /// Q4_1 rows against up to this many activations at once: each block is unpacked once.
    const MANY: usize = 4;

    #[inline(always)]
    unsafe fn mul_rows<const VNNI: bool>(
        format: BlockFormat,
        rows: &[u8],
        row_bytes: usize,
        xs: &[QuantizedActivation],
        out: &mut [f32],
        prefetch: &mut Prefetch<'_>,
    ) {
        let n = rows.len() / row_bytes;
        // SAFETY (every call below): the caller has the instructions; sizes are checked inside.
        for (i, row) in rows.chunks_exact(row_bytes).enumerate() {
            prefetch.row_done();
            if format == BlockFormat::Q8_0 {
                for (r, x) in xs.iter().enumerate() {
                    out[r * n + i] = unsafe { dot_q8_0::<VNNI>(row, x) };
                }
                continue;
            }
            for (c, chunk) in xs.chunks(MANY).enumerate() {
                let mut sums = [0f32; MANY];
                match chunk.len() {
                    1 => sums[0] = unsafe { dot_q4_1::<VNNI>(row, &chunk[0]) },
                    2 => unsafe { dot_q4_1_many::<VNNI, 2>(row, chunk, &mut sums) },
                    3 => unsafe { dot_q4_1_many::<VNNI, 3>(row, chunk, &mut sums) },
                    _ => unsafe { dot_q4_1_many::<VNNI, MANY>(row, chunk, &mut sums) },
                }
                for (k, sum) in sums.iter().take(chunk.len()).enumerate() {
                    out[(c * MANY + k) * n + i] = *sum;
                }
            }
        }
    }

    /// One Q4_1 row · `R` activations (`xs[..R]`) into `sums[..R]`: each block is unpacked once.
    /// Each activation's sum runs exactly as [`dot_q4_1`] runs it (even blocks into one
    /// accumulator, odd into another, offsets multiplied then added), so a row of a batch gets
    /// the same bits as the row alone: an answer does not depend on its batch.
    #[inline(always)]
    unsafe fn dot_q4_1_many<const VNNI: bool, const R: usize>(
        row: &[u8],
        xs: &[QuantizedActivation],
        sums: &mut [f32; MANY],
    ) {
        let blocks = xs[0].qs.len() / BLOCK;
        let padded = blocks.next_multiple_of(GROUP);
        assert!(xs.len() >= R && R <= MANY && row.len() >= blocks * 20);
        assert!(
            xs[..R].iter().all(|x| x.qs.len() == blocks * BLOCK && x.scales.len() >= padded && x.sums.len() >= padded)
        );
        let (scales, offsets) = (&row[blocks * 16..blocks * 18], &row[blocks * 18..blocks * 20]);
        let quants = row.as_ptr();
        // SAFETY: every block index below is < blocks and every scale index < padded (checked);
        // the caller has the instructions.
        unsafe {
            let low = _mm_set1_epi8(0x0F);
            // [even blocks, odd blocks] per activation, as in `dot_q4_1`.
            let mut acc = [[_mm256_setzero_ps(); 2]; R];
            let mut offset_acc = [_mm256_setzero_ps(); R];
            let mut f = [[0f32; GROUP]; R];
            for g in (0..blocks).step_by(GROUP) {
                let n = (blocks - g).min(GROUP);
                let (d, m) = (f16x8(scales, g, blocks), f16x8(offsets, g, blocks));
                for r in 0..R {
                    let x = &xs[r];
                    _mm256_storeu_ps(f[r].as_mut_ptr(), _mm256_mul_ps(d, _mm256_loadu_ps(x.scales.as_ptr().add(g))));
                    let offsets = _mm256_mul_ps(m, _mm256_loadu_ps(x.sums.as_ptr().add(g)));
                    offset_acc[r] = _mm256_add_ps(offset_acc[r], offsets);
                }
                for j in 0..n {
                    let b = g + j;
                    let packed = _mm_loadu_si128(quants.add(b * 16).cast());
                    let w = _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(packed, 4), low), _mm_and_si128(packed, low));
                    for r in 0..R {
                        let x = _mm256_loadu_si256(xs[r].qs.as_ptr().add(b * BLOCK).cast());
                        let dot = _mm256_cvtepi32_ps(dot_u8_i8::<VNNI>(w, x));
                        let lane = &mut acc[r][j & 1];
                        *lane = _mm256_fmadd_ps(dot, _mm256_set1_ps(f[r][j & 7]), *lane);
                    }
                }
            }
            for r in 0..R {
                sums[r] = horizontal_sum(_mm256_add_ps(acc[r][0], acc[r][1])) + horizontal_sum(offset_acc[r]);
            }
        }
    }

    /// Σ over 32 lanes of unsigned `a` times signed `b`, as 8 i32 sums: `vpdpbusd` with VNNI,
    /// else `vpmaddubsw` + `vpmaddwd` (no saturation: each pair's |a · b| sum stays under 2^15
    /// for the operands here, 4-bit or |int8| <= 127 times int8).
    #[inline(always)]
    unsafe fn dot_u8_i8<const VNNI: bool>(a: __m256i, b: __m256i) -> __m256i {
        unsafe {
            if VNNI {
                _mm256_dpbusd_epi32(_mm256_setzero_si256(), a, b)
            } else {
                _mm256_madd_epi16(_mm256_maddubs_epi16(a, b), _mm256_set1_epi16(1))
            }
        }
    }

    /// Scales (f16) of blocks `g..g + 8` of a row as f32; blocks past the row's end read as 0.
    #[inline(always)]
    unsafe fn f16x8(stored: &[u8], g: usize, blocks: usize) -> __m256 {
        let packed = if blocks - g >= GROUP {
            // SAFETY: 8 f16 (16 bytes) of this row's scales from block g on are in `stored`.
            unsafe { _mm_loadu_si128(stored[2 * g..2 * (g + GROUP)].as_ptr().cast()) }
        } else {
            let mut halves = [0u16; GROUP];
            for (i, h) in halves.iter_mut().take(blocks - g).enumerate() {
                *h = u16::from_le_bytes([stored[2 * (g + i)], stored[2 * (g + i) + 1]]);
            }
            // SAFETY: `halves` holds 8 u16.
            unsafe { _mm_loadu_si128(halves.as_ptr().cast()) }
        };
        // SAFETY: the caller has f16c.
        unsafe { _mm256_cvtph_ps(packed) }
    }

    /// Scales of blocks `g..g + 8` of a row times the activation's (`x_scales`, padded).
    #[inline(always)]
    unsafe fn group_scales(stored: &[u8], g: usize, blocks: usize, x_scales: &[f32]) -> __m256 {
        assert!(x_scales.len() >= g + GROUP, "activation scales are padded to whole groups");
        // SAFETY: `x_scales` holds at least g + 8 f32 (checked); the caller has the instructions.
        unsafe { _mm256_mul_ps(f16x8(stored, g, blocks), _mm256_loadu_ps(x_scales.as_ptr().add(g))) }
    }

    /// `acc + factor * Σ w · x` over block `b` of a Q4_1 row's quants and the activation.
    #[inline(always)]
    unsafe fn q4_1_block<const VNNI: bool>(
        quants: *const u8,
        xq: *const i8,
        b: usize,
        factor: f32,
        acc: __m256,
    ) -> __m256 {
        // SAFETY: the caller checked that block b of both lies in range, and has the instructions.
        unsafe {
            let packed = _mm_loadu_si128(quants.add(b * 16).cast());
            let low = _mm_set1_epi8(0x0F);
            // Low nibbles are values 0..16, high nibbles 16..32.
            let w = _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(packed, 4), low), _mm_and_si128(packed, low));
            let x = _mm256_loadu_si256(xq.add(b * BLOCK).cast());
            _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot_u8_i8::<VNNI>(w, x)), _mm256_set1_ps(factor), acc)
        }
    }

    /// The same for Q8_0: w · x = |x| · (w with x's sign), unsigned by signed.
    #[inline(always)]
    unsafe fn q8_0_block<const VNNI: bool>(
        quants: *const u8,
        x: &QuantizedActivation,
        b: usize,
        factor: f32,
        acc: __m256,
    ) -> __m256 {
        // SAFETY: as for `q4_1_block`.
        unsafe {
            let w = _mm256_loadu_si256(quants.add(b * BLOCK).cast());
            let xq = _mm256_loadu_si256(x.qs.as_ptr().add(b * BLOCK).cast());
            let xa = _mm256_loadu_si256(x.abs.as_ptr().add(b * BLOCK).cast());
            let sums = _mm256_cvtepi32_ps(dot_u8_i8::<VNNI>(xa, _mm256_sign_epi8(w, xq)));
            _mm256_fmadd_ps(sums, _mm256_set1_ps(factor), acc)
        }
    }

    // The blocks of a group alternate between two accumulators held in registers (named, not
    // an array indexed at run time, which the compiler keeps in memory).

    #[inline(always)]
    unsafe fn dot_q4_1<const VNNI: bool>(row: &[u8], x: &QuantizedActivation) -> f32 {
        let blocks = x.qs.len() / BLOCK;
        assert!(row.len() >= blocks * 20 && x.scales.len() >= blocks.next_multiple_of(GROUP));
        let (scales, offsets) = (&row[blocks * 16..blocks * 18], &row[blocks * 18..blocks * 20]);
        let (quants, xq) = (row.as_ptr(), x.qs.as_ptr());
        // SAFETY: every block index below is < blocks (checked sizes); the caller has the
        // instructions.
        unsafe {
            let (mut acc0, mut acc1, mut offset_acc) = (_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps());
            let mut f = [0f32; GROUP];
            for g in (0..blocks).step_by(GROUP) {
                let n = (blocks - g).min(GROUP);
                _mm256_storeu_ps(f.as_mut_ptr(), group_scales(scales, g, blocks, &x.scales));
                offset_acc = _mm256_add_ps(offset_acc, group_scales(offsets, g, blocks, &x.sums));
                let mut j = 0;
                while j + 1 < n {
                    acc0 = q4_1_block::<VNNI>(quants, xq, g + j, f[j & 7], acc0);
                    acc1 = q4_1_block::<VNNI>(quants, xq, g + j + 1, f[(j + 1) & 7], acc1);
                    j += 2;
                }
                if j < n {
                    acc0 = q4_1_block::<VNNI>(quants, xq, g + j, f[j & 7], acc0);
                }
            }
            horizontal_sum(_mm256_add_ps(acc0, acc1)) + horizontal_sum(offset_acc)
        }
    }

    #[inline(always)]
    unsafe fn dot_q8_0<const VNNI: bool>(row: &[u8], x: &QuantizedActivation) -> f32 {
        let blocks = x.qs.len() / BLOCK;
        assert!(row.len() >= blocks * 34 && x.scales.len() >= blocks.next_multiple_of(GROUP));
        assert!(x.abs.len() == x.qs.len());
        let scales = &row[blocks * BLOCK..blocks * (BLOCK + 2)];
        let quants = row.as_ptr();
        // SAFETY: as in `dot_q4_1`.
        unsafe {
            let (mut acc0, mut acc1) = (_mm256_setzero_ps(), _mm256_setzero_ps());
            let mut f = [0f32; GROUP];
            for g in (0..blocks).step_by(GROUP) {
                let n = (blocks - g).min(GROUP);
                _mm256_storeu_ps(f.as_mut_ptr(), group_scales(scales, g, blocks, &x.scales));
                let mut j = 0;
                while j + 1 < n {
                    acc0 = q8_0_block::<VNNI>(quants, x, g + j, f[j & 7], acc0);
                    acc1 = q8_0_block::<VNNI>(quants, x, g + j + 1, f[(j + 1) & 7], acc1);
                    j += 2;
                }
                if j < n {
                    acc0 = q8_0_block::<VNNI>(quants, x, g + j, f[j & 7], acc0);
                }
            }
            horizontal_sum(_mm256_add_ps(acc0, acc1))
        }
    }
}

#[cfg(test)]
mod tests {
    use candle_core::quantized::{GgmlDType, QTensor};
    use candle_core::{Device, Tensor};

    use super::*;

    fn values(n: usize, seed: u32) -> Vec<f32> {
        (0..n).map(|i| ((i as u32).wrapping_mul(2654435761).wrapping_add(seed) % 2001) as f32 / 1000.0 - 1.0).collect()
    }

    /// `rows` x `cols` random weights quantized by candle to `dtype`: our rows and the
    /// exact values the blocks encode.
    fn weights(rows: usize, cols: usize, dtype: GgmlDType, format: BlockFormat) -> (BlockRows, Vec<f32>) {
        let w = Tensor::from_vec(values(rows * cols, 7), (rows, cols), &Device::Cpu).unwrap();
        let q = QTensor::quantize(&w, dtype).unwrap();
        let exact = q.dequantize(&Device::Cpu).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let blocks = BlockRows::from_gguf_blocks(format, rows, cols, &q.data().unwrap()).unwrap();
        (blocks, exact)
    }

    #[test]
    fn products_match_the_blocks_values_times_the_quantized_activation() {
        // 18 blocks (SmolLM2's 576): two whole groups of scales and a partial one.
        for (cols, dtype, format) in [
            (576, GgmlDType::Q4_1, BlockFormat::Q4_1),
            (576, GgmlDType::Q8_0, BlockFormat::Q8_0),
            (64, GgmlDType::Q4_1, BlockFormat::Q4_1),
            (96, GgmlDType::Q4_1, BlockFormat::Q4_1),
            (96, GgmlDType::Q8_0, BlockFormat::Q8_0),
            (256, GgmlDType::Q8_0, BlockFormat::Q8_0),
        ] {
            let rows = 11;
            let (w, exact) = weights(rows, cols, dtype, format);
            let x: Vec<f32> = values(cols, 3).iter().map(|v| v * 3.0).collect();
            let mut xq = QuantizedActivation::default();
            xq.quantize(&x);
            // A second activation in the same pass: its own products, in its own part of `out`.
            let mut doubled = QuantizedActivation::default();
            doubled.quantize(&x.iter().map(|v| 2.0 * v).collect::<Vec<_>>());
            let dequantized: Vec<f32> = (0..cols).map(|i| xq.qs[i] as f32 * xq.scales[i / BLOCK]).collect();
            // The quantized activation is x within half a step (and the scale's f16 rounding).
            for (i, (a, b)) in x.iter().zip(&dequantized).enumerate() {
                assert!((a - b).abs() <= 0.6 * xq.scales[i / BLOCK] + 1e-6, "{i}: {a} vs {b}");
            }
            // Rows 3..9, through every kernel this CPU can run, then the plain loops.
            for &isa in Isa::available() {
                // Five activations: a pass over four at once and one alone.
                let five = [xq.clone(), doubled.clone(), xq.clone(), doubled.clone(), doubled.clone()];
                let mut out = vec![0f32; 30];
                // Prefetching lines of other memory (5 lines over 6 rows, an empty span,
                // spans of odd lengths) changes nothing, and requests every line.
                let (near, far) = (vec![half::f16::ONE; 70], vec![half::f16::ZERO; 33]);
                let mut prefetch = Prefetch::new(vec![&near[..], &[], &far[..]], 6);
                w.mul_rows_on(isa, &five, 3, 6, &mut out, &mut prefetch);
                assert_eq!((prefetch.span, prefetch.offset), (3, 0), "every line requested");
                let mut one = vec![0f32; 6];
                w.mul_rows_on(isa, &five[..1], 3, 6, &mut one, &mut Prefetch::none());
                // Each activation's products as if alone (sums in another order: within rounding).
                for (k, factor) in [1.0, 2.0, 1.0, 2.0, 2.0].into_iter().enumerate() {
                    for (got, alone) in out[6 * k..6 * k + 6].iter().zip(&one) {
                        let want = factor * alone;
                        assert!(
                            (got - want).abs() <= 1e-5 * (1.0 + want.abs()),
                            "{isa:?} {format:?} {k}: {got} vs {want}"
                        );
                    }
                }
                let (out, twice) = out.split_at(6);
                for (i, (got, got_twice)) in out.iter().zip(twice).enumerate() {
                    // Doubling the input doubles the scales and keeps the quants: exactly twice.
                    assert_eq!(*got_twice, 2.0 * got, "{isa:?} {format:?}: row {i}");
                    let row = &exact[(3 + i) * cols..][..cols];
                    let want: f64 = row.iter().zip(&dequantized).map(|(a, b)| *a as f64 * *b as f64).sum();
                    let plain = dot_plain(format, &w.data[(3 + i) * w.row_bytes()..][..w.row_bytes()], &xq);
                    // Q4_1's offset term uses the f16-rounded block sums, as ggml does.
                    let tolerance = 2e-3 * (1.0 + want.abs());
                    assert!(
                        (*got as f64 - want).abs() < tolerance,
                        "{isa:?} {format:?} {cols}: row {i}: {got} vs {want}"
                    );
                    assert!((plain as f64 - want).abs() < tolerance, "plain {format:?}: {plain} vs {want}");
                }
            }
        }
    }

    /// The tiled layout (prompts) gives the blocks' products within rounding, and each
    /// activation's results the same bits however many activations are computed with it.
    /// The rounding of activations is `f32::round`'s, on every value a block's scaling gives.
    #[test]
    fn rounding_is_half_away_from_zero() {
        let mut x = -130.0f32;
        while x <= 130.0 {
            for v in [x, x.next_up(), x.next_down(), x + 0.5, x - 0.5, (x + 0.5).next_down(), (x - 0.5).next_up()] {
                assert_eq!(round_half_away(v), v.round() as i32, "{v}");
            }
            x += 0.25;
        }
    }

    #[test]
    fn tiled_products_match_and_do_not_depend_on_their_batch() {
        let (rows, cols) = (48, 576);
        let (w, _) = weights(rows, cols, GgmlDType::Q4_1, BlockFormat::Q4_1);
        let acts: Vec<QuantizedActivation> = (0..7)
            .map(|k| {
                let mut q = QuantizedActivation::default();
                q.quantize(&values(cols, 3 + k).iter().map(|v| v * (1.0 + k as f32)).collect::<Vec<_>>());
                q
            })
            .collect();
        let (start, n) = (16, 32);
        let mut tiled = vec![0f32; acts.len() * n];
        let vnni = tiles_available();
        assert_eq!(w.mul_rows_tiled(&acts, start, n, &mut tiled), vnni, "tiles exactly where the CPU has AVX-512 VNNI");
        if !vnni {
            return;
        }
        let mut plain = vec![0f32; acts.len() * n];
        w.mul_rows_on(Isa::Plain, &acts, start, n, &mut plain, &mut Prefetch::none());
        for (i, (got, want)) in tiled.iter().zip(&plain).enumerate() {
            assert!((got - want).abs() <= 1e-4 * (1.0 + want.abs()), "{i}: {got} vs {want}");
        }
        for (k, act) in acts.iter().enumerate() {
            let mut alone = vec![0f32; n];
            assert!(w.mul_rows_tiled(std::slice::from_ref(act), start, n, &mut alone));
            assert_eq!(alone, tiled[k * n..(k + 1) * n], "activation {k}: alone and with six others");
        }
        // Rows that are not whole tiles are left to the caller.
        assert!(!w.mul_rows_tiled(&acts, 8, 16, &mut vec![0f32; acts.len() * 16]));
    }

    /// The same products as candle's own quantized matmul (which quantizes the activation the
    /// same way), for the formats and widths a model has.
    #[test]
    fn products_match_candles_quantized_matmul() {
        use candle_core::Module;
        for (rows, cols, dtype, format) in [
            (96, 64, GgmlDType::Q8_0, BlockFormat::Q8_0),
            (40, 576, GgmlDType::Q8_0, BlockFormat::Q8_0),
            (64, 64, GgmlDType::Q4_1, BlockFormat::Q4_1),
            (40, 96, GgmlDType::Q4_1, BlockFormat::Q4_1),
        ] {
            let w = Tensor::from_vec(values(rows * cols, 11), (rows, cols), &Device::Cpu).unwrap();
            let q = QTensor::quantize(&w, dtype).unwrap();
            let blocks = BlockRows::from_gguf_blocks(format, rows, cols, &q.data().unwrap()).unwrap();
            let x: Vec<f32> = values(cols, 5).iter().map(|v| v * 0.7).collect();
            let want = candle_core::quantized::QMatMul::from_qtensor(q)
                .unwrap()
                .forward(&Tensor::from_vec(x.clone(), (1, cols), &Device::Cpu).unwrap())
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap();
            let mut xq = QuantizedActivation::default();
            xq.quantize(&x);
            for &isa in Isa::available() {
                let mut got = vec![0f32; rows];
                blocks.mul_rows_on(isa, std::slice::from_ref(&xq), 0, rows, &mut got, &mut Prefetch::none());
                for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                    assert!((g - w).abs() <= 1e-4 * (1.0 + w.abs()), "{isa:?} {format:?} {cols}: row {i}: {g} vs {w}");
                }
            }
        }
    }

    #[test]
    fn sizes_that_are_not_whole_blocks_are_refused() {
        assert!(BlockRows::from_gguf_blocks(BlockFormat::Q4_1, 2, 48, &[0; 60]).is_none(), "not whole blocks");
        assert!(BlockRows::from_gguf_blocks(BlockFormat::Q4_1, 2, 64, &[0; 79]).is_none(), "short data");
        assert!(BlockRows::from_gguf_blocks(BlockFormat::Q8_0, 2, 64, &[0; 136]).is_some());
    }
}
