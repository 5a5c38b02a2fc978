//! One decoding step (one new position per batch row) on the CPU, fused: every thread runs the
//! whole step in lockstep, owning a share of each projection's output rows and of the
//! attention heads, and the threads meet at a barrier between the steps that read what others
//! wrote.
//!
//! Why not candle's ops: a step of SmolLM2 is ~400 small ops, each of which allocates its output
//! and is a parallel region of its own (the other threads wake up, work, and wait at its end),
//! and candle has no SIMD kernel for Q4_1, the format the default model ships in. Here the
//! weights stay in their GGUF blocks ([`crate::kernels::qdot`]), each thread quantizes the activation it
//! needs itself (576 values: cheaper than a barrier), and a step costs 6 barriers a layer (10
//! when rows run different adapters).
//!
//! Rows are either requests (each at its own position, with its own cache or a row of a batch
//! cache) or the positions of one prompt (each attending to those before it): a prompt then
//! runs on the same quantized blocks and kernels as decoding, several positions per weight
//! row read. Each position's arithmetic is its own either way (attention reads every key,
//! its own included, from the cache, through [`crate::kernels::attend`]), so a row's result does not
//! depend on its batch, nor a prompt position's on where the prompt was cut.

use std::ops::Range;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{CpuStorage, Device, Storage, Tensor};

use crate::adapters::lora::BatchAdapters;
use crate::config::{ModelConfig, Projection};
use crate::error::{Error, Result};
use crate::kernels::attend;
use crate::kernels::lowrank::{self, Term};
use crate::kernels::qdot::{BlockFormat, BlockRows, Prefetch, QuantizedActivation, TILE_ROWS};
use crate::runtime::kv::KvCache;

/// One layer's weights for the fused step.
#[derive(Debug)]
pub(crate) struct DecodeLayer {
    pub(crate) attn_norm: Vec<f32>,
    pub(crate) mlp_norm: Vec<f32>,
    /// q, k, v, o, gate, up, down, in [`Projection::ALL`]'s order.
    pub(crate) weights: [BlockRows; 7],
    /// Biases of q, k and v (Qwen2).
    pub(crate) qkv_bias: Option<[Vec<f32>; 3]>,
}

/// The weights of a model whose projections are all in block formats [`crate::kernels::qdot`] runs.
#[derive(Debug)]
pub(crate) struct CpuDecoder {
    layers: Vec<DecodeLayer>,
    final_norm: Vec<f32>,
    /// The output head, when it is in such a format too (else the model's own, through candle).
    head: Option<BlockRows>,
    /// cos and sin of each position's rotary angles, [positions, head dim / 2].
    cos: Vec<f32>,
    sin: Vec<f32>,
    /// Bytes of the weights held here.
    bytes: usize,
}

/// A GGUF weight as [`BlockRows`], when its format has a kernel here.
pub(crate) fn block_rows(tensor: &QTensor) -> Result<Option<BlockRows>> {
    let format = match tensor.dtype() {
        GgmlDType::Q4_1 => BlockFormat::Q4_1,
        GgmlDType::Q8_0 => BlockFormat::Q8_0,
        _ => return Ok(None),
    };
    let (rows, cols) = tensor.shape().dims2()?;
    Ok(BlockRows::from_gguf_blocks(format, rows, cols, &tensor.data()?))
}

fn f32_values(tensor: &Tensor) -> Result<Vec<f32>> {
    Ok(tensor.flatten_all()?.to_dtype(candle_core::DType::F32)?.to_vec1()?)
}

impl CpuDecoder {
    /// Checks every shape against `config`; None when something does not fit (the step then
    /// runs through candle).
    pub(crate) fn new(
        config: &ModelConfig,
        layers: Vec<DecodeLayer>,
        final_norm: &Tensor,
        head: Option<BlockRows>,
        cos: &Tensor,
        sin: &Tensor,
    ) -> Result<Option<Self>> {
        let fits = layers.len() == config.num_layers
            && layers.iter().all(|l| {
                Projection::ALL.iter().zip(&l.weights).all(|(p, w)| {
                    let (input, output) = p.shape(config);
                    w.cols() == input && w.rows() == output
                }) && l.attn_norm.len() == config.hidden_size
                    && l.mlp_norm.len() == config.hidden_size
                    && l.qkv_bias.as_ref().is_none_or(|b| {
                        [Projection::Q, Projection::K, Projection::V]
                            .iter()
                            .zip(b)
                            .all(|(p, b)| b.len() == p.shape(config).1)
                    })
            })
            && head.as_ref().is_none_or(|h| h.cols() == config.hidden_size && h.rows() == config.vocab_size)
            && config.head_dim.is_multiple_of(2)
            && config.num_kv_heads > 0
            && config.num_heads.is_multiple_of(config.num_kv_heads);
        if !fits {
            return Ok(None);
        }
        let bytes = layers.iter().flat_map(|l| l.weights.iter().map(BlockRows::bytes)).sum::<usize>()
            + head.as_ref().map_or(0, BlockRows::bytes);
        Ok(Some(CpuDecoder {
            layers,
            final_norm: f32_values(final_norm)?,
            head,
            cos: f32_values(cos)?,
            sin: f32_values(sin)?,
            bytes,
        }))
    }

