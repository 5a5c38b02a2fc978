//! The data directory: the catalog plus one vector and one keyword index per Datanet, and the
//! recovery that keeps the three in agreement.

use std::borrow::Cow;
use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::catalog::{Catalog, ChunkRecord, Datanet};
use crate::chunk::{indexed_text, keyword_text};
use crate::keywords::{KeywordDoc, KeywordIndex, TantivyKeywordIndex};
use crate::qdrant::{QdrantCollection, QdrantSettings};
use crate::vectors::{EdgeIndexConfig, EdgeVectorIndex, VectorIndex, VectorPoint};
use crate::{ChunkId, Embedder, Error, Result};

/// Where data lives and how indexes are tuned.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    pub data_dir: PathBuf,
    /// `postgres://…` or `sqlite:…`; default: `sqlite:<data_dir>/tributary.db`.
    pub database_url: Option<String>,
    pub vectors: EdgeIndexConfig,
    /// Dense vectors on a Qdrant server or cluster instead of the embedded shards.
    pub qdrant: Option<QdrantSettings>,
    /// Bytes kept free on the data directory's disk: an ingest batch that would start with
    /// less fails with [`Error::DiskFull`] (default [`DEFAULT_MIN_FREE_BYTES`]).
    pub min_free_bytes: u64,
}

/// What [`StoreConfig::min_free_bytes`] defaults to: far more than one ingest batch writes.
pub const DEFAULT_MIN_FREE_BYTES: u64 = 64 << 20;

impl StoreConfig {
    /// Defaults for all-MiniLM-L6-v2 (384 dimensions).
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        StoreConfig {
            data_dir: data_dir.into(),
            database_url: None,
            vectors: EdgeIndexConfig::new(384),
            qdrant: None,
            min_free_bytes: DEFAULT_MIN_FREE_BYTES,
        }
    }
}

/// A Datanet's two indexes.
pub struct DatanetIndexes {
    pub vectors: Box<dyn VectorIndex>,
    pub keywords: Box<dyn KeywordIndex>,
}

impl DatanetIndexes {
    /// Makes both durable. Called before the catalog commit that references their contents.
    pub fn commit(&self) -> Result<()> {
        self.vectors.commit()?;
        self.keywords.commit()
    }

    pub fn delete(&self, ids: &[ChunkId]) -> Result<()> {
        self.vectors.delete(ids)?;
        self.keywords.delete(ids)
    }
}

/// What [`Store::verify`] found for one Datanet.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Consistency {
    pub catalog_chunks: usize,
    pub vector_points: usize,
    pub keyword_docs: usize,
    pub missing_from_vectors: Vec<String>,
    pub missing_from_keywords: Vec<String>,
    pub orphan_vectors: Vec<String>,
    pub orphan_keywords: Vec<String>,
}

impl Consistency {
    pub fn is_consistent(&self) -> bool {
        self.missing_from_vectors.is_empty()
            && self.missing_from_keywords.is_empty()
            && self.orphan_vectors.is_empty()
            && self.orphan_keywords.is_empty()
    }
}

/// The opened data directory.
pub struct Store {
    catalog: Catalog,
    config: StoreConfig,
    indexes: Mutex<HashMap<i64, Arc<DatanetIndexes>>>,
    /// The Qdrant backend's collection, connected on first use and shared by every Datanet.
    qdrant: Mutex<Option<QdrantCollection>>,
}

impl Store {
    /// Opens (creating if needed) and finishes any ingest a crash interrupted.
    pub async fn open(config: StoreConfig) -> Result<Store> {
        std::fs::create_dir_all(&config.data_dir).map_err(Error::io(&config.data_dir))?;
        let url = match &config.database_url {
            Some(url) => url.clone(),
            None => format!("sqlite://{}?mode=rwc", config.data_dir.join("tributary.db").display()),
        };
        let catalog = Catalog::connect(&url).await?;
        let store = Store { catalog, config, indexes: Mutex::new(HashMap::new()), qdrant: Mutex::new(None) };
        // Upgrade first: recovery opens indexes, which stamps them with the current format.
        store.upgrade_keyword_indexes().await?;
        store.recover().await?;
        Ok(store)
    }

    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    pub fn data_dir(&self) -> &Path {
        &self.config.data_dir
    }

