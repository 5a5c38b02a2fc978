//! The training forward pass: the same Llama-family computation as the generator's, written
//! with differentiable candle ops in f32 (the generator's fused kernels have no backward), the
//! LoRA deltas added unmerged after each targeted projection.

use candle_core::{D, DType, Tensor};
use tributary_generator::Projection;

use crate::error::{Error, Result};
use crate::frozen::{FrozenBase, frozen_matmul};
use crate::lora::LoraParams;

/// One training row: tokens, of which those from `target_start` on are what the model learns
/// to produce (the reply; the prompt before it is context only).
#[derive(Debug, Clone, Copy)]
pub struct Row<'a> {
    pub tokens: &'a [u32],
    pub target_start: usize,
}

impl Row<'_> {
    pub fn targets(&self) -> usize {
        self.tokens.len().saturating_sub(self.target_start)
    }
}

/// The summed negative log-likelihood of every row's target tokens (a scalar tensor whose
/// backward gives the adapter's gradients). Rows run as one batch, right-padded: causal
/// attention keeps the padding out of every real position.
pub fn nll(base: &FrozenBase<'_>, lora: Option<&LoraParams>, rows: &[Row<'_>]) -> Result<Tensor> {
    let c = base.config();
    let device = base.model().device();
    let longest = rows.iter().map(|r| r.tokens.len()).max().unwrap_or(0);
    if longest > c.max_positions {
        return Err(Error::Invalid(format!("a row of {longest} tokens exceeds the model's {}", c.max_positions)));
    }
    for row in rows {
        if row.target_start == 0 || row.target_start >= row.tokens.len() {
            return Err(Error::Invalid(format!(
                "a row of {} tokens cannot learn from token {}",
                row.tokens.len(),
                row.target_start
            )));
        }
    }
    let (batch, seq, hd) = (rows.len(), longest, c.head_dim);
    let flat: Vec<u32> = rows
        .iter()
        .flat_map(|r| r.tokens.iter().copied().chain(std::iter::repeat_n(0, seq - r.tokens.len())))
        .collect();
    let ids = Tensor::from_vec(flat, batch * seq, device)?;
    // The residual stream, (batch * seq, hidden).
    let mut x = base.embeddings().index_select(&ids, 0)?;
    let mask = causal_mask(seq, device)?;
    let cos = base.cos.narrow(0, 0, seq)?;
    let sin = base.sin.narrow(0, 0, seq)?;
    let eps = c.rms_norm_eps;
    let scale = lora.map(|l| l.shape().scale()).unwrap_or(0.0);
    for layer in 0..c.num_layers {
        let project = |input: &Tensor, p: Projection| -> Result<Tensor> {
            let mut y = frozen_matmul(input, &base.weight(layer, p)?)?;
            if let Some(bias) = base.bias(layer, p)? {
                y = y.broadcast_add(&bias)?;
            }
            if let Some(f) = lora.and_then(|l| l.get(layer, p)) {
                let delta = input.matmul(&f.a.as_tensor().t()?)?.matmul(&f.b.as_tensor().t()?)?;
                y = (y + (delta * scale)?)?;
            }
            Ok(y)
        };
        let (attn_norm, mlp_norm) = base.norms(layer);
        let h = rms_norm(&x, attn_norm, eps)?;
        let heads = |t: Tensor, n: usize| t.reshape((batch, seq, n, hd))?.transpose(1, 2)?.contiguous();
        let q = heads(project(&h, Projection::Q)?, c.num_heads)?;
        let k = heads(project(&h, Projection::K)?, c.num_kv_heads)?;
        let v = heads(project(&h, Projection::V)?, c.num_kv_heads)?;
        let q = candle_nn::rotary_emb::rope_slow(&q, &cos, &sin)?;
        let k = candle_nn::rotary_emb::rope_slow(&k, &cos, &sin)?;
        let (k, v) = (repeat_kv(k, c.num_heads / c.num_kv_heads)?, repeat_kv(v, c.num_heads / c.num_kv_heads)?);
        let scores = (q.matmul(&k.t()?)? * (1.0 / (hd as f64).sqrt()))?.broadcast_add(&mask)?;
        let attended = softmax(&scores)?.matmul(&v)?;
        let attended = attended.transpose(1, 2)?.contiguous()?.reshape((batch * seq, c.num_heads * hd))?;
        x = (project(&attended, Projection::O)? + &x)?;
        let h = rms_norm(&x, mlp_norm, eps)?;
        let gated = (project(&h, Projection::Gate)?.silu()? * project(&h, Projection::Up)?)?;
        x = (project(&gated, Projection::Down)? + &x)?;
    }
    // Only the positions that predict a target go through the head (vocab-wide logits are
    // the largest tensors of a step).
    let mut positions = Vec::new();
    let mut targets = Vec::new();
    for (r, row) in rows.iter().enumerate() {
        for p in row.target_start - 1..row.tokens.len() - 1 {
            positions.push((r * seq + p) as u32);
            targets.push(row.tokens[p + 1]);
        }
    }
    let n = positions.len();
    let positions = Tensor::from_vec(positions, n, device)?;
    let hidden = rms_norm(&x.index_select(&positions, 0)?, base.final_norm(), eps)?;
    let logits = frozen_matmul(&hidden, base.head())?;
    let targets = Tensor::from_vec(targets, (n, 1), device)?;
    let picked = log_softmax(&logits)?.gather(&targets, 1)?;
    Ok(picked.sum_all()?.neg()?)
}