    /// Makes every projection's tiled copy for prompts (in parallel), or drops them.
    pub(crate) fn keep_tiles(&mut self, keep: bool) {
        use rayon::prelude::*;
        self.layers.par_iter_mut().flat_map(|l| l.weights.par_iter_mut()).for_each(|w| w.keep_tiles(keep));
    }

    /// Bytes of weights this decoder holds (besides the model's own copies).
    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }

    /// Runs one new token per row (`tokens`) after what the rows' caches hold and appends them;
    /// the logits of each row, [rows, vocab]. None for the plan that gathers adapters' factors
    /// for a GPU, or caches this step cannot use (the caller then runs candle's path).
    pub(crate) fn step(
        &self,
        model: &dyn ModelParts,
        tokens: &[u32],
        caches: StepCaches<'_>,
        adapters: &BatchAdapters,
    ) -> Result<Option<Tensor>> {
        let config = model.config();
        let rows = tokens.len();
        let prompt = matches!(caches, StepCaches::Prompt { .. });
        // Which cache, which of its batch rows, and which position each row runs at; and the
        // rows whose logits are computed (the last ones): a prompt's last position's, or none,
        // and a step's every row's.
        let (caches, slots, logit_rows): (Vec<&mut KvCache>, Vec<Slot>, usize) = match caches {
            StepCaches::Prompt { cache, logits } => {
                let start = cache.len();
                let slots = (0..rows).map(|r| Slot { cache: 0, batch: 0, start: start + r }).collect();
                (vec![cache], slots, usize::from(logits))
            }
            StepCaches::Batch(cache) => {
                let start = cache.len();
                (vec![cache], (0..rows).map(|r| Slot { cache: 0, batch: r, start }).collect(), rows)
            }
            StepCaches::Rows(caches) => {
                if caches.len() != rows {
                    return Err(Error::Model(format!("{} caches for {rows} rows", caches.len())));
                }
                let slots =
                    caches.iter().enumerate().map(|(r, c)| Slot { cache: r, batch: 0, start: c.len() }).collect();
                (caches, slots, rows)
            }
        };
        if let Some(slot) = slots.iter().find(|s| s.start + 1 > config.max_positions) {
            return Err(Error::ContextOverflow { needed: slot.start + 1, limit: config.max_positions });
        }
        let Some(held) = adapters.hold_factors(rows, None) else { return Ok(None) };
        // Each (layer, projection)'s terms per row.
        let mut terms: Vec<[Vec<Vec<Term<'_>>>; 7]> =
            (0..config.num_layers).map(|_| std::array::from_fn(|_| vec![Vec::new(); rows])).collect();
        for h in &held {
            let (input, output) = h.projection.shape(config);
            // Factors that do not fit: candle's path names the mismatch.
            let Some(term) = h.term(input, output).filter(|_| h.layer < config.num_layers) else { return Ok(None) };
            terms[h.layer][projection_index(h.projection)][h.row].push(term);
        }

        // Each cache's buffers must be what this step writes and reads: [its rows, kv heads,
        // capacity >= start, head dim] f32, contiguous, for every layer (or none yet).
        for (c, cache) in caches.iter().enumerate() {
            let batch = if prompt { 1 } else { slots.iter().filter(|s| s.cache == c).count() };
            let start = cache.len();
            if cache.layers() != config.num_layers {
                return Ok(None);
            }
            for layer in 0..config.num_layers {
                let (keys, values) = cache.layer_buffers(layer);
                if start > 0 && keys.is_none() {
                    return Ok(None);
                }
                for buffer in [keys, values].into_iter().flatten() {
                    let layout = buffer.layout();
                    let dims = buffer.dims();
                    let fits = buffer.dtype() == candle_core::DType::F32
                        && buffer.device().is_cpu()
                        && layout.is_contiguous()
                        && dims.len() == 4
                        && dims[0] == batch
                        && dims[1] == config.num_kv_heads
                        && dims[2] >= start
                        && dims[3] == config.head_dim;
                    if !fits {
                        return Ok(None);
                    }
                }
            }
        }
        let hidden = config.hidden_size;
        let mut x = Vec::with_capacity(rows * hidden);
        for &token in tokens {
            if token as usize >= config.vocab_size {
                return Err(Error::InvalidRequest(format!("token {token} is not in the vocabulary")));
            }
            x.extend(f32_values(&model.embeddings().narrow(0, token as usize, 1)?)?);
        }
        let q_width = config.num_heads * config.head_dim;
        let kv_width = config.num_kv_heads * config.head_dim;
        let buffers = Buffers {
            x: Shared::new(x),
            qkv: Shared::new(vec![0.0; rows * (q_width + 2 * kv_width)]),
            attended: Shared::new(vec![0.0; rows * q_width]),
            act: Shared::new(vec![0.0; rows * config.intermediate_size]),
            up: Shared::new(vec![0.0; rows * config.intermediate_size]),
            logits: Shared::new(vec![0.0; if self.head.is_some() { logit_rows * config.vocab_size } else { 0 }]),
        };
        // Steps of concurrent requests share the cores instead of each spinning on all of them
        // (spinning threads that outnumber the cores wait for each other's time slices).
        let active = ActiveStep::enter();
        let threads = (rayon::current_num_threads() / active.count()).clamp(1, 64);
        let run = Run {
            decoder: self,
            config,
            rows,
            slots: &slots,
            terms: &terms,
            buffers: &buffers,
            barrier: SpinBarrier::new(threads),
            threads,
            by_rows: adapters.rows_differ(),
            prompt,
            logit_rows,
            caches: caches.into_iter().map(Mutex::new).collect(),
            failure: Mutex::new(None),
        };
        std::thread::scope(|scope| {
            for index in 1..threads {
                let run = &run;
                scope.spawn(move || run.thread(index));
            }
            run.thread(0);
        });
        if let Some(error) = run.failure.into_inner().map_err(|_| Error::Model("a decoding thread failed".into()))? {
            return Err(error);
        }
        let positions = if prompt { rows } else { 1 };
        for cache in run.caches {
            cache.into_inner().map_err(|_| Error::Model("a decoding thread failed".into()))?.advance(positions);
        }
        let Buffers { x, logits, .. } = buffers;
        match (&self.head, logit_rows) {
            (_, 0) => Ok(Some(Tensor::zeros((0, config.vocab_size), candle_core::DType::F32, &Device::Cpu)?)),
            (Some(_), n) => Ok(Some(Tensor::from_vec(logits.into_inner(), (n, config.vocab_size), &Device::Cpu)?)),
            (None, n) => {
                let mut x = x.into_inner();
                x.drain(..(rows - n) * hidden);
                let x = Tensor::from_vec(x, (n, hidden), &Device::Cpu)?;
                Ok(Some(model.final_logits(&x)?))
            }
        }
    }
}

