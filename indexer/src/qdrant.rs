//! Dense vectors on a Qdrant server or cluster through `qdrant-client` (gRPC): the scale-out
//! backend, chosen by `QDRANT_URL` (`QdrantSettings::from_env`).
//!
//! One collection per deployment, every Datanet in it: points carry the Datanet's id as a
//! keyword payload indexed as the tenant key (`is_tenant`), so Qdrant keeps each Datanet's
//! points together and a Datanet-scoped search stays cheap; the contributor is a keyword
//! payload index for the contributor filter. A point's id is derived from (Datanet, chunk id),
//! so the same text in two Datanets is two points. Writes wait for the server (`wait: true`):
//! an ingest that finished is searchable, and durable by the server's own WAL, so `commit` and
//! `optimize` (Qdrant optimizes in the background) have nothing to do.
//!
//! The trait is synchronous (the embedded index is); the client is async, so calls run on a
//! small runtime of their own and the caller waits, from any thread.

use std::future::Future;
use std::sync::{Arc, OnceLock};

use qdrant_client::Qdrant;
use qdrant_client::qdrant::{
    Condition, CountPointsBuilder, CreateCollectionBuilder, CreateFieldIndexCollectionBuilder, DeletePointsBuilder,
    Distance, FieldType, Filter, KeywordIndexParamsBuilder, PointId, PointStruct, PointsIdsList, ScrollPointsBuilder,
    SearchParamsBuilder, SearchPointsBuilder, UpsertPointsBuilder, VectorParamsBuilder, WriteOrderingType,
    point_id::PointIdOptions,
};

use crate::vectors::{VectorHit, VectorIndex, VectorPoint};
use crate::{Address, ChunkId, Error, Result};

const DATANET: &str = "datanet";
const CONTRIBUTOR: &str = "contributor";
const CHUNK_ID: &str = "chunk_id";

/// Where the Qdrant backend is and how its collection is laid out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QdrantSettings {
    /// gRPC endpoint, e.g. `http://qdrant-0:6334`.
    pub url: String,
    pub api_key: Option<String>,
    /// The deployment's collection (created on first use).
    pub collection: String,
    /// Shards of the collection (set at creation).
    pub shards: u32,
    /// Copies of each shard (set at creation).
    pub replication: u32,
    /// Replicas that must confirm a write before it counts (set at creation).
    pub write_consistency: u32,
    /// Beam width at search time.
    pub hnsw_ef: u64,
}

impl QdrantSettings {
    /// From `QDRANT_URL` (none: the embedded index), `QDRANT_API_KEY`, `QDRANT_COLLECTION`
    /// (default `tributary`), `QDRANT_SHARDS`, `QDRANT_REPLICATION`, `QDRANT_WRITE_CONSISTENCY`
    /// (default 1 each).
    pub fn from_env() -> Result<Option<QdrantSettings>> {
        let Some(url) = std::env::var("QDRANT_URL").ok().filter(|u| !u.trim().is_empty()) else { return Ok(None) };
        let number = |name: &str| -> Result<u32> {
            match std::env::var(name) {
                Ok(text) => text
                    .trim()
                    .parse::<u32>()
                    .ok()
                    .filter(|n| *n >= 1)
                    .ok_or_else(|| Error::InvalidArgument(format!("{name} must be a whole number of at least 1"))),
                Err(_) => Ok(1),
            }
        };
        Ok(Some(QdrantSettings {
            url,
            api_key: std::env::var("QDRANT_API_KEY").ok().filter(|k| !k.is_empty()),
            collection: std::env::var("QDRANT_COLLECTION").unwrap_or_else(|_| "tributary".into()),
            shards: number("QDRANT_SHARDS")?,
            replication: number("QDRANT_REPLICATION")?,
            write_consistency: number("QDRANT_WRITE_CONSISTENCY")?,
            hnsw_ef: 128,
        }))
    }
}

fn runtime() -> Result<&'static tokio::runtime::Runtime> {
    static RUNTIME: OnceLock<std::result::Result<tokio::runtime::Runtime, String>> = OnceLock::new();
    RUNTIME
        .get_or_init(|| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .thread_name("qdrant-client")
                .enable_all()
                .build()
                .map_err(|e| e.to_string())
        })
        .as_ref()
        .map_err(|e| Error::VectorIndex(format!("starting the Qdrant client's runtime: {e}")))
}

/// Runs `task` on the client's runtime and waits for it (from any thread, async or not).
fn run<T: Send + 'static>(task: impl Future<Output = Result<T>> + Send + 'static) -> Result<T> {
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    runtime()?.spawn(async move {
        let _ = tx.send(task.await);
    });
    rx.recv().map_err(|_| Error::VectorIndex("the Qdrant request was dropped".into()))?
}

fn failed(what: &str) -> impl Fn(qdrant_client::QdrantError) -> Error + '_ {
    move |e| Error::VectorIndex(format!("Qdrant {what}: {e}"))
}

