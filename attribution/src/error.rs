/// Everything the ledger can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    #[error("{0} not found")]
    NotFound(String),
    /// The payer cannot cover the amount next to what its other answers in progress hold.
    #[error("{account} has {available} available, {needed} is needed")]
    InsufficientBalance { account: String, needed: crate::Amount, available: crate::Amount },
    /// The policy lacks what charging needs (a protocol account).
    #[error("the pricing policy is incomplete: {0}")]
    Unconfigured(String),
    #[error("the ledger is inconsistent: {0}")]
    Inconsistent(String),
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error(transparent)]
    Catalog(#[from] tributary_indexer::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