/// What a step needs of its model besides the decoder's own weights (the model implements it:
/// this file stays below the model's).
pub(crate) trait ModelParts {
    fn config(&self) -> &ModelConfig;
    /// The token embeddings, [vocab, hidden].
    fn embeddings(&self) -> &Tensor;
    /// The final norm and head over hidden states ([n, hidden]), for a decoder without its own
    /// head: logits [n, vocab], f32.
    fn final_logits(&self, hidden: &Tensor) -> Result<Tensor>;
}

/// The caches a step reads and appends to.
pub(crate) enum StepCaches<'c> {
    /// One cache for the whole batch: every row at the same position.
    Batch(&'c mut KvCache),
    /// One single-row cache per row, each at its own position (requests of a running batch).
    Rows(Vec<&'c mut KvCache>),
    /// Consecutive positions of one sequence (a piece of its prompt) after what its
    /// single-row cache holds: each row attends to the cache and to the rows before it. The
    /// logits are the last row's only, or none when `logits` is false.
    Prompt { cache: &'c mut KvCache, logits: bool },
}

/// Where one row of a step keeps its keys and values.
#[derive(Debug, Clone, Copy)]
struct Slot {
    /// Index into the step's caches.
    cache: usize,
    /// The row's index in that cache's batch.
    batch: usize,
    /// The row's position: tokens its cache already holds.
    start: usize,
}

fn projection_index(projection: Projection) -> usize {
    Projection::ALL.iter().position(|p| *p == projection).unwrap_or(0)
}

/// Buffers every thread reads whole and writes a share of, [rows, width] each.
struct Buffers {
    /// The residual stream.
    x: Shared,
    qkv: Shared,
    attended: Shared,
    /// silu(gate) · up.
    act: Shared,
    /// up before it joins `act` (rows with different adapters only).
    up: Shared,
    logits: Shared,
}

/// A buffer that several threads write disjoint parts of between barriers, through a raw
/// pointer taken once: the vector itself is not touched again until [`Shared::into_inner`].
struct Shared {
    values: Vec<f32>,
    start: *mut f32,
    len: usize,
}

// SAFETY: threads write disjoint ranges, and read only what a barrier (acquire/release) has
// ordered after the writes; see `Run::thread`.
unsafe impl Sync for Shared {}
unsafe impl Send for Shared {}

impl Shared {
    fn new(mut values: Vec<f32>) -> Self {
        let (start, len) = (values.as_mut_ptr(), values.len());
        Shared { values, start, len }
    }

    /// # Safety
    /// No other thread writes `range` until the next barrier.
    unsafe fn read(&self, range: Range<usize>) -> &[f32] {
        assert!(range.start <= range.end && range.end <= self.len);
        // SAFETY: in bounds (checked); the caller rules out writers.
        unsafe { std::slice::from_raw_parts(self.start.add(range.start), range.len()) }
    }

    /// # Safety
    /// No other thread reads or writes `range` until the next barrier.
    #[allow(clippy::mut_from_ref)]
    unsafe fn write(&self, range: Range<usize>) -> &mut [f32] {
        assert!(range.start <= range.end && range.end <= self.len);
        // SAFETY: in bounds (checked); the caller owns `range` alone.
        unsafe { std::slice::from_raw_parts_mut(self.start.add(range.start), range.len()) }
    }

    fn into_inner(self) -> Vec<f32> {
        self.values
    }
}

/// A barrier for threads that each have a core: they spin (then yield) instead of sleeping,
/// because a step's phases last microseconds. A thread that panics poisons it, so the others
/// panic too instead of waiting forever.
struct SpinBarrier {
    threads: usize,
    arrived: AtomicUsize,
    generation: AtomicUsize,
    poisoned: AtomicBool,
}

impl SpinBarrier {
    fn new(threads: usize) -> Self {
        SpinBarrier {
            threads,
            arrived: AtomicUsize::new(0),
            generation: AtomicUsize::new(0),
            poisoned: AtomicBool::new(false),
        }
    }

    fn wait(&self) {
        if self.threads == 1 {
            return;
        }
        let generation = self.generation.load(Ordering::Acquire);
        if self.arrived.fetch_add(1, Ordering::AcqRel) + 1 == self.threads {
            self.arrived.store(0, Ordering::Relaxed);
            self.generation.fetch_add(1, Ordering::AcqRel);
            return;
        }
        let mut spins = 0u32;
        while self.generation.load(Ordering::Acquire) == generation {
            if self.poisoned.load(Ordering::Relaxed) {
                panic!("another decoding thread panicked");
            }
            if spins < 4_000 {
                spins += 1;
                std::hint::spin_loop();
            } else {
                // More threads than free cores: let the one we wait for run.
                std::thread::yield_now();
            }
        }
    }
}

/// Fused steps running now, in this process.
static ACTIVE_STEPS: AtomicUsize = AtomicUsize::new(0);

/// Counts one step as running while it lives.
struct ActiveStep {
    count: usize,
}

impl ActiveStep {
    fn enter() -> Self {
        ActiveStep { count: ACTIVE_STEPS.fetch_add(1, Ordering::AcqRel) + 1 }
    }

    /// Steps running when this one started, itself included.
    fn count(&self) -> usize {
        self.count
    }
}

impl Drop for ActiveStep {
    fn drop(&mut self) {
        ACTIVE_STEPS.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Poisons the barrier if its thread unwinds.
struct PoisonOnPanic<'a>(&'a SpinBarrier);

impl Drop for PoisonOnPanic<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.poisoned.store(true, Ordering::Relaxed);
        }
    }
}

