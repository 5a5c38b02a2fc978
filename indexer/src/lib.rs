//! The write half of Tributary: a Datanet upload becomes content-addressed chunks in the
//! catalog (SQL), the vector index (qdrant-edge) and the keyword index (tantivy).
//!
//! The entry points are [`Store::open`] (the data directory, with crash recovery),
//! [`ingest()`] (the write path) and [`load_embedder`] (the embedding model on candle or ONNX
//! Runtime). The read side
//! lives in `tributary-retriever`, which uses the read methods of the same indexes.
//!
//! Invariant: a chunk's id is the blake3 of its [`normalize`]d text ([`ChunkId::of_text`]).

mod access;
mod address;
mod catalog;
mod chunk;
mod contributions;
mod embed;
#[cfg(feature = "onnx")]
mod embed_onnx;
mod error;
mod ingest;
mod keywords;
mod qdrant;
mod query_cache;
mod source;
mod store;
#[cfg(feature = "test-support")]
pub mod testing;
mod vectors;

pub use access::{AccessRequest, AccessStatus, DatanetUpdate, Member};
pub use address::Address;
pub use catalog::{
    Backend, Catalog, ChunkRecord, Datanet, Document, NewDatanet, Visibility, WriterLock, stored_name,
    validate_datanet_name,
};
pub use chunk::{Chunk, ChunkId, Chunker, ChunkerConfig, heading, indexed_text, normalize};
pub use contributions::{Contribution, ContributionStatus, ContributorTally, NewContribution};
pub use embed::{BertEmbedder, DEFAULT_MODEL_ID, EmbedBackend, Embedder, MODEL_DIR_ENV, load_embedder, locate_model};
#[cfg(feature = "onnx")]
pub use embed_onnx::{ORT_LIBRARY_ENV, OnnxEmbedder, locate_onnxruntime, onnx_model_path};
pub use error::{Error, Result};
pub use ingest::{IngestOptions, IngestReport, NoProgress, Progress, ingest, ingest_documents};
pub use keywords::{KeywordDoc, KeywordHit, KeywordIndex, TantivyKeywordIndex};
pub use qdrant::{QdrantCollection, QdrantSettings, QdrantVectorIndex};
pub use query_cache::QueryCache;
pub use source::{SourceDocument, read_file, read_sources, read_upload};
pub use store::{Consistency, DEFAULT_MIN_FREE_BYTES, DatanetIndexes, Store, StoreConfig};
pub use vectors::{EdgeIndexConfig, EdgeVectorIndex, VectorHit, VectorIndex, VectorPoint};
