//! Dense vectors: a trait, and its embedded implementation on qdrant-edge.
//!
//! One qdrant-edge shard per Datanet. Our most common query is "within this Datanet", and a
//! payload filter costs HNSW recall (at 100k points, filtered recall@10 was 0.895 in qdrant-edge
//! 0.7); a shard per Datanet makes that query unfiltered. The rarer contributor filter runs as an
//! exact search over the payload index, so it loses no recall either.

use std::mem::ManuallyDrop;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::RwLock;

use qdrant_edge::external::uuid::Uuid;
use qdrant_edge::{
    Condition, Distance, EdgeConfigBuilder, EdgeOptimizersConfig, EdgeShard, EdgeVectorParamsBuilder, FieldCondition,
    FieldIndexOperations, Filter, JsonPath, Match, NamedQuery, PayloadFieldSchema, PayloadSchemaType, PointId,
    PointInsertOperations, PointOperations, PointStruct, QueryEnum, ScrollRequest, SearchParams, SearchRequest,
    UpdateOperation, WithPayloadInterface, WithVector,
};

use crate::{Address, ChunkId, Error, Result};

/// A vector to store, with the payload a search result needs to be resolved and filtered.
#[derive(Debug, Clone)]
pub struct VectorPoint {
    pub chunk_id: ChunkId,
    pub vector: Vec<f32>,
    pub contributor: Address,
    /// blake3 of the document's raw bytes (its id is only assigned at catalog commit).
    pub document_hash: [u8; 32],
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct VectorHit {
    pub chunk_id: ChunkId,
    /// Cosine similarity.
    pub score: f32,
}

/// The vectors of one Datanet. Writes are visible to searches at once and durable after
/// [`VectorIndex::commit`].
pub trait VectorIndex: Send + Sync {
    /// Idempotent: writing a chunk again replaces it.
    fn upsert(&self, points: &[VectorPoint]) -> Result<()>;
    fn delete(&self, ids: &[ChunkId]) -> Result<()>;
    /// Top `k` by cosine similarity; `contributors`, when given, restricts to those.
    fn search(&self, query: &[f32], k: usize, contributors: Option<&[Address]>) -> Result<Vec<VectorHit>>;
    /// Exhaustive search: the reference the approximate one is tested against.
    fn search_exact(&self, query: &[f32], k: usize) -> Result<Vec<VectorHit>>;
    fn ids(&self) -> Result<Vec<ChunkId>>;
    fn len(&self) -> Result<usize>;
    fn is_empty(&self) -> Result<bool> {
        Ok(self.len()? == 0)
    }
    /// Makes every write so far durable.
    fn commit(&self) -> Result<()>;
    /// Builds the ANN index for what was written; searches are exact until then.
    fn optimize(&self) -> Result<()>;
}

/// Tuning for the embedded vector index.
#[derive(Debug, Clone, Copy)]
pub struct EdgeIndexConfig {
    pub dimension: usize,
    /// Segments smaller than this (KiB of vectors) are searched exhaustively, which is both
    /// exact and fast; larger ones get an HNSW graph on `optimize`.
    pub indexing_threshold_kb: usize,
    /// Beam width at search time; higher is slower and closer to exact.
    pub hnsw_ef: usize,
}

impl EdgeIndexConfig {
    pub fn new(dimension: usize) -> Self {
        EdgeIndexConfig { dimension, indexing_threshold_kb: 10_000, hnsw_ef: 128 }
    }
}

/// qdrant-edge, in-process.
pub struct EdgeVectorIndex {
    // qdrant-edge's `flush` panics if another thread holds its WAL lock; the RwLock gives
    // writers (update, flush, optimize) exclusive access and lets searches share.
    // ManuallyDrop: see the Drop impl.
    shard: ManuallyDrop<RwLock<EdgeShard>>,
    config: EdgeIndexConfig,
    path: PathBuf,
}

const CONTRIBUTOR: &str = "contributor";
const CHUNK_ID: &str = "chunk_id";

fn point_id(id: &ChunkId) -> PointId {
    PointId::Uuid(Uuid::from_bytes(id.point_uuid()))
}

fn json_path(key: &str) -> Result<JsonPath> {
    key.try_into().map_err(|_| Error::VectorIndex(format!("bad payload key {key}")))
}

fn chunk_id_only() -> Result<WithPayloadInterface> {
    Ok(WithPayloadInterface::Fields(vec![json_path(CHUNK_ID)?]))
}

/// The point id holds half of the chunk id; the whole one is in the payload.
fn chunk_id_of(id: &PointId, payload: Option<&qdrant_edge::Payload>) -> Result<ChunkId> {
    payload
        .and_then(|p| p.0.get(CHUNK_ID))
        .and_then(|v| v.as_str())
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| Error::VectorIndex(format!("point {id} has no valid chunk_id payload")))
}