/// One step, shared by its threads.
struct Run<'a> {
    decoder: &'a CpuDecoder,
    config: &'a ModelConfig,
    rows: usize,
    slots: &'a [Slot],
    terms: &'a [[Vec<Vec<Term<'a>>>; 7]],
    buffers: &'a Buffers,
    barrier: SpinBarrier,
    threads: usize,
    /// Rows run different adapters: each row's LoRA deltas are added by the one thread that
    /// owns the row, over all outputs, after the base products (each factor read once).
    by_rows: bool,
    /// The rows are a prompt's consecutive positions of one cache: each attends to those
    /// before it.
    prompt: bool,
    /// Rows whose logits are computed: the last ones.
    logit_rows: usize,
    /// Thread 0 appends each layer's keys and values; the others only read what was there.
    caches: Vec<Mutex<&'a mut KvCache>>,
    failure: Mutex<Option<Error>>,
}

/// Thread `index`'s share of `0..total`, in multiples of `align`.
fn share(total: usize, threads: usize, index: usize, align: usize) -> Range<usize> {
    let chunk = total.div_ceil(threads).next_multiple_of(align);
    let start = (index * chunk).min(total);
    start..(start + chunk).min(total)
}

fn rms_norm(x: &[f32], weight: &[f32], eps: f32, out: &mut Vec<f32>) {
    let mean_square = x.iter().map(|v| v * v).sum::<f32>() / x.len() as f32;
    let scale = 1.0 / (mean_square + eps).sqrt();
    out.clear();
    out.extend(x.iter().zip(weight).map(|(v, w)| v * scale * w));
}

/// Per-thread scratch, reused across layers.
#[derive(Default)]
struct Scratch {
    normed: Vec<Vec<f32>>,
    quantized: Vec<QuantizedActivation>,
    out: Vec<f32>,
    up: Vec<f32>,
    query: Vec<f32>,
    scores: Vec<f32>,
}