/// The deployment's collection: one connection (gRPC channel) that every Datanet's
/// [`QdrantVectorIndex`] shares.
#[derive(Clone)]
pub struct QdrantCollection {
    client: Arc<Qdrant>,
    settings: Arc<QdrantSettings>,
    dimension: usize,
}

/// One Datanet's view of the deployment's collection.
pub struct QdrantVectorIndex {
    client: Arc<Qdrant>,
    settings: Arc<QdrantSettings>,
    datanet_id: i64,
    dimension: usize,
}

impl QdrantVectorIndex {
    /// [`QdrantCollection::connect`], then the Datanet's view of it.
    pub fn open(settings: &QdrantSettings, datanet_id: i64, dimension: usize) -> Result<QdrantVectorIndex> {
        Ok(QdrantCollection::connect(settings, dimension)?.index(datanet_id))
    }
}

impl QdrantCollection {
    /// Connects, creating the collection and its payload indexes when they are missing.
    pub fn connect(settings: &QdrantSettings, dimension: usize) -> Result<QdrantCollection> {
        let settings = Arc::new(settings.clone());
        let client = {
            let settings = settings.clone();
            run(async move {
                let mut config = Qdrant::from_url(&settings.url).skip_compatibility_check();
                if let Some(key) = &settings.api_key {
                    config = config.api_key(key.clone());
                }
                config.build().map_err(failed("connection"))
            })?
        };
        let collection = QdrantCollection { client: Arc::new(client), settings, dimension };
        collection.ensure()?;
        Ok(collection)
    }

    /// The Datanet's view: its points only.
    pub fn index(&self, datanet_id: i64) -> QdrantVectorIndex {
        QdrantVectorIndex {
            client: self.client.clone(),
            settings: self.settings.clone(),
            datanet_id,
            dimension: self.dimension,
        }
    }

    fn ensure(&self) -> Result<()> {
        let (client, settings, dimension) = (self.client.clone(), self.settings.clone(), self.dimension);
        run(async move {
            let name = settings.collection.clone();
            if client.collection_exists(&name).await.map_err(failed("collection_exists"))? {
                return Ok(());
            }
            let created = client
                .create_collection(
                    CreateCollectionBuilder::new(&name)
                        .vectors_config(VectorParamsBuilder::new(dimension as u64, Distance::Cosine))
                        .shard_number(settings.shards)
                        .replication_factor(settings.replication)
                        .write_consistency_factor(settings.write_consistency),
                )
                .await;
            // Another replica may have created it meanwhile: what matters is that it exists.
            if let Err(e) = created
                && !client.collection_exists(&name).await.map_err(failed("collection_exists"))?
            {
                return Err(failed("create_collection")(e));
            }
            client
                .create_field_index(
                    CreateFieldIndexCollectionBuilder::new(&name, DATANET, FieldType::Keyword)
                        .field_index_params(KeywordIndexParamsBuilder::default().is_tenant(true))
                        .wait(true),
                )
                .await
                .map_err(failed("create_field_index"))?;
            client
                .create_field_index(
                    CreateFieldIndexCollectionBuilder::new(&name, CONTRIBUTOR, FieldType::Keyword)
                        .field_index_params(KeywordIndexParamsBuilder::default())
                        .wait(true),
                )
                .await
                .map_err(failed("create_field_index"))?;
            Ok(())
        })
    }
}

impl QdrantVectorIndex {
    /// The tenant key: the Datanet's id, as the keyword Qdrant groups a tenant's points by.
    fn tenant(&self) -> String {
        self.datanet_id.to_string()
    }

    /// A point per (Datanet, chunk): the first 16 bytes of blake3 over both.
    fn point_id(&self, chunk: &ChunkId) -> PointId {
        let mut hasher = blake3::Hasher::new();
        hasher.update(&self.datanet_id.to_le_bytes());
        hasher.update(chunk.to_hex().as_bytes());
        let bytes: [u8; 16] = hasher.finalize().as_bytes()[..16].try_into().unwrap_or([0; 16]);
        PointId { point_id_options: Some(PointIdOptions::Uuid(uuid_text(bytes))) }
    }

    fn datanet_filter(&self, contributors: Option<&[Address]>) -> Filter {
        let mut filter = Filter::must([Condition::matches(DATANET, self.tenant())]);
        if let Some(list) = contributors {
            filter.should = list.iter().map(|c| Condition::matches(CONTRIBUTOR, c.to_lower_hex())).collect();
        }
        filter
    }

