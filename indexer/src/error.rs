use std::path::PathBuf;

/// Everything the indexer can fail with. Variants carry what a user needs to fix the input.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The disk holding the data directory is nearly full: nothing more is written (an index
    /// written through a memory map on a full disk would kill the process instead of failing).
    #[error(
        "{}: {} MiB free, under the {} MiB kept free: nothing more is written until there is room (or lower --min-free-disk-mb)",
        dir.display(), available >> 20, reserve >> 20
    )]
    DiskFull { dir: PathBuf, available: u64, reserve: u64 },
    #[error("invalid EVM address {input:?}: {reason}")]
    InvalidAddress { input: String, reason: &'static str },
    #[error("invalid Datanet name {0:?}: use 1-64 characters of a-z, 0-9, '-' and '_'")]
    InvalidDatanetName(String),
    #[error("Datanet {0:?} does not exist")]
    DatanetNotFound(String),
    #[error("Datanet {0:?} already exists")]
    DatanetExists(String),
    #[error("{path}{}: {reason}", line.map(|l| format!(":{l}")).unwrap_or_default())]
    MalformedInput { path: PathBuf, line: Option<usize>, reason: String },
    #[error("{path}: unsupported input; expected .txt, .md, .jsonl or a directory of them")]
    UnsupportedInput { path: PathBuf },
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    #[error("embedding model not found: {0}")]
    ModelNotFound(String),
    #[error("embedding model: {0}")]
    Model(String),
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("database migration: {0}")]
    Migration(#[from] sqlx::migrate::MigrateError),
    #[error("vector index: {0}")]
    VectorIndex(String),
    #[error("keyword index: {0}")]
    KeywordIndex(String),
    #[error("{0} not found")]
    NotFound(String),
    /// The request clashes with the current state (already pending, already decided).
    #[error("{0}")]
    Conflict(String),
    #[error("internal error: {0}")]
    Internal(String),
    #[error("the stores disagree: {0}")]
    Inconsistent(String),
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
}

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Error {
        let path = path.into();
        move |source| Error::Io { path, source }
    }
}

impl From<candle_core::Error> for Error {
    fn from(e: candle_core::Error) -> Self {
        Error::Model(e.to_string())
    }
}

impl From<tantivy::TantivyError> for Error {
    fn from(e: tantivy::TantivyError) -> Self {
        Error::KeywordIndex(e.to_string())
    }
}

impl From<qdrant_edge::OperationError> for Error {
    fn from(e: qdrant_edge::OperationError) -> Self {
        Error::VectorIndex(e.to_string())
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