impl<'a> Run<'a> {
    fn thread(&self, index: usize) {
        let _poison = PoisonOnPanic(&self.barrier);
        let mut scratch = Scratch {
            normed: vec![Vec::new(); self.rows],
            quantized: vec![QuantizedActivation::default(); self.rows],
            ..Default::default()
        };
        let c = self.config;
        let eps = c.rms_norm_eps as f32;
        let hidden = c.hidden_size;
        let (q_width, kv_width) = (c.num_heads * c.head_dim, c.num_kv_heads * c.head_dim);
        let qkv_width = q_width + 2 * kv_width;
        let b = self.buffers;
        let mine = share(self.rows, self.threads, index, 1);
        for (l, layer) in self.decoder.layers.iter().enumerate() {
            // q, k, v: each thread its share of each projection's rows.
            // SAFETY (all reads and writes of `Shared` below): every thread writes only its own
            // share (`share(.., index, ..)`) or thread 0 alone writes, and a barrier separates
            // each write from every read of the same values.
            self.normalize(&mut scratch, |r| unsafe { b.x.read(r * hidden..(r + 1) * hidden) }, &layer.attn_norm, eps);
            let mut offset = 0;
            let ranges: [Range<usize>; 3] =
                std::array::from_fn(|p| share(layer.weights[p].rows(), self.threads, index, self.align()));
            let mut prefetch = self.prefetch(l, 0..3, &mine, ranges.iter().map(Range::len).sum());
            for (p, (weight, range)) in layer.weights[..3].iter().zip(ranges).enumerate() {
                let n = range.len();
                scratch.out.resize(self.rows * n, 0.0);
                self.multiply(weight, &scratch.quantized, range.start, n, &mut scratch.out, &mut prefetch);
                for (r, normed) in scratch.normed.iter().enumerate() {
                    let out = unsafe {
                        b.qkv.write(r * qkv_width + offset + range.start..r * qkv_width + offset + range.end)
                    };
                    out.copy_from_slice(&scratch.out[r * n..(r + 1) * n]);
                    if let Some(bias) = &layer.qkv_bias {
                        out.iter_mut().zip(&bias[p][range.clone()]).for_each(|(o, b)| *o += b);
                    }
                    lowrank::add_row_range(normed, out, range.start, self.share_terms(l, p, r));
                }
                offset += weight.rows();
            }
            self.barrier.wait();
            if self.by_rows {
                let mut offset = 0;
                for (p, weight) in layer.weights[..3].iter().enumerate() {
                    for r in mine.clone() {
                        let start = r * qkv_width + offset;
                        let out = unsafe { b.qkv.write(start..start + weight.rows()) };
                        lowrank::add_row_range(&scratch.normed[r], out, 0, &self.terms[l][p][r]);
                    }
                    offset += weight.rows();
                }
                self.barrier.wait();
            }

            // The rows' keys and values go in first: each row attends to its own (and a
            // prompt's rows to those before them) from the cache, as every later step will.
            if index == 0 {
                self.append(l);
            }
            self.barrier.wait();
            // Attention: each thread its share of (row, key/value head) units, each unit the
            // query heads that read that key/value head.
            let units = share(self.rows * c.num_kv_heads, self.threads, index, 1);
            if !units.is_empty() {
                self.attend(l, units, &mut scratch);
            }
            self.barrier.wait();
            // o, added to the residual.
            let attended = |r: usize| unsafe { b.attended.read(r * q_width..(r + 1) * q_width) };
            self.add_to_residual(l, 3, attended, &mut scratch, index);

            // gate and up over the same share of the intermediate width: silu(gate) · up.
            self.normalize(&mut scratch, |r| unsafe { b.x.read(r * hidden..(r + 1) * hidden) }, &layer.mlp_norm, eps);
            let (gate, up) = (&layer.weights[4], &layer.weights[5]);
            let inter = c.intermediate_size;
            let range = share(inter, self.threads, index, self.align());
            let n = range.len();
            scratch.out.resize(self.rows * n, 0.0);
            scratch.up.resize(self.rows * n, 0.0);
            let mut prefetch = self.prefetch(l, 4..6, &mine, 2 * n);
            self.multiply(gate, &scratch.quantized, range.start, n, &mut scratch.out, &mut prefetch);
            self.multiply(up, &scratch.quantized, range.start, n, &mut scratch.up, &mut prefetch);
            let outputs = scratch.out.chunks_exact_mut(n.max(1)).zip(scratch.up.chunks_exact_mut(n.max(1)));
            for (r, (normed, (g, u))) in scratch.normed.iter().zip(outputs).enumerate() {
                let act = unsafe { b.act.write(r * inter + range.start..r * inter + range.end) };
                if self.by_rows {
                    // gate and up as they are; the row's owner adds its deltas, then silu · up.
                    act.copy_from_slice(g);
                    unsafe { b.up.write(r * inter + range.start..r * inter + range.end) }.copy_from_slice(u);
                    continue;
                }
                lowrank::add_row_range(normed, g, range.start, self.share_terms(l, 4, r));
                lowrank::add_row_range(normed, u, range.start, self.share_terms(l, 5, r));
                for ((a, g), u) in act.iter_mut().zip(g.iter()).zip(u.iter()) {
                    *a = g / (1.0 + (-g).exp()) * u;
                }
            }
            self.barrier.wait();
            if self.by_rows {
                for r in mine.clone() {
                    let g = unsafe { b.act.write(r * inter..(r + 1) * inter) };
                    let u = unsafe { b.up.write(r * inter..(r + 1) * inter) };
                    lowrank::add_row_range(&scratch.normed[r], g, 0, &self.terms[l][4][r]);
                    lowrank::add_row_range(&scratch.normed[r], u, 0, &self.terms[l][5][r]);
                    for (g, u) in g.iter_mut().zip(u.iter()) {
                        *g = *g / (1.0 + (-*g).exp()) * u;
                    }
                }
                self.barrier.wait();
            }

            // down, added to the residual.
            let act = |r: usize| unsafe { b.act.read(r * inter..(r + 1) * inter) };
            self.add_to_residual(l, 6, act, &mut scratch, index);
        }
        if let Some(head) = self.decoder.head.as_ref().filter(|_| self.logit_rows > 0) {
            let norm = &self.decoder.final_norm;
            let first = self.rows - self.logit_rows;
            for (i, r) in (first..self.rows).enumerate() {
                // SAFETY: x is not written after the last barrier.
                rms_norm(unsafe { b.x.read(r * hidden..(r + 1) * hidden) }, norm, eps, &mut scratch.normed[i]);
                scratch.quantized[i].quantize(&scratch.normed[i]);
            }
            let vocab = c.vocab_size;
            let range = share(vocab, self.threads, index, 16);
            let n = range.len();
            scratch.out.resize(self.logit_rows * n, 0.0);
            head.mul_rows(&scratch.quantized[..self.logit_rows], range.start, n, &mut scratch.out);
            for r in 0..self.logit_rows {
                let out = unsafe { b.logits.write(r * vocab + range.start..r * vocab + range.end) };
                out.copy_from_slice(&scratch.out[r * n..(r + 1) * n]);
            }
        }
    }

