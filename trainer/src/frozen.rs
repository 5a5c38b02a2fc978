//! The frozen base as training reads it: a generator [`Model`]'s weights, kept in the format
//! they were loaded in (quantized where the model is a GGUF) and dequantized one projection at
//! a time as the forward pass reaches it (QLoRA's idea: the base costs its quantized size
//! between steps), in Hugging Face's row order.
//!
//! The matmuls with frozen weights go through [`frozen_matmul`], whose backward pass gives
//! the input's gradient only: candle's own matmul also computes the weight's, which a frozen
//! weight never uses, and that is a third of a training step's arithmetic.

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp1, DType, Layout, Shape, Storage, Tensor};
use tributary_generator::{Model, ModelConfig, Projection};

use crate::error::Result;

/// x (m, k) times the transpose of a frozen weight w (n, k): (m, n).
pub(crate) fn frozen_matmul(x: &Tensor, w: &Tensor) -> Result<Tensor> {
    if x.device().is_cpu() && x.dtype() == DType::F32 && w.dtype() == DType::F32 {
        let x = x.contiguous()?;
        Ok(x.apply_op1(FrozenMatmul { w: w.contiguous()? })?)
    } else {
        // On a GPU, candle's matmul (its backward also computes the weight's gradient).
        Ok(x.matmul(&w.t()?)?)
    }
}

struct FrozenMatmul {
    w: Tensor,
}

impl CustomOp1 for FrozenMatmul {
    fn name(&self) -> &'static str {
        "frozen-matmul"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let (m, k) = layout.shape().dims2()?;
        let (n, k_w) = self.w.dims2()?;
        if k != k_w {
            candle_core::bail!("frozen-matmul: input has {k} columns, the weight {k_w}");
        }
        let (w_storage, w_layout) = self.w.storage_and_layout();
        let Storage::Cpu(w) = &*w_storage else { candle_core::bail!("frozen-matmul: weight not on the CPU") };
        let out = storage.matmul(w, (1, m, n, k), layout, &w_layout.transpose(0, 1)?)?;
        Ok((out, Shape::from((m, n))))
    }

    fn bwd(&self, _arg: &Tensor, _res: &Tensor, grad_res: &Tensor) -> candle_core::Result<Option<Tensor>> {
        Ok(Some(grad_res.matmul(&self.w)?))
    }
}

/// Dense f32 projections up to this many bytes are kept for the whole run instead of
/// dequantized at every forward pass (SmolLM2-135M's take 0.43 GB).
pub const DENSE_CACHE_BYTES: usize = 1 << 30;

/// A loaded model's weights, read for training.
pub struct FrozenBase<'m> {
    model: &'m Model,
    config: ModelConfig,
    /// Every projection's dense weight (Hugging Face order), when they fit [`DENSE_CACHE_BYTES`].
    dense: Option<Vec<[Tensor; 7]>>,
    /// (vocab, hidden), f32: read at every step, so dequantized once.
    head: Tensor,
    embeddings: Tensor,
    norms: Vec<(Tensor, Tensor)>,
    final_norm: Tensor,
    pub(crate) cos: Tensor,
    pub(crate) sin: Tensor,
}

impl<'m> FrozenBase<'m> {
    /// The base, its projections kept dense for the run when they fit [`DENSE_CACHE_BYTES`]
    /// (speed: a quantized projection's dequantization and its fresh pages cost as much as its
    /// matmul), else dequantized one at a time at each pass (memory: the QLoRA way).
    pub fn new(model: &'m Model) -> Result<Self> {
        Self::with_cache_budget(model, DENSE_CACHE_BYTES)
    }