fn poisoned<T>(_: T) -> Error {
    Error::VectorIndex("index lock poisoned by an earlier panic".into())
}

impl EdgeVectorIndex {
    /// Opens the shard at `path`, creating it when absent.
    pub fn open(path: &Path, config: EdgeIndexConfig) -> Result<Self> {
        std::fs::create_dir_all(path).map_err(Error::io(path))?;
        let edge_config = EdgeConfigBuilder::new()
            .vector(String::new(), EdgeVectorParamsBuilder::new(config.dimension, Distance::Cosine).build())
            .optimizers(EdgeOptimizersConfig {
                indexing_threshold: Some(config.indexing_threshold_kb),
                ..Default::default()
            })
            .build();
        let fresh = !path.join("edge_config.json").exists();
        let shard = catch_unwind(AssertUnwindSafe(|| EdgeShard::load(path, Some(edge_config))))
            .map_err(|_| Error::VectorIndex(format!("{}: qdrant-edge panicked while loading", path.display())))??;
        let index = EdgeVectorIndex { shard: ManuallyDrop::new(RwLock::new(shard)), config, path: path.to_path_buf() };
        if fresh {
            index.update(UpdateOperation::FieldIndexOperation(FieldIndexOperations::CreateIndex(
                qdrant_edge::CreateIndex {
                    field_name: json_path(CONTRIBUTOR)?,
                    field_schema: Some(PayloadFieldSchema::FieldType(PayloadSchemaType::Keyword)),
                },
            )))?;
            index.commit()?;
        }
        Ok(index)
    }

    fn update(&self, op: UpdateOperation) -> Result<()> {
        let shard = self.shard.write().map_err(poisoned)?;
        Ok(shard.update(op)?)
    }

