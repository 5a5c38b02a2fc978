//! Model Factory's trainer: LoRA adapters fine-tuned on a Datanet's question/answer pairs.
//!
//! - [`FrozenBase`]: a loaded generator [`tributary_generator::Model`] read for training,
//!   quantized weights dequantized one projection at a time;
//! - [`LoraParams`]: the trainable factors, saved in PEFT's format;
//! - [`nll`]: the differentiable forward pass (candle's autograd);
//! - [`train`]: AdamW, schedule, clipping, accumulation, checkpoints a killed run resumes from;
//! - [`verify_log`]: the training log, whose Merkle root names the data an adapter learned from;
//! - [`InfluenceIndex`]: which training examples an output of the adapter owes most to.
//!
//! Layers, each using only those below it: `error`, `rng` -> `lora`, `frozen`, `optim` ->
//! `forward` -> `data`, `provenance`, `influence` -> `train`.

mod data;
mod error;
mod forward;
mod frozen;
mod influence;
mod lora;
mod optim;
mod provenance;
mod rng;
mod train;

pub use data::{Example, Passage, TokenizedExample, tokenize};
pub use error::{Error, Result};
pub use forward::{Row, nll, row_log_likelihoods};
pub use frozen::{DENSE_CACHE_BYTES, FrozenBase};
pub use influence::{InfluenceIndex, SKETCH_DIM, Similarity, cosine, gradient_sketch};
pub use lora::{Factors, LoraParams, LoraShape, peft_name};
pub use optim::{AdamW, AdamWSettings, Schedule, clip_global_norm};
pub use provenance::{DatanetVersion, LogLine, RunHeader, StepRecord, VerifiedLog, log_root, verify_log};
pub use train::{Control, LOG_FILE, Outcome, TrainSettings, train, tune_allocator};
