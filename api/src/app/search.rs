//! Search: the retriever over this data directory, with the fusion a caller chose.

use std::sync::Arc;

use tributary_retriever::{Fusion, Retriever, RetrieverConfig};

use crate::app::App;

/// Why a fusion choice is refused (worded after the CLI's flags, as the API has always said).
#[derive(Debug, thiserror::Error)]
pub enum FusionError {
    #[error("--alpha must be between 0 and 1")]
    AlphaRange,
    #[error("--alpha applies to convex fusion only")]
    AlphaWithRrf,
    #[error("--fusion must be convex or rrf, not {0:?}")]
    Unknown(String),
}

/// The fusion named by `fusion` (`convex`, the default, or `rrf`) with the dense weight `alpha`.
pub fn fusion_of(fusion: Option<&str>, alpha: Option<f32>) -> Result<Fusion, FusionError> {
    if let Some(alpha) = alpha
        && !(0.0..=1.0).contains(&alpha)
    {
        return Err(FusionError::AlphaRange);
    }
    match (fusion.unwrap_or("convex"), alpha) {
        ("convex", Some(alpha)) => Ok(Fusion::Convex { alpha }),
        ("convex", None) => Ok(Fusion::default()),
        ("rrf", None) => Ok(Fusion::Rrf { k: 60.0 }),
        ("rrf", Some(_)) => Err(FusionError::AlphaWithRrf),
        (other, _) => Err(FusionError::Unknown(other.to_string())),
    }
}

/// The query-cache scope of the command line (one user: the operator).
pub const CLI_SCOPE: &str = "cli";

/// A retriever over the data directory, embedding queries through the query cache as `scope`
/// (who asks: a caller's queries only ever hit the cache entries its own queries made, so no
/// one learns from a hit what someone else asked).
pub fn retriever(app: &App, fusion: Fusion, scope: &str) -> anyhow::Result<Retriever> {
    let embedder: Arc<dyn tributary_indexer::Embedder> = app.query_embedder()?.scoped(scope);
    Ok(Retriever::new(app.store.clone(), embedder, RetrieverConfig { fusion, ..Default::default() }))
}