    /// [`FrozenBase::new`] with another budget for the dense copies (0: never keep them).
    pub fn with_cache_budget(model: &'m Model, budget: usize) -> Result<Self> {
        let config = model.config().clone();
        let device = model.device();
        let f32 = |t: &Tensor| t.to_dtype(DType::F32);
        let norms = (0..config.num_layers)
            .map(|l| {
                let (a, m) = model.layer_norms(l)?;
                Ok((f32(a)?, f32(m)?))
            })
            .collect::<Result<Vec<_>>>()?;
        let half = config.head_dim / 2;
        let inv_freq: Vec<f32> =
            (0..half).map(|i| 1.0 / config.rope_theta.powf(2.0 * i as f32 / config.head_dim as f32)).collect();
        let inv_freq = Tensor::from_vec(inv_freq, (1, half), device)?;
        let positions =
            Tensor::arange(0u32, config.max_positions as u32, device)?.to_dtype(DType::F32)?.unsqueeze(1)?;
        let angles = positions.matmul(&inv_freq)?;
        let dense_bytes: usize = Projection::ALL
            .iter()
            .map(|p| {
                let (i, o) = p.shape(&config);
                i * o * 4
            })
            .sum::<usize>()
            * config.num_layers;
        let mut base = FrozenBase {
            head: f32(&model.head_weight()?)?,
            embeddings: f32(model.embedding_table())?,
            final_norm: f32(model.final_norm())?,
            norms,
            cos: angles.cos()?,
            sin: angles.sin()?,
            config,
            model,
            dense: None,
        };
        if dense_bytes <= budget {
            let layers = (0..base.config.num_layers)
                .map(|l| {
                    let weights = Projection::ALL.map(|p| base.dequantized(l, p));
                    let [q, k, v, o, gate, up, down] = weights;
                    Ok([q?, k?, v?, o?, gate?, up?, down?])
                })
                .collect::<Result<Vec<_>>>()?;
            base.dense = Some(layers);
        }
        Ok(base)
    }

    /// Whether the projections are kept dense for the run.
    pub fn keeps_dense(&self) -> bool {
        self.dense.is_some()
    }

    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    pub fn model(&self) -> &Model {
        self.model
    }

    pub(crate) fn embeddings(&self) -> &Tensor {
        &self.embeddings
    }

    pub(crate) fn head(&self) -> &Tensor {
        &self.head
    }

    pub(crate) fn norms(&self, layer: usize) -> &(Tensor, Tensor) {
        &self.norms[layer]
    }

    pub(crate) fn final_norm(&self) -> &Tensor {
        &self.final_norm
    }

    /// `projection`'s weight in `layer`: dense f32 (out, in), rows in Hugging Face's order
    /// (GGUF Llama files permute q/k rows for interleaved rotary embeddings; undone here, so
    /// the adapter trains in the order PEFT and every server expect).
    pub(crate) fn weight(&self, layer: usize, projection: Projection) -> Result<Tensor> {
        match &self.dense {
            Some(layers) => {
                let slot = Projection::ALL.iter().position(|p| *p == projection).unwrap_or_default();
                Ok(layers[layer][slot].clone())
            }
            None => self.dequantized(layer, projection),
        }
    }

    fn dequantized(&self, layer: usize, projection: Projection) -> Result<Tensor> {
        let w = self.model.projection_weight(layer, projection)?.to_dtype(DType::F32)?;
        Ok(self.hf_order(w, projection)?)
    }

    pub(crate) fn bias(&self, layer: usize, projection: Projection) -> Result<Option<Tensor>> {
        let Some(b) = self.model.projection_bias(layer, projection)? else { return Ok(None) };
        let b = b.to_dtype(DType::F32)?.unsqueeze(1)?;
        Ok(Some(self.hf_order(b, projection)?.squeeze(1)?))
    }

    /// GGUF row n = (head, j, t) over (heads, half, 2) is Hugging Face's row (head, t, j).
    fn hf_order(&self, rows: Tensor, projection: Projection) -> candle_core::Result<Tensor> {
        let c = &self.config;
        let heads = match (c.rope_interleaved, projection) {
            (true, Projection::Q) => c.num_heads,
            (true, Projection::K) => c.num_kv_heads,
            _ => return Ok(rows),
        };
        let (out, cols) = rows.dims2()?;
        let half = out / heads / 2;
        rows.reshape((heads, half, 2, cols))?.transpose(1, 2)?.contiguous()?.reshape((out, cols))
    }
}
