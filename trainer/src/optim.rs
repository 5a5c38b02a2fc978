//! AdamW with decoupled weight decay, a warmup-then-linear-decay schedule and clipping by the
//! global gradient norm: what Hugging Face's Trainer does by default, with its state in plain
//! tensors so a checkpoint holds it.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{Tensor, Var};

use crate::error::{Error, Result};

/// AdamW's constants.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AdamWSettings {
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
}

impl Default for AdamWSettings {
    fn default() -> Self {
        AdamWSettings { beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.0 }
    }
}

/// The optimizer's state: both moments of every variable and the step count.
pub struct AdamW {
    settings: AdamWSettings,
    first: Vec<Tensor>,
    second: Vec<Tensor>,
    steps: usize,
}

impl AdamW {
    pub fn new(vars: &[&Var], settings: AdamWSettings) -> Result<Self> {
        let zeros = |v: &&Var| v.as_tensor().zeros_like();
        Ok(AdamW {
            settings,
            first: vars.iter().map(zeros).collect::<candle_core::Result<_>>()?,
            second: vars.iter().map(zeros).collect::<candle_core::Result<_>>()?,
            steps: 0,
        })
    }

    /// One update of every variable by its gradient (`grads[i]` for `vars[i]`).
    pub fn step(&mut self, vars: &[&Var], grads: &[Tensor], lr: f64) -> Result<()> {
        let s = self.settings;
        self.steps += 1;
        let t = self.steps as i32;
        let (correct1, correct2) = (1.0 - s.beta1.powi(t), 1.0 - s.beta2.powi(t));
        for (i, (var, grad)) in vars.iter().zip(grads).enumerate() {
            let m = ((&self.first[i] * s.beta1)? + (grad * (1.0 - s.beta1))?)?;
            let v = ((&self.second[i] * s.beta2)? + (grad.sqr()? * (1.0 - s.beta2))?)?;
            let decayed = (var.as_tensor() * (1.0 - lr * s.weight_decay))?;
            let update = ((&m / correct1)? / ((&v / correct2)?.sqrt()? + s.eps)?)?;
            var.set(&(decayed - (update * lr)?)?)?;
            self.first[i] = m;
            self.second[i] = v;
        }
        Ok(())
    }

    pub fn steps(&self) -> usize {
        self.steps
    }

    /// The state as named tensors (`{name}.exp_avg`, `{name}.exp_avg_sq`), names given in
    /// the variables' order.
    pub(crate) fn state(&self, names: &[String]) -> HashMap<String, Tensor> {
        let mut out = HashMap::new();
        for (i, name) in names.iter().enumerate() {
            out.insert(format!("{name}.exp_avg"), self.first[i].clone());
            out.insert(format!("{name}.exp_avg_sq"), self.second[i].clone());
        }
        out
    }

    pub(crate) fn restore(
        &mut self,
        names: &[String],
        tensors: &HashMap<String, Tensor>,
        steps: usize,
        path: &Path,
    ) -> Result<()> {
        let take = |key: String, like: &Tensor| -> Result<Tensor> {
            let t = tensors.get(&key).ok_or_else(|| Error::Checkpoint {
                path: path.display().to_string(),
                reason: format!("no tensor {key}"),
            })?;
            if t.dims() != like.dims() {
                return Err(Error::Checkpoint {
                    path: path.display().to_string(),
                    reason: format!("{key}: wrong shape"),
                });
            }
            Ok(t.to_device(like.device())?)
        };
        for (i, name) in names.iter().enumerate() {
            self.first[i] = take(format!("{name}.exp_avg"), &self.first[i])?;
            self.second[i] = take(format!("{name}.exp_avg_sq"), &self.second[i])?;
        }
        self.steps = steps;
        Ok(())
    }
}

/// Scales `grads` so their global L2 norm is at most `max_norm`; returns the norm before.
pub fn clip_global_norm(grads: &mut [Tensor], max_norm: f64) -> Result<f64> {
    let mut total = 0f64;
    for g in grads.iter() {
        total += g.sqr()?.sum_all()?.to_dtype(candle_core::DType::F64)?.to_scalar::<f64>()?;
    }
    let norm = total.sqrt();
    if norm.is_finite() && max_norm > 0.0 && norm > max_norm {
        let factor = max_norm / (norm + 1e-6);
        for g in grads.iter_mut() {
            *g = (&*g * factor)?;
        }
    }
    Ok(norm)
}

/// The learning rate at each step: linear warmup from 0 over `warmup` steps, then linear
/// decay to 0 at `total` (Hugging Face's `linear` schedule).
#[derive(Debug, Clone, Copy)]
pub struct Schedule {
    pub peak: f64,
    pub warmup: usize,
    pub total: usize,
}

impl Schedule {
    /// The rate of step `step` (0-based).
    pub fn at(&self, step: usize) -> f64 {
        if step < self.warmup {
            return self.peak * (step + 1) as f64 / self.warmup as f64;
        }
        let left = self.total.saturating_sub(step) as f64;
        let span = self.total.saturating_sub(self.warmup).max(1) as f64;
        self.peak * (left / span).clamp(0.0, 1.0)
    }
}
