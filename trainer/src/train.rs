//! The training loop: LoRA factors fitted to tokenized examples on a frozen base, with
//! gradient accumulation, clipping, AdamW and a warmup/decay schedule; a checkpoint every few
//! steps from which a killed run resumes to exactly the result it would have reached.
//!
//! A run lives in a directory: `training_log.jsonl` (the provenance log, one line a step),
//! `checkpoint-<step>.safetensors` (factors and optimizer state) and `checkpoint.json`, the
//! pointer to the latest complete checkpoint, replaced by a rename only after the checkpoint
//! and the log up to its step are on disk. A kill at any point leaves a pointer to a whole
//! checkpoint and a log at least that long; resuming cuts the log back to the checkpoint.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use candle_core::{DType, Tensor};

use crate::data::TokenizedExample;
use crate::error::{Error, Result};
use crate::forward::{Row, nll};
use crate::frozen::FrozenBase;
use crate::lora::LoraParams;
use crate::optim::{AdamW, AdamWSettings, Schedule, clip_global_norm};
use crate::provenance::{LogLine, RunHeader, StepRecord, log_root};
use crate::rng::SplitMix64;

pub const LOG_FILE: &str = "training_log.jsonl";
const POINTER_FILE: &str = "checkpoint.json";

/// Every setting of a run (recorded in its log's header).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TrainSettings {
    pub epochs: usize,
    pub learning_rate: f64,
    /// Examples per optimizer step.
    pub batch_size: usize,
    /// Examples per forward pass; a step accumulates the gradients of its micro-batches.
    pub micro_batch: usize,
    /// Stop after this many steps even if epochs remain.
    pub max_steps: Option<usize>,
    /// Steps of linear warmup (then linear decay to zero).
    pub warmup_steps: usize,
    /// Largest global gradient norm; larger gradients are scaled down to it.
    pub clip_norm: f64,
    pub adamw: AdamWSettings,
    pub seed: u64,
    /// Steps between checkpoints (the last step always checkpoints).
    pub checkpoint_every: usize,
}

impl Default for TrainSettings {
    fn default() -> Self {
        TrainSettings {
            epochs: 3,
            learning_rate: 2e-4,
            batch_size: 4,
            micro_batch: 1,
            max_steps: None,
            warmup_steps: 0,
            clip_norm: 1.0,
            adamw: AdamWSettings::default(),
            seed: 0,
            checkpoint_every: 10,
        }
    }
}

impl TrainSettings {
    /// Steps per epoch and in all, for `examples` examples; refuses settings that train nothing.
    pub fn plan(&self, examples: usize) -> Result<(usize, usize)> {
        if examples == 0 {
            return Err(Error::Invalid("no training examples".into()));
        }
        if self.epochs == 0 || self.batch_size == 0 || self.micro_batch == 0 || self.checkpoint_every == 0 {
            return Err(Error::Invalid(
                "epochs, batch size, micro-batch and checkpoint interval must be at least 1".into(),
            ));
        }
        if !(self.learning_rate.is_finite() && self.learning_rate > 0.0 && self.learning_rate < 1.0) {
            return Err(Error::Invalid(format!("learning rate {} is not in (0, 1)", self.learning_rate)));
        }
        let per_epoch = examples.div_ceil(self.batch_size);
        let total = (per_epoch * self.epochs).min(self.max_steps.unwrap_or(usize::MAX));
        if total == 0 {
            return Err(Error::Invalid("max steps is 0".into()));
        }
        Ok((per_epoch, total))
    }

    /// The examples (indices) optimizer step `step` (0-based) reads: each epoch visits every
    /// example once, in an order drawn from the seed and the epoch.
    pub fn step_examples(&self, examples: usize, step: usize) -> Vec<usize> {
        let per_epoch = examples.div_ceil(self.batch_size);
        let (epoch, index) = (step / per_epoch, step % per_epoch);
        let order = SplitMix64::new(self.seed, 100 + epoch as u64).permutation(examples);
        let end = ((index + 1) * self.batch_size).min(examples);
        order[index * self.batch_size..end].to_vec()
    }
}

/// What the step callback tells the loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    Continue,
    /// Checkpoint and stop (a cancelled job; resumable later).
    Stop,
}

/// The end of [`train`]: the factors and where the run stands.
pub struct Outcome {
    pub params: LoraParams,
    pub steps_done: usize,
    pub total_steps: usize,
    /// The log's Merkle root over what it holds now.
    pub log_root: String,
    pub log_path: PathBuf,
    /// Whether the run resumed from a checkpoint, and at which step.
    pub resumed_at: Option<usize>,
}