    /// Rows of a weight a thread's share starts and ends on: whole tiles for a prompt.
    fn align(&self) -> usize {
        if self.prompt { TILE_ROWS } else { 4 }
    }

    /// `out` = rows `start..start + n` of `weight` times every row's activation: a prompt's
    /// positions through the tiled kernel where it applies (each position's result its own,
    /// with fewer instructions per product), decoding rows through the per-row one.
    fn multiply(
        &self,
        weight: &BlockRows,
        xs: &[QuantizedActivation],
        start: usize,
        n: usize,
        out: &mut [f32],
        prefetch: &mut Prefetch<'_>,
    ) {
        if self.prompt && weight.mul_rows_tiled(xs, start, n, out) {
            return;
        }
        weight.mul_rows_prefetching(xs, start, n, out, prefetch);
    }

    /// Rows with different adapters: the factors of projections `projections` of layer `l`
    /// that this thread adds for the rows it owns (`mine`) after the base products, to request
    /// during those products (`weight_rows` rows of them).
    fn prefetch(&self, l: usize, projections: Range<usize>, mine: &Range<usize>, weight_rows: usize) -> Prefetch<'a> {
        if !self.by_rows {
            return Prefetch::none();
        }
        let terms: &'a [[Vec<Vec<Term<'a>>>; 7]] = self.terms;
        let mut spans = Vec::new();
        for p in projections {
            for r in mine.clone() {
                spans.extend(terms[l][p][r].iter().flat_map(|term| [term.a, term.b_t]));
            }
        }
        Prefetch::new(spans, weight_rows)
    }

    /// The LoRA terms a thread adds over its share of projection `p`'s outputs for row `r`:
    /// none when rows run different adapters (each row's owner adds them over all outputs).
    fn share_terms(&self, l: usize, p: usize, r: usize) -> &[Term<'_>] {
        if self.by_rows { &[] } else { &self.terms[l][p][r] }
    }

    /// `x[r] += W input(r)` plus the LoRA terms for every row `r`, for the two projections (o,
    /// down) whose outputs join the residual: this thread's share of the outputs, then (rows
    /// with different adapters) the deltas of the rows it owns; ends at a barrier.
    fn add_to_residual<'b>(
        &self,
        l: usize,
        p: usize,
        input: impl Fn(usize) -> &'b [f32],
        scratch: &mut Scratch,
        index: usize,
    ) {
        let hidden = self.config.hidden_size;
        let weight = &self.decoder.layers[l].weights[p];
        self.quantize(scratch, &input);
        let range = share(weight.rows(), self.threads, index, self.align());
        let n = range.len();
        scratch.out.resize(self.rows * n, 0.0);
        let mine = share(self.rows, self.threads, index, 1);
        let mut prefetch = self.prefetch(l, p..p + 1, &mine, n);
        self.multiply(weight, &scratch.quantized, range.start, n, &mut scratch.out, &mut prefetch);
        for (r, out) in scratch.out.chunks_exact_mut(n.max(1)).take(self.rows).enumerate() {
            lowrank::add_row_range(input(r), out, range.start, self.share_terms(l, p, r));
            // SAFETY: this share of the residual is this thread's alone until the barrier.
            let x = unsafe { self.buffers.x.write(r * hidden + range.start..r * hidden + range.end) };
            x.iter_mut().zip(out.iter()).for_each(|(x, o)| *x += o);
        }
        self.barrier.wait();
        if self.by_rows {
            for r in mine {
                // SAFETY: row r is this thread's alone until the barrier.
                let x = unsafe { self.buffers.x.write(r * hidden..(r + 1) * hidden) };
                lowrank::add_row_range(input(r), x, 0, &self.terms[l][p][r]);
            }
            self.barrier.wait();
        }
    }

    /// Each row of `input` normalized (kept for the LoRA terms) and quantized.
    fn normalize<'b>(&self, scratch: &mut Scratch, input: impl Fn(usize) -> &'b [f32], weight: &[f32], eps: f32) {
        for r in 0..self.rows {
            rms_norm(input(r), weight, eps, &mut scratch.normed[r]);
            scratch.quantized[r].quantize(&scratch.normed[r]);
        }
    }

    fn quantize<'b>(&self, scratch: &mut Scratch, input: impl Fn(usize) -> &'b [f32]) {
        for r in 0..self.rows {
            scratch.quantized[r].quantize(input(r));
        }
    }

    /// Rotates `v` (one head) in place by the angles of `position`.
    fn rotate(&self, v: &mut [f32], position: usize) {
        let half = self.config.head_dim / 2;
        let cos = &self.decoder.cos[position * half..][..half];
        let sin = &self.decoder.sin[position * half..][..half];
        if self.config.rope_interleaved {
            for i in 0..half {
                let (a, b) = (v[2 * i], v[2 * i + 1]);
                v[2 * i] = a * cos[i] - b * sin[i];
                v[2 * i + 1] = a * sin[i] + b * cos[i];
            }
        } else {
            for i in 0..half {
                let (a, b) = (v[i], v[i + half]);
                v[i] = a * cos[i] - b * sin[i];
                v[i + half] = b * cos[i] + a * sin[i];
            }
        }
    }

    /// Softmax attention of (row, key/value head) `units` over each row's cached positions,
    /// this one included (appended before): every query head of the unit reads each key and
    /// value once; the same kernel for a decoding step and a prompt.
    fn attend(&self, layer: usize, units: Range<usize>, scratch: &mut Scratch) {
        let c = self.config;
        let d = c.head_dim;
        let groups = c.num_heads / c.num_kv_heads;
        let (q_width, kv_width) = (c.num_heads * d, c.num_kv_heads * d);
        let qkv_width = q_width + 2 * kv_width;
        let scale = 1.0 / (d as f32).sqrt();
        // Units run row by row: the buffers of the row in hand, fetched when the row changes.
        let mut held: Option<(usize, Option<Tensor>, Option<Tensor>)> = None;
        for unit in units {
            let (r, kv_head) = (unit / c.num_kv_heads, unit % c.num_kv_heads);
            let slot = self.slots[r];
            if held.as_ref().is_none_or(|(row, ..)| *row != r) {
                let Ok(cache) = self.caches[slot.cache].lock() else { return };
                let (keys, values) = cache.layer_buffers(layer);
                held = Some((r, keys, values));
            }
            let Some((_, Some(keys), Some(values))) = held.as_ref() else { return };
            let (keys, values) = (keys.storage_and_layout(), values.storage_and_layout());
            // [rows, kv heads, capacity, d] f32, checked in `step`.
            let (Storage::Cpu(CpuStorage::F32(k)), Storage::Cpu(CpuStorage::F32(v))) = (&*keys.0, &*values.0) else {
                return;
            };
            let capacity = keys.1.dims()[2];
            // Where this row's kv head starts.
            let base = (slot.batch * c.num_kv_heads + kv_head) * capacity * d;
            let positions = slot.start + 1;
            let heads = kv_head * groups..(kv_head + 1) * groups;
            // SAFETY: q was written before the last barrier and nobody writes it now.
            let qkv = unsafe { self.buffers.qkv.read(r * qkv_width..(r + 1) * qkv_width) };
            scratch.query.clear();
            scratch.query.extend_from_slice(&qkv[heads.start * d..heads.end * d]);
            for query in scratch.query.chunks_exact_mut(d) {
                self.rotate(query, slot.start);
            }
            // SAFETY: this unit's heads of row r are this thread's alone.
            let out =
                unsafe { self.buffers.attended.write(r * q_width + heads.start * d..r * q_width + heads.end * d) };
            let k = &k[keys.1.start_offset() + base..][..positions * d];
            let v = &v[values.1.start_offset() + base..][..positions * d];
            let cached = attend::Cached { keys: k, values: v, positions, width: d };
            attend::group(&scratch.query, cached, scale, &mut scratch.scores, out);
        }
    }

    /// Appends this position's (rotated) keys and values of `layer` to each row's cache; on
    /// failure, records it (the step then fails) and the threads still meet at every barrier.
    fn append(&self, layer: usize) {
        let result = (|| -> Result<()> {
            let c = self.config;
            let d = c.head_dim;
            let (q_width, kv_width) = (c.num_heads * d, c.num_kv_heads * d);
            let qkv_width = q_width + 2 * kv_width;
            for (index, cache) in self.caches.iter().enumerate() {
                // This cache's rows, in its batch order (slots list them so).
                let rows: Vec<(usize, Slot)> =
                    self.slots.iter().copied().enumerate().filter(|(_, s)| s.cache == index).collect();
                let Some(&(_, first)) = rows.first() else { continue };
                let mut keys = Vec::with_capacity(rows.len() * kv_width);
                let mut values = Vec::with_capacity(rows.len() * kv_width);
                for &(r, slot) in &rows {
                    // SAFETY: q, k and v are not written again in this layer.
                    let qkv = unsafe { self.buffers.qkv.read(r * qkv_width..(r + 1) * qkv_width) };
                    for head in 0..c.num_kv_heads {
                        let mut key = qkv[q_width + head * d..][..d].to_vec();
                        self.rotate(&mut key, slot.start);
                        keys.extend(key);
                    }
                    values.extend_from_slice(&qkv[q_width + kv_width..]);
                }
                let (keys, values) = if self.prompt {
                    // Rows are positions of one sequence: [1, kv heads, rows, d].
                    let n = rows.len();
                    let by_head = |v: Vec<f32>| -> Vec<f32> {
                        let mut out = Vec::with_capacity(v.len());
                        for h in 0..c.num_kv_heads {
                            for r in 0..n {
                                out.extend_from_slice(&v[(r * c.num_kv_heads + h) * d..][..d]);
                            }
                        }
                        out
                    };
                    let shape = (1, c.num_kv_heads, n, d);
                    (
                        Tensor::from_vec(by_head(keys), shape, &Device::Cpu)?,
                        Tensor::from_vec(by_head(values), shape, &Device::Cpu)?,
                    )
                } else {
                    let shape = (rows.len(), c.num_kv_heads, 1, d);
                    (Tensor::from_vec(keys, shape, &Device::Cpu)?, Tensor::from_vec(values, shape, &Device::Cpu)?)
                };
                let mut cache = cache.lock().map_err(|_| Error::Model("a decoding thread failed".into()))?;
                cache.append_layer(layer, &keys, &values, first.start)?;
            }
            Ok(())
        })();
        if let Err(error) = result
            && let Ok(mut failure) = self.failure.lock()
        {
            failure.get_or_insert(error);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_cover_every_row_once_in_aligned_pieces() {
        for (total, threads, align) in [(960, 2, 4), (49152, 3, 16), (5, 4, 4), (0, 2, 4), (7, 1, 1)] {
            let mut covered = vec![0; total];
            for index in 0..threads {
                let range = share(total, threads, index, align);
                assert!(range.start.is_multiple_of(align) || range.is_empty());
                covered[range].iter_mut().for_each(|c| *c += 1);
            }
            assert!(covered.iter().all(|c| *c == 1), "{total} over {threads}");
        }
    }

    #[test]
    fn a_barrier_orders_writes_before_reads_across_threads() {
        let threads = 3;
        let barrier = SpinBarrier::new(threads);
        let shared = Shared::new(vec![0.0; threads]);
        let sums = Mutex::new(Vec::new());
        std::thread::scope(|scope| {
            for index in 0..threads {
                let (barrier, shared, sums) = (&barrier, &shared, &sums);
                scope.spawn(move || {
                    for round in 1..=50 {
                        // SAFETY: each thread writes its own element; reads follow a barrier.
                        unsafe { shared.write(index..index + 1)[0] = round as f32 };
                        barrier.wait();
                        let total: f32 = unsafe { shared.read(0..threads) }.iter().sum();
                        barrier.wait();
                        sums.lock().unwrap().push((round, total));
                    }
                });
            }
        });
        for (round, total) in sums.into_inner().unwrap() {
            assert_eq!(total, (round * threads) as f32);
        }
    }
}
