//! The generator's typed errors.

/// Everything that can go wrong loading a model or adapter, or generating.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}: {1}")]
    Io(String, #[source] std::io::Error),
    #[error("model: {0}")]
    Model(String),
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    #[error("chat template: {0}")]
    Template(String),
    /// An adapter that is missing, malformed, or does not fit the loaded base model.
    #[error("adapter {id}: {reason}")]
    Adapter { id: String, reason: String },
    #[error("adapter {0} is not registered")]
    UnknownAdapter(String),
    #[error("the prompt and answer need {needed} positions; the model has {limit}")]
    ContextOverflow { needed: usize, limit: usize },
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// No room for the request now (the generator's queue or memory budget): retry later.
    #[error("overloaded: {0}")]
    Overloaded(String),
    /// The backend cannot do this (a remote engine cannot score text, for example).
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// A remote engine refused or failed the request.
    #[error("remote engine: {0}")]
    Remote(String),
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