    /// Fails with [`Error::DiskFull`] when the data directory's disk has less than the reserve
    /// free. The vector index writes through memory maps, and a write to a map on a full disk
    /// is a SIGBUS that kills the process: checked before each ingest batch writes, so the
    /// batch fails cleanly instead (a reserve, like a database's disk watermark; another
    /// process filling the disk between the check and the write can still outrun it).
    pub fn ensure_room(&self) -> Result<()> {
        let dir = &self.config.data_dir;
        let stats = rustix::fs::statvfs(dir).map_err(|e| Error::io(dir)(std::io::Error::from(e)))?;
        let available = stats.f_bavail.saturating_mul(stats.f_frsize);
        if available < self.config.min_free_bytes {
            return Err(Error::DiskFull { dir: dir.clone(), available, reserve: self.config.min_free_bytes });
        }
        Ok(())
    }

    fn index_dir(&self, datanet_id: i64) -> PathBuf {
        self.config.data_dir.join("datanets").join(datanet_id.to_string())
    }

    /// The Datanet's indexes, opened once per process.
    pub fn indexes(&self, datanet_id: i64) -> Result<Arc<DatanetIndexes>> {
        let mut open = self.indexes.lock().map_err(|_| Error::VectorIndex("index registry poisoned".into()))?;
        if let Some(found) = open.get(&datanet_id) {
            return Ok(found.clone());
        }
        let dir = self.index_dir(datanet_id);
        let vectors: Box<dyn VectorIndex> = match &self.config.qdrant {
            Some(settings) => Box::new(self.qdrant_collection(settings)?.index(datanet_id)),
            None => Box::new(EdgeVectorIndex::open(&dir.join("vectors"), self.config.vectors)?),
        };
        let indexes =
            Arc::new(DatanetIndexes { vectors, keywords: Box::new(TantivyKeywordIndex::open(&dir.join("keywords"))?) });
        open.insert(datanet_id, indexes.clone());
        Ok(indexes)
    }

    /// The Qdrant collection, connected (and created if missing) once; a failed connection is
    /// tried again at the next use.
    fn qdrant_collection(&self, settings: &QdrantSettings) -> Result<QdrantCollection> {
        let mut connected = self.qdrant.lock().map_err(|_| Error::VectorIndex("Qdrant connection poisoned".into()))?;
        if let Some(collection) = connected.as_ref() {
            return Ok(collection.clone());
        }
        let collection = QdrantCollection::connect(settings, self.config.vectors.dimension)?;
        *connected = Some(collection.clone());
        Ok(collection)
    }

    /// Rolls back index writes whose catalog commit never happened.
    ///
    /// The ingest protocol (see `ingest.rs`) journals chunk ids before writing them to the
    /// indexes and clears the journal in the same transaction that commits their catalog rows.
    /// So a journal entry whose chunk is absent from the catalog marks an index write that a
    /// crash orphaned: delete it. Idempotent, so a crash during recovery is harmless too.
    pub async fn recover(&self) -> Result<usize> {
        let pending = self.catalog.journal_pending().await?;
        if pending.is_empty() {
            return Ok(0);
        }
        let mut by_datanet: HashMap<i64, Vec<ChunkId>> = HashMap::new();
        for (datanet_id, id) in pending {
            by_datanet.entry(datanet_id).or_default().push(id);
        }
        let mut removed = 0;
        for (datanet_id, ids) in by_datanet {
            let committed = self.catalog.existing_chunks(datanet_id, &ids).await?;
            let orphans: Vec<ChunkId> = ids.iter().filter(|id| !committed.contains(id)).copied().collect();
            let indexes = self.indexes(datanet_id)?;
            indexes.delete(&orphans)?;
            indexes.commit()?;
            self.catalog.journal_clear(datanet_id, &ids).await?;
            removed += orphans.len();
            tracing::info!(datanet_id, orphans = orphans.len(), "recovered an interrupted ingest");
        }
        Ok(removed)
    }

    /// Compares the chunk ids in the catalog and both indexes.
    pub async fn verify(&self, datanet: &Datanet) -> Result<Consistency> {
        let catalog: BTreeSet<ChunkId> = self.catalog.chunk_ids(datanet.id).await?.into_iter().collect();
        let indexes = self.indexes(datanet.id)?;
        let vectors: BTreeSet<ChunkId> = indexes.vectors.ids()?.into_iter().collect();
        let keywords: BTreeSet<ChunkId> = indexes.keywords.ids()?.into_iter().collect();
        let hex = |set: BTreeSet<&ChunkId>| set.into_iter().map(ChunkId::to_hex).collect::<Vec<_>>();
        Ok(Consistency {
            catalog_chunks: catalog.len(),
            vector_points: vectors.len(),
            keyword_docs: keywords.len(),
            missing_from_vectors: hex(catalog.difference(&vectors).collect()),
            missing_from_keywords: hex(catalog.difference(&keywords).collect()),
            orphan_vectors: hex(vectors.difference(&catalog).collect()),
            orphan_keywords: hex(keywords.difference(&catalog).collect()),
        })
    }