/// Each row's summed log-likelihood of its targets, without gradients (evaluation).
pub fn row_log_likelihoods(base: &FrozenBase<'_>, lora: Option<&LoraParams>, rows: &[Row<'_>]) -> Result<Vec<f64>> {
    rows.iter()
        .map(|row| {
            Ok(-nll(base, lora, std::slice::from_ref(row))?.detach().to_dtype(DType::F64)?.to_scalar::<f64>()?)
        })
        .collect()
}

fn causal_mask(seq: usize, device: &candle_core::Device) -> Result<Tensor> {
    let mask: Vec<f32> =
        (0..seq).flat_map(|i| (0..seq).map(move |j| if j > i { f32::NEG_INFINITY } else { 0.0 })).collect();
    Ok(Tensor::from_vec(mask, (seq, seq), device)?)
}

/// x / sqrt(mean(x^2) + eps) * weight, over the last dimension.
fn rms_norm(x: &Tensor, weight: &Tensor, eps: f64) -> Result<Tensor> {
    let mean_square = (x.sqr()?.sum_keepdim(D::Minus1)? / x.dim(D::Minus1)? as f64)?;
    Ok(x.broadcast_div(&(mean_square + eps)?.sqrt()?)?.broadcast_mul(weight)?)
}

/// Softmax over the last dimension, shifted by the (constant) row maximum for stability.
fn softmax(x: &Tensor) -> Result<Tensor> {
    let shifted = x.broadcast_sub(&x.max_keepdim(D::Minus1)?.detach())?.exp()?;
    Ok(shifted.broadcast_div(&shifted.sum_keepdim(D::Minus1)?)?)
}

fn log_softmax(x: &Tensor) -> Result<Tensor> {
    let shifted = x.broadcast_sub(&x.max_keepdim(D::Minus1)?.detach())?;
    Ok(shifted.broadcast_sub(&shifted.exp()?.sum_keepdim(D::Minus1)?.log()?)?)
}

/// (batch, kv_heads, seq, hd) -> (batch, kv_heads * n, seq, hd), each kv head serving n heads.
fn repeat_kv(x: Tensor, n: usize) -> Result<Tensor> {
    if n == 1 {
        return Ok(x);
    }
    let (b, kv, s, hd) = x.dims4()?;
    Ok(Tensor::cat(&vec![&x; n], 2)?.reshape((b, kv * n, s, hd))?)
}