impl Outcome {
    pub fn finished(&self) -> bool {
        self.steps_done == self.total_steps
    }
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Pointer {
    step: usize,
    file: String,
    /// blake3 of the header line: a checkpoint is resumed only by the run it belongs to.
    header: String,
}

/// Trains (or resumes training) `header.lora`'s adapter on `examples` over `base`, in `dir`.
/// `on_step` sees every step's record as it is logged.
pub fn train(
    base: &FrozenBase<'_>,
    examples: &[TokenizedExample],
    header: &RunHeader,
    dir: &Path,
    on_step: &mut dyn FnMut(&StepRecord) -> Control,
) -> Result<Outcome> {
    let settings = &header.settings;
    let (_, total) = settings.plan(examples.len())?;
    if header.examples.len() != examples.len() || header.examples.iter().zip(examples).any(|(h, e)| *h != e.hash) {
        return Err(Error::Invalid("the header's example hashes are not the examples'".into()));
    }
    tune_allocator();
    let device = base.model().device();
    let params = LoraParams::init(&header.lora, base.config(), settings.seed, device)?;
    let vars = params.vars();
    let names: Vec<String> = params.named().into_iter().map(|(n, _)| n).collect();
    let mut optimizer = AdamW::new(&vars, settings.adamw)?;
    std::fs::create_dir_all(dir).map_err(|e| Error::Io(dir.display().to_string(), e))?;
    let header_line = LogLine::Header(header.clone()).to_line()?;
    let header_hash = blake3::hash(header_line.as_bytes()).to_hex().to_string();
    let log_path = dir.join(LOG_FILE);
    let mut lines = vec![header_line];
    let pointer_path = dir.join(POINTER_FILE);
    let resumed_at = match read_pointer(&pointer_path)? {
        Some(pointer) => {
            if pointer.header != header_hash {
                return Err(Error::Checkpoint {
                    path: pointer_path.display().to_string(),
                    reason: "belongs to another run (other settings, base or examples); \
                             train under another name, or remove the directory"
                        .into(),
                });
            }
            let path = dir.join(&pointer.file);
            let tensors = candle_core::safetensors::load(&path, device)
                .map_err(|e| Error::Checkpoint { path: path.display().to_string(), reason: e.to_string() })?;
            params.restore(&tensors, &path)?;
            optimizer.restore(&names, &tensors, pointer.step, &path)?;
            let logged =
                std::fs::read_to_string(&log_path).map_err(|e| Error::Io(log_path.display().to_string(), e))?;
            let kept: Vec<&str> = logged.lines().take(pointer.step + 1).collect();
            if kept.len() != pointer.step + 1 || kept[0] != lines[0] {
                return Err(Error::Checkpoint {
                    path: log_path.display().to_string(),
                    reason: format!("holds fewer than the checkpoint's {} steps, or another header", pointer.step),
                });
            }
            lines = kept.into_iter().map(str::to_string).collect();
            Some(pointer.step)
        }
        None => None,
    };
    write_atomically(&log_path, format!("{}\n", lines.join("\n")).as_bytes())?;
    let mut log = std::fs::OpenOptions::new()
        .append(true)
        .open(&log_path)
        .map_err(|e| Error::Io(log_path.display().to_string(), e))?;
    let schedule = Schedule { peak: settings.learning_rate, warmup: settings.warmup_steps, total };
    let per_epoch = examples.len().div_ceil(settings.batch_size);
    let mut step = optimizer.steps();
    let mut checkpointed = step;
    while step < total {
        let chosen = settings.step_examples(examples.len(), step);
        let tokens: usize = chosen.iter().map(|&i| examples[i].tokens.len() - examples[i].target_start).sum();
        let mut grads: Vec<Option<Tensor>> = vec![None; vars.len()];
        let mut nll_sum = 0f64;
        for micro in chosen.chunks(settings.micro_batch) {
            let rows: Vec<Row<'_>> = micro
                .iter()
                .map(|&i| Row { tokens: &examples[i].tokens, target_start: examples[i].target_start })
                .collect();
            let summed = nll(base, Some(&params), &rows)?;
            nll_sum += summed.to_dtype(DType::F64)?.to_scalar::<f64>()?;
            let backward = (summed / tokens as f64)?.backward()?;
            for (slot, var) in grads.iter_mut().zip(&vars) {
                if let Some(g) = backward.get(var.as_tensor()) {
                    *slot = Some(match slot.take() {
                        Some(sum) => (sum + g)?,
                        None => g.clone(),
                    });
                }
            }
        }
        let loss = nll_sum / tokens as f64;
        if !loss.is_finite() {
            return Err(Error::Diverged { step: step + 1, what: "the loss".into() });
        }
        let mut grads: Vec<Tensor> = grads
            .into_iter()
            .zip(&vars)
            .map(|(g, v)| g.map_or_else(|| v.as_tensor().zeros_like(), Ok))
            .collect::<candle_core::Result<_>>()?;
        let grad_norm = clip_global_norm(&mut grads, settings.clip_norm)?;
        if !grad_norm.is_finite() {
            return Err(Error::Diverged { step: step + 1, what: "the gradient".into() });
        }
        let learning_rate = schedule.at(step);
        optimizer.step(&vars, &grads, learning_rate)?;
        step += 1;
        let mut chunks: Vec<String> = Vec::new();
        for &i in &chosen {
            for c in &examples[i].chunk_ids {
                if !chunks.contains(c) {
                    chunks.push(c.clone());
                }
            }
        }
        let record = StepRecord {
            step,
            epoch: (step - 1) / per_epoch + 1,
            examples: chosen.iter().map(|&i| examples[i].hash.clone()).collect(),
            chunks,
            loss,
            learning_rate,
            grad_norm,
            tokens,
        };
        let line = LogLine::Step(record.clone()).to_line()?;
        writeln!(log, "{line}").map_err(|e| Error::Io(log_path.display().to_string(), e))?;
        lines.push(line);
        tracing::debug!(step, total, loss, learning_rate, grad_norm, "training step");
        let stop = on_step(&record) == Control::Stop;
        if step == total || stop || step - checkpointed >= settings.checkpoint_every {
            log.sync_all().map_err(|e| Error::Io(log_path.display().to_string(), e))?;
            checkpoint(dir, &params, &optimizer, &names, step, &header_hash)?;
            checkpointed = step;
        }
        if stop {
            break;
        }
    }
    Ok(Outcome { log_root: log_root(&lines), params, steps_done: step, total_steps: total, log_path, resumed_at })
}

/// A training step allocates and frees hundreds of megabytes of activations and gradients.
/// glibc's malloc serves blocks past its mmap threshold with fresh mappings and returns freed
/// memory at the top of the heap to the system, so every step faults in (and the kernel
/// clears) pages it just gave back: measured here as a quarter of a step's time. Raising both
/// thresholds and padding each heap growth, once per process, keeps the freed memory for the
/// next step (SmolLM2, 300 tokens: 102 -> 151 tokens/s).
pub fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        static ONCE: std::sync::Once = std::sync::Once::new();
        ONCE.call_once(|| {
            // SAFETY: mallopt only changes the allocator's thresholds; it is thread-safe.
            unsafe {
                libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
                libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30);
                libc::mallopt(libc::M_TOP_PAD, 256 << 20);
            }
        });
    }
}

