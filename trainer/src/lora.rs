//! The trainable part: a LoRA adapter's factors as candle variables, initialised as PEFT
//! does and saved in PEFT's format.
//!
//! For each targeted projection W (out x in) of each layer: A (rank x in), B (out x rank), and
//! the layer computes W x + (alpha / rank) B A x. A starts uniform in ±1/sqrt(in) (PEFT's
//! `kaiming_uniform_(a=sqrt(5))`), B at zero, so a fresh adapter changes nothing.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use candle_core::{DType, Device, Tensor, Var};
use tributary_generator::{ModelConfig, Projection};

use crate::error::{Error, Result};
use crate::rng::SplitMix64;

/// The adapter's shape: its rank, scale and the projections it targets.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LoraShape {
    pub rank: usize,
    pub alpha: f64,
    /// PEFT module names (`q_proj`, ..., `down_proj`).
    pub targets: Vec<String>,
}

impl LoraShape {
    /// Rank 16, alpha 32, every attention and MLP projection (QLoRA's choice: all linear layers).
    pub fn default_for_training() -> Self {
        LoraShape {
            rank: 16,
            alpha: 32.0,
            targets: Projection::ALL.iter().map(|p| p.peft_name().to_string()).collect(),
        }
    }

    pub fn scale(&self) -> f64 {
        self.alpha / self.rank as f64
    }

    /// Refuses a shape that cannot train: a rank outside 1..=1024, a non-positive alpha, no
    /// or unknown target modules.
    pub fn check(&self) -> Result<()> {
        self.projections().map(|_| ())
    }

    pub(crate) fn projections(&self) -> Result<Vec<Projection>> {
        if self.rank == 0 || self.rank > 1024 {
            return Err(Error::Invalid(format!("rank {} is not in 1..=1024", self.rank)));
        }
        if !(self.alpha.is_finite() && self.alpha > 0.0) {
            return Err(Error::Invalid(format!("alpha {} must be a positive number", self.alpha)));
        }
        let mut projections = Vec::new();
        for name in &self.targets {
            let p = Projection::from_peft_name(name)
                .ok_or_else(|| Error::Invalid(format!("target {name:?} is not one of q/k/v/o/gate/up/down_proj")))?;
            if !projections.contains(&p) {
                projections.push(p);
            }
        }
        if projections.is_empty() {
            return Err(Error::Invalid("no target modules".into()));
        }
        projections.sort();
        Ok(projections)
    }
}

/// One projection's factors.
#[derive(Debug, Clone)]
pub struct Factors {
    pub a: Var,
    pub b: Var,
}

/// Every targeted projection's factors, in (layer, projection) order.
#[derive(Debug, Clone)]
pub struct LoraParams {
    shape: LoraShape,
    factors: BTreeMap<(usize, Projection), Factors>,
}

impl LoraParams {
    /// Fresh factors for `model`, drawn from `seed`.
    pub fn init(shape: &LoraShape, model: &ModelConfig, seed: u64, device: &Device) -> Result<Self> {
        let projections = shape.projections()?;
        let mut rng = SplitMix64::new(seed, 1);
        let mut factors = BTreeMap::new();
        for layer in 0..model.num_layers {
            for &p in &projections {
                let (input, output) = p.shape(model);
                let bound = 1.0 / (input as f64).sqrt();
                let a: Vec<f32> =
                    (0..shape.rank * input).map(|_| ((rng.next_f64() * 2.0 - 1.0) * bound) as f32).collect();
                let a = Var::from_tensor(&Tensor::from_vec(a, (shape.rank, input), device)?)?;
                let b = Var::zeros((output, shape.rank), DType::F32, device)?;
                factors.insert((layer, p), Factors { a, b });
            }
        }
        Ok(LoraParams { shape: shape.clone(), factors })
    }

    pub fn shape(&self) -> &LoraShape {
        &self.shape
    }

    pub fn get(&self, layer: usize, projection: Projection) -> Option<&Factors> {
        self.factors.get(&(layer, projection))
    }

    /// Every variable, A then B for each projection in order: what the optimizer steps.
    pub fn vars(&self) -> Vec<&Var> {
        self.factors.values().flat_map(|f| [&f.a, &f.b]).collect()
    }