    fn search_with(&self, query: &[f32], k: usize, filter: Option<Filter>, exact: bool) -> Result<Vec<VectorHit>> {
        if query.len() != self.config.dimension {
            return Err(Error::InvalidArgument(format!(
                "query vector has {} dimensions, the index {}",
                query.len(),
                self.config.dimension
            )));
        }
        let shard = self.shard.read().map_err(poisoned)?;
        let points = shard.search(SearchRequest {
            query: QueryEnum::Nearest(NamedQuery { query: query.to_vec().into(), using: None }),
            filter,
            params: Some(SearchParams { hnsw_ef: Some(self.config.hnsw_ef.max(k)), exact, ..Default::default() }),
            limit: k,
            offset: 0,
            with_payload: Some(chunk_id_only()?),
            with_vector: Some(WithVector::Bool(false)),
            score_threshold: None,
        })?;
        points
            .into_iter()
            .map(|p| Ok(VectorHit { chunk_id: chunk_id_of(&p.id, p.payload.as_ref())?, score: p.score }))
            .collect()
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// `EdgeShard`'s own Drop flushes and panics if that fails (say, its directory is gone). A panic
/// in a destructor aborts the process when it is already unwinding, so drop the shard under
/// `catch_unwind`, and not at all while unwinding. Durability never depends on this flush:
/// writers call `commit` explicitly.
impl Drop for EdgeVectorIndex {
    fn drop(&mut self) {
        // SAFETY: `self.shard` is not touched again after being taken here.
        let shard = unsafe { ManuallyDrop::take(&mut self.shard) };
        if std::thread::panicking() {
            std::mem::forget(shard);
            return;
        }
        if catch_unwind(AssertUnwindSafe(move || drop(shard))).is_err() {
            tracing::error!(path = %self.path.display(), "qdrant-edge failed to flush on close");
        }
    }
}

impl VectorIndex for EdgeVectorIndex {
    fn upsert(&self, points: &[VectorPoint]) -> Result<()> {
        if points.is_empty() {
            return Ok(());
        }
        let mut structs = Vec::with_capacity(points.len());
        for p in points {
            if p.vector.len() != self.config.dimension {
                return Err(Error::InvalidArgument(format!(
                    "vector has {} dimensions, the index {}",
                    p.vector.len(),
                    self.config.dimension
                )));
            }
            let payload = serde_json::json!({
                CHUNK_ID: p.chunk_id.to_hex(),
                CONTRIBUTOR: p.contributor.to_lower_hex(),
                "document": hex::encode(p.document_hash),
            });
            structs.push(PointStruct::new(point_id(&p.chunk_id), p.vector.clone(), payload).into());
        }
        self.update(UpdateOperation::PointOperation(PointOperations::UpsertPoints(PointInsertOperations::PointsList(
            structs,
        ))))
    }

    fn delete(&self, ids: &[ChunkId]) -> Result<()> {
        if ids.is_empty() {
            return Ok(());
        }
        self.update(UpdateOperation::PointOperation(PointOperations::DeletePoints {
            ids: ids.iter().map(point_id).collect(),
        }))
    }

    fn search(&self, query: &[f32], k: usize, contributors: Option<&[Address]>) -> Result<Vec<VectorHit>> {
        match contributors {
            None => self.search_with(query, k, None, false),
            Some(list) => {
                let mut should = Vec::with_capacity(list.len());
                for c in list {
                    should.push(Condition::Field(FieldCondition::new_match(
                        json_path(CONTRIBUTOR)?,
                        Match::from(c.to_lower_hex()),
                    )));
                }
                let filter = Filter { should: Some(should), min_should: None, must: None, must_not: None };
                self.search_with(query, k, Some(filter), true)
            }
        }
    }

    fn search_exact(&self, query: &[f32], k: usize) -> Result<Vec<VectorHit>> {
        self.search_with(query, k, None, true)
    }

    fn ids(&self) -> Result<Vec<ChunkId>> {
        let shard = self.shard.read().map_err(poisoned)?;
        let mut out = Vec::new();
        let mut offset = None;
        loop {
            let (records, next) = shard.scroll(ScrollRequest {
                offset,
                limit: Some(10_000),
                filter: None,
                with_payload: Some(chunk_id_only()?),
                with_vector: WithVector::Bool(false),
                order_by: None,
            })?;
            for r in records {
                out.push(chunk_id_of(&r.id, r.payload.as_ref())?);
            }
            match next {
                Some(n) => offset = Some(n),
                None => return Ok(out),
            }
        }
    }

    fn len(&self) -> Result<usize> {
        let shard = self.shard.read().map_err(poisoned)?;
        Ok(shard.count(qdrant_edge::CountRequest { filter: None, exact: true })?)
    }

    fn commit(&self) -> Result<()> {
        let shard = self.shard.write().map_err(poisoned)?;
        // qdrant-edge 0.7 panics on a failed flush; turn that into an error.
        catch_unwind(AssertUnwindSafe(|| shard.flush()))
            .map_err(|_| Error::VectorIndex(format!("{}: flush failed", self.path.display())))
    }

    fn optimize(&self) -> Result<()> {
        let shard = self.shard.write().map_err(poisoned)?;
        shard.optimize()?;
        catch_unwind(AssertUnwindSafe(|| shard.flush()))
            .map_err(|_| Error::VectorIndex(format!("{}: flush failed", self.path.display())))
    }
}