fn read_pointer(path: &Path) -> Result<Option<Pointer>> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| Error::Checkpoint { path: path.display().to_string(), reason: e.to_string() }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::Io(path.display().to_string(), e)),
    }
}

/// Writes the checkpoint of `step`, then points to it, then removes older ones.
fn checkpoint(
    dir: &Path,
    params: &LoraParams,
    optimizer: &AdamW,
    names: &[String],
    step: usize,
    header: &str,
) -> Result<()> {
    let mut tensors: HashMap<String, Tensor> = optimizer.state(names);
    for (name, var) in params.named() {
        tensors.insert(name, var.as_tensor().clone());
    }
    let file = format!("checkpoint-{step}.safetensors");
    let tmp = dir.join(format!("{file}.tmp"));
    candle_core::safetensors::save(&tensors, &tmp)?;
    sync_file(&tmp)?;
    let path = dir.join(&file);
    std::fs::rename(&tmp, &path).map_err(|e| Error::Io(path.display().to_string(), e))?;
    let pointer = Pointer { step, file: file.clone(), header: header.to_string() };
    let bytes = serde_json::to_vec(&pointer).map_err(|e| Error::Invalid(e.to_string()))?;
    write_atomically(&dir.join(POINTER_FILE), &bytes)?;
    // Older checkpoints (and a temporary one a kill left behind) are no longer pointed to.
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with("checkpoint-") && name != file {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
    Ok(())
}

fn sync_file(path: &Path) -> Result<()> {
    std::fs::File::open(path).and_then(|f| f.sync_all()).map_err(|e| Error::Io(path.display().to_string(), e))
}

/// `bytes` into `path` through a synced temporary file and a rename.
pub(crate) fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    let io = |e| Error::Io(tmp.display().to_string(), e);
    let mut file = std::fs::File::create(&tmp).map_err(io)?;
    file.write_all(bytes).map_err(io)?;
    file.sync_all().map_err(io)?;
    std::fs::rename(&tmp, path).map_err(|e| Error::Io(path.display().to_string(), e))?;
    if let Some(parent) = path.parent()
        && let Ok(d) = std::fs::File::open(parent)
    {
        let _ = d.sync_all();
    }
    Ok(())
}