    /// How many numbers the adapter trains.
    pub fn parameter_count(&self) -> usize {
        self.vars().iter().map(|v| v.elem_count()).sum()
    }

    /// Each variable under its PEFT tensor name, in [`LoraParams::vars`]'s order.
    pub fn named(&self) -> Vec<(String, &Var)> {
        self.factors
            .iter()
            .flat_map(|(&(layer, p), f)| [(peft_name(layer, p, 'A'), &f.a), (peft_name(layer, p, 'B'), &f.b)])
            .collect()
    }

    /// Writes `adapter_config.json` and `adapter_model.safetensors` into `dir` as PEFT saves a
    /// LoRA adapter of a causal language model (`save_pretrained`): what PEFT, vLLM, LoRAX and
    /// this project's registry load.
    pub fn save_peft(&self, dir: &Path, base_model: &str) -> Result<()> {
        std::fs::create_dir_all(dir).map_err(|e| Error::Io(dir.display().to_string(), e))?;
        let tensors: HashMap<String, Tensor> =
            self.named().into_iter().map(|(name, var)| (name, var.as_tensor().clone())).collect();
        let weights = dir.join("adapter_model.safetensors");
        candle_core::safetensors::save(&tensors, &weights)?;
        let config = peft_config(&self.shape, base_model);
        let path = dir.join("adapter_config.json");
        let text = serde_json::to_string_pretty(&config).map_err(|e| Error::Invalid(e.to_string()))?;
        std::fs::write(&path, text).map_err(|e| Error::Io(path.display().to_string(), e))
    }

    /// Sets every variable from the PEFT adapter saved in `dir` ([`LoraParams::save_peft`]).
    pub fn load_peft(&self, dir: &Path) -> Result<()> {
        let path = dir.join("adapter_model.safetensors");
        let device = self.vars().first().map(|v| v.device().clone()).unwrap_or(Device::Cpu);
        let tensors = candle_core::safetensors::load(&path, &device)
            .map_err(|e| Error::Checkpoint { path: path.display().to_string(), reason: e.to_string() })?;
        self.restore(&tensors, &path)
    }

    /// Sets every variable from `tensors` (a checkpoint), by PEFT name.
    pub(crate) fn restore(&self, tensors: &HashMap<String, Tensor>, path: &Path) -> Result<()> {
        for (name, var) in self.named() {
            let saved = tensors.get(&name).ok_or_else(|| Error::Checkpoint {
                path: path.display().to_string(),
                reason: format!("no tensor {name}"),
            })?;
            if saved.dims() != var.dims() {
                return Err(Error::Checkpoint {
                    path: path.display().to_string(),
                    reason: format!("{name} is {:?}, the run's is {:?}", saved.dims(), var.dims()),
                });
            }
            var.set(&saved.to_device(var.device())?)?;
        }
        Ok(())
    }
}

/// PEFT's tensor name for a factor of a Llama-family causal LM.
pub fn peft_name(layer: usize, projection: Projection, which: char) -> String {
    let block = match projection {
        Projection::Q | Projection::K | Projection::V | Projection::O => "self_attn",
        Projection::Gate | Projection::Up | Projection::Down => "mlp",
    };
    format!("base_model.model.model.layers.{layer}.{block}.{}.lora_{which}.weight", projection.peft_name())
}

/// `adapter_config.json` as PEFT writes it for this adapter.
fn peft_config(shape: &LoraShape, base_model: &str) -> serde_json::Value {
    let mut targets = shape.targets.clone();
    targets.sort();
    targets.dedup();
    serde_json::json!({
        "peft_type": "LORA",
        "task_type": "CAUSAL_LM",
        "base_model_name_or_path": base_model,
        "r": shape.rank,
        "lora_alpha": shape.alpha,
        "lora_dropout": 0.0,
        "target_modules": targets,
        "bias": "none",
        "fan_in_fan_out": false,
        "use_rslora": false,
        "use_dora": false,
        "init_lora_weights": true,
        "inference_mode": true,
        "modules_to_save": null,
        "layers_to_transform": null,
        "layers_pattern": null,
        "rank_pattern": {},
        "alpha_pattern": {},
        "revision": null
    })
}