    fn search_with(
        &self,
        query: &[f32],
        k: usize,
        contributors: Option<&[Address]>,
        exact: bool,
    ) -> Result<Vec<VectorHit>> {
        if query.len() != self.dimension {
            return Err(Error::InvalidArgument(format!(
                "query vector has {} dimensions, the index {}",
                query.len(),
                self.dimension
            )));
        }
        if k == 0 || contributors.is_some_and(|c| c.is_empty()) {
            return Ok(Vec::new());
        }
        let request = SearchPointsBuilder::new(&self.settings.collection, query.to_vec(), k as u64)
            .filter(self.datanet_filter(contributors))
            .params(SearchParamsBuilder::default().hnsw_ef(self.settings.hnsw_ef.max(k as u64)).exact(exact))
            .with_payload(qdrant_client::qdrant::PayloadIncludeSelector { fields: vec![CHUNK_ID.to_string()] });
        let client = self.client.clone();
        let found = run(async move { client.search_points(request).await.map_err(failed("search")) })?;
        found.result.into_iter().map(|p| Ok(VectorHit { chunk_id: chunk_id_of(&p.payload)?, score: p.score })).collect()
    }
}

fn uuid_text(b: [u8; 16]) -> String {
    let h = hex::encode(b);
    format!("{}-{}-{}-{}-{}", &h[..8], &h[8..12], &h[12..16], &h[16..20], &h[20..])
}

fn chunk_id_of(payload: &std::collections::HashMap<String, qdrant_client::qdrant::Value>) -> Result<ChunkId> {
    payload
        .get(CHUNK_ID)
        .and_then(|v| v.as_str())
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| Error::VectorIndex("a Qdrant point has no valid chunk_id payload".into()))
}

impl VectorIndex for QdrantVectorIndex {
    fn upsert(&self, points: &[VectorPoint]) -> Result<()> {
        if points.is_empty() {
            return Ok(());
        }
        let mut structs = Vec::with_capacity(points.len());
        for p in points {
            if p.vector.len() != self.dimension {
                return Err(Error::InvalidArgument(format!(
                    "vector has {} dimensions, the index {}",
                    p.vector.len(),
                    self.dimension
                )));
            }
            let payload = qdrant_client::Payload::from([
                (DATANET, self.tenant().into()),
                (CHUNK_ID, p.chunk_id.to_hex().into()),
                (CONTRIBUTOR, p.contributor.to_lower_hex().into()),
                ("document", hex::encode(p.document_hash).into()),
            ]);
            structs.push(PointStruct::new(self.point_id(&p.chunk_id), p.vector.clone(), payload));
        }
        let request = UpsertPointsBuilder::new(&self.settings.collection, structs)
            .wait(true)
            .ordering(qdrant_client::qdrant::WriteOrdering { r#type: WriteOrderingType::Medium as i32 });
        let client = self.client.clone();
        run(async move { client.upsert_points(request).await.map(|_| ()).map_err(failed("upsert")) })
    }

    fn delete(&self, ids: &[ChunkId]) -> Result<()> {
        if ids.is_empty() {
            return Ok(());
        }
        let ids: Vec<PointId> = ids.iter().map(|id| self.point_id(id)).collect();
        let request = DeletePointsBuilder::new(&self.settings.collection).points(PointsIdsList { ids }).wait(true);
        let client = self.client.clone();
        run(async move { client.delete_points(request).await.map(|_| ()).map_err(failed("delete")) })
    }

    fn search(&self, query: &[f32], k: usize, contributors: Option<&[Address]>) -> Result<Vec<VectorHit>> {
        // As on the embedded index, a contributor-filtered search is exact.
        self.search_with(query, k, contributors, contributors.is_some())
    }

    fn search_exact(&self, query: &[f32], k: usize) -> Result<Vec<VectorHit>> {
        self.search_with(query, k, None, true)
    }

    fn ids(&self) -> Result<Vec<ChunkId>> {
        let mut out = Vec::new();
        let mut offset: Option<PointId> = None;
        loop {
            let mut request = ScrollPointsBuilder::new(&self.settings.collection)
                .filter(self.datanet_filter(None))
                .limit(10_000)
                .with_payload(qdrant_client::qdrant::PayloadIncludeSelector { fields: vec![CHUNK_ID.to_string()] })
                .with_vectors(false);
            if let Some(offset) = offset.take() {
                request = request.offset(offset);
            }
            let client = self.client.clone();
            let page = run(async move { client.scroll(request).await.map_err(failed("scroll")) })?;
            for point in &page.result {
                out.push(chunk_id_of(&point.payload)?);
            }
            match page.next_page_offset {
                Some(next) => offset = Some(next),
                None => return Ok(out),
            }
        }
    }

    fn len(&self) -> Result<usize> {
        let request = CountPointsBuilder::new(&self.settings.collection).filter(self.datanet_filter(None)).exact(true);
        let client = self.client.clone();
        let counted = run(async move { client.count(request).await.map_err(failed("count")) })?;
        Ok(counted.result.map_or(0, |r| r.count as usize))
    }

    fn commit(&self) -> Result<()> {
        // Every write waited for the server: it is already durable there.
        Ok(())
    }

    fn optimize(&self) -> Result<()> {
        // The server builds its indexes in the background.
        Ok(())
    }
}
