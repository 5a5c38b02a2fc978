//! Integration tests of the indexer: one binary (it links once).

mod backends;
mod embedding;
mod ingest;
mod qdrant_standin;
mod recall;
mod vector_backends;

use std::path::PathBuf;
use std::sync::Arc;

use tributary_indexer::{EmbedBackend, Embedder};

/// The real MiniLM model, installed by scripts/setup.sh.
pub fn model_dir() -> PathBuf {
    let from_env = std::env::var_os("TRIBUTARY_EMBED_MODEL").map(PathBuf::from);
    let dir = from_env.unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models/all-MiniLM-L6-v2"));
    assert!(dir.join("model.safetensors").exists(), "model missing at {}: run scripts/setup.sh", dir.display());
    dir
}

/// The ONNX Runtime library, installed by scripts/setup.sh.
pub fn onnxruntime() -> PathBuf {
    let path = tributary_indexer::locate_onnxruntime()
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models/onnxruntime/libonnxruntime.so"));
    assert!(path.exists(), "ONNX Runtime missing at {}: run scripts/setup.sh", path.display());
    path
}

/// The default embedder, as the CLI loads it.
pub fn embedder() -> Arc<dyn Embedder> {
    tributary_indexer::load_embedder(&model_dir(), EmbedBackend::Auto).expect("model loads")
}

pub fn alice() -> tributary_indexer::Address {
    "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266".parse().unwrap()
}

pub fn bob() -> tributary_indexer::Address {
    "0x70997970C51812dc3A010C7d01b50e0d17dc79C8".parse().unwrap()
}