    /// Brings both indexes in line with the catalog: orphans deleted, missing chunks
    /// re-indexed from the catalog's text (vectors re-embedded; keywords need no model).
    /// Returns what was found before repairing.
    pub async fn repair(&self, datanet: &Datanet, embedder: &dyn Embedder) -> Result<Consistency> {
        let found = self.verify(datanet).await?;
        if found.is_consistent() {
            return Ok(found);
        }
        let indexes = self.indexes(datanet.id)?;
        indexes.vectors.delete(&parse_ids(&found.orphan_vectors)?)?;
        indexes.keywords.delete(&parse_ids(&found.orphan_keywords)?)?;
        for batch in parse_ids(&found.missing_from_vectors)?.chunks(256) {
            let records = self.catalog.chunk_records(datanet.id, batch).await?;
            let sources = self.catalog.document_sources(datanet.id, &records).await?;
            let texts = indexed_texts(&records, &sources);
            let texts: Vec<&str> = texts.iter().map(|t| t.as_ref()).collect();
            let points: Vec<VectorPoint> = records
                .iter()
                .zip(embedder.embed(&texts)?)
                .map(|(r, vector)| VectorPoint {
                    chunk_id: r.chunk_id,
                    vector,
                    contributor: r.contributor,
                    document_hash: sources.get(&r.document_id).map(|s| s.0).unwrap_or_default(),
                })
                .collect();
            indexes.vectors.upsert(&points)?;
        }
        self.reindex_keywords(datanet.id, &parse_ids(&found.missing_from_keywords)?).await?;
        indexes.commit()?;
        Ok(found)
    }

    /// Writes keyword entries for `ids` from the catalog (uncommitted).
    async fn reindex_keywords(&self, datanet_id: i64, ids: &[ChunkId]) -> Result<()> {
        let indexes = self.indexes(datanet_id)?;
        for batch in ids.chunks(1024) {
            let records = self.catalog.chunk_records(datanet_id, batch).await?;
            let sources = self.catalog.document_sources(datanet_id, &records).await?;
            let texts = keyword_texts(&records, &sources);
            let docs: Vec<KeywordDoc<'_>> = records
                .iter()
                .zip(&texts)
                .map(|(r, text)| KeywordDoc { chunk_id: r.chunk_id, contributor: r.contributor, text })
                .collect();
            indexes.keywords.upsert(&docs)?;
        }
        Ok(())
    }

    /// Rebuilds keyword indexes written in an older format (another analyzer) from the catalog.
    async fn upgrade_keyword_indexes(&self) -> Result<()> {
        for datanet in self.catalog.datanets().await? {
            let path = self.index_dir(datanet.id).join("keywords");
            if !path.exists() || TantivyKeywordIndex::format_is_current(&path) {
                continue;
            }
            tracing::info!(datanet = %datanet.name, "rebuilding the keyword index in the current format");
            std::fs::remove_dir_all(&path).map_err(Error::io(&path))?;
            let indexes = self.indexes(datanet.id)?;
            TantivyKeywordIndex::stamp_format(&path, false)?;
            let ids = self.catalog.chunk_ids(datanet.id).await?;
            self.reindex_keywords(datanet.id, &ids).await?;
            indexes.keywords.commit()?;
            TantivyKeywordIndex::stamp_format(&path, true)?;
        }
        Ok(())
    }
}

/// [`indexed_text`] for each record, from its document's text.
fn indexed_texts<'a>(records: &'a [ChunkRecord], sources: &HashMap<i64, ([u8; 32], String)>) -> Vec<Cow<'a, str>> {
    texts_of(records, sources, |document, r| indexed_text(document, r.start, &r.text))
}

/// [`keyword_text`] for each record, from its document's text.
fn keyword_texts<'a>(records: &'a [ChunkRecord], sources: &HashMap<i64, ([u8; 32], String)>) -> Vec<Cow<'a, str>> {
    texts_of(records, sources, |document, r| keyword_text(document, r.start, r.end, &r.text))
}

/// `text(document, record)` for each record; the chunk alone where its document is missing.
fn texts_of<'a>(
    records: &'a [ChunkRecord],
    sources: &HashMap<i64, ([u8; 32], String)>,
    text: impl Fn(&str, &'a ChunkRecord) -> Cow<'a, str>,
) -> Vec<Cow<'a, str>> {
    records
        .iter()
        .map(|r| match sources.get(&r.document_id) {
            Some((_, document)) => text(document, r),
            None => r.text.as_str().into(),
        })
        .collect()
}

fn parse_ids(ids: &[String]) -> Result<Vec<ChunkId>> {
    ids.iter().map(|s| s.parse()).collect()
}
