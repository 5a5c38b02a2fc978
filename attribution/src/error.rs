/// Everything the ledger can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    #[error("{0} not found")]
    NotFound(String),
    #[error("the ledger is inconsistent: {0}")]
    Inconsistent(String),
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error(transparent)]
    Catalog(#[from] tributary_indexer::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
