//! The trainer's errors.

/// What can go wrong while preparing, running or checking a training run.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A setting out of range, or examples that cannot train anything.
    #[error("invalid training settings: {0}")]
    Invalid(String),
    /// A training example that does not fit the model.
    #[error("example {index}: {reason}")]
    Example { index: usize, reason: String },
    /// The loss or a gradient stopped being a finite number.
    #[error("training diverged at step {step}: {what} is not finite (lower the learning rate)")]
    Diverged { step: usize, what: String },
    /// A checkpoint or training log that cannot be read, or does not belong to this run.
    #[error("{path}: {reason}")]
    Checkpoint { path: String, reason: String },
    /// A training log whose records do not hash to the root it claims.
    #[error("training log does not verify: {0}")]
    Tampered(String),
    #[error("{0}: {1}")]
    Io(String, #[source] std::io::Error),
    #[error(transparent)]
    Generator(#[from] tributary_generator::Error),
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
