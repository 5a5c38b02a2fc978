//! The write path: parse, chunk, deduplicate, embed, index, commit.
//!
//! Durability protocol, per batch of documents (about [`IngestOptions::batch_chunks`] new chunks):
//! 1. journal the batch's new chunk ids in the catalog (committed);
//! 2. write vectors and keywords, then make both durable (`commit`);
//! 3. in one catalog transaction, insert documents, chunks and spans and clear the journal.
//!
//! A crash before 3 leaves journaled ids that the catalog lacks; [`Store::recover`] deletes them
//! from the indexes on the next open, and re-running the same ingest redoes the batch (documents
//! already committed are recognized by their raw hash and skipped). A crash after 3 loses
//! nothing. So at every instant the catalog, the vectors and the keywords agree once recovered.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use crate::catalog::{Datanet, NewDocument, Span};
use crate::chunk::{Chunker, ChunkerConfig};
use crate::keywords::KeywordDoc;
use crate::source::{SourceDocument, read_sources};
use crate::store::Store;
use crate::vectors::VectorPoint;
use crate::{Address, ChunkId, Embedder, Error, Result};

/// How to ingest.
#[derive(Debug, Clone)]
pub struct IngestOptions {
    pub contributor: Address,
    /// SPDX identifier or free text, recorded per document.
    pub license: String,
    pub chunker: ChunkerConfig,
    /// New chunks per durable batch.
    pub batch_chunks: usize,
}

impl IngestOptions {
    pub fn new(contributor: Address) -> Self {
        IngestOptions {
            contributor,
            license: "unspecified".into(),
            chunker: ChunkerConfig::default(),
            batch_chunks: 256,
        }
    }
}

/// What an ingest did, for the uploader.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct IngestReport {
    /// Documents in the upload.
    pub documents: usize,
    /// Documents stored by this run.
    pub documents_stored: usize,
    /// Documents whose exact bytes the Datanet already had (a re-run, or a re-upload).
    pub documents_already_present: usize,
    /// Chunks cut from the stored documents.
    pub chunks: usize,
    /// Chunks embedded and indexed by this run.
    pub new_chunks: usize,
    /// Chunks whose content the Datanet already had (credit stays with the first contributor).
    pub duplicate_chunks: usize,
    pub seconds: f64,
}

impl std::fmt::Display for IngestReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} documents ({} new, {} already present), {} chunks ({} new, {} duplicates credited to their first contributor) in {:.1} s",
            self.documents,
            self.documents_stored,
            self.documents_already_present,
            self.chunks,
            self.new_chunks,
            self.duplicate_chunks,
            self.seconds
        )
    }
}

/// Receives progress, in chunks. The CLI draws a bar with it.
pub trait Progress: Send + Sync {
    fn start(&self, total_chunks: u64);
    fn advance(&self, chunks: u64);
}

/// Ignores progress.
pub struct NoProgress;

impl Progress for NoProgress {
    fn start(&self, _: u64) {}
    fn advance(&self, _: u64) {}
}

struct Prepared {
    source: SourceDocument,
    chunks: Vec<crate::Chunk>,
}

/// Ingests `paths` into `datanet` as `options.contributor`.
pub async fn ingest(
    store: &Store,
    embedder: Arc<dyn Embedder>,
    datanet: &Datanet,
    paths: &[PathBuf],
    options: &IngestOptions,
    progress: &dyn Progress,
) -> Result<IngestReport> {
    // Parse everything before writing anything: a bad file fails the whole upload.
    let paths = paths.to_vec();
    let sources = tokio::task::spawn_blocking(move || read_sources(&paths)).await.map_err(task_failed)??;
    ingest_documents(store, embedder, datanet, sources, options, progress).await
}

/// Ingests documents already read (an HTTP upload, [`crate::read_upload`]).
pub async fn ingest_documents(
    store: &Store,
    embedder: Arc<dyn Embedder>,
    datanet: &Datanet,
    sources: Vec<SourceDocument>,
    options: &IngestOptions,
    progress: &dyn Progress,
) -> Result<IngestReport> {
    let started = Instant::now();
    if options.batch_chunks == 0 {
        return Err(Error::InvalidArgument("batch size must be at least 1".into()));
    }
    let chunker_config = options.chunker;
    let embedder_for_chunking = embedder.clone();
    let mut report = IngestReport { documents: sources.len(), ..Default::default() };

    let hashes: Vec<[u8; 32]> = sources.iter().map(|s| s.raw_hash).collect();
    let present = store.catalog().existing_documents(datanet.id, &hashes).await?;
    let mut seen_docs = HashSet::new();
    let fresh: Vec<SourceDocument> =
        sources.into_iter().filter(|s| !present.contains(&s.raw_hash) && seen_docs.insert(s.raw_hash)).collect();
    report.documents_already_present = report.documents - fresh.len();

    let prepared: Vec<Prepared> = tokio::task::spawn_blocking(move || -> Result<Vec<Prepared>> {
        let chunker = Chunker::new(chunker_config, |t: &str| embedder_for_chunking.count_tokens(t))?;
        Ok(fresh.into_iter().map(|source| Prepared { chunks: chunker.chunk(&source.text), source }).collect())
    })
    .await
    .map_err(task_failed)??;
    progress.start(prepared.iter().map(|p| p.chunks.len() as u64).sum());

    let indexes = store.indexes(datanet.id)?;
    let mut writer = BatchWriter { store, embedder, datanet, indexes, options, introduced: HashSet::new(), report };
    let mut batch: Vec<Prepared> = Vec::new();
    let mut batch_new = 0usize;
    let mut pending = prepared.into_iter().peekable();
    while let Some(doc) = pending.next() {
        batch_new += doc.chunks.len();
        batch.push(doc);
        if batch_new >= options.batch_chunks || pending.peek().is_none() {
            let docs = std::mem::take(&mut batch);
            batch_new = 0;
            let spans: u64 = docs.iter().map(|d| d.chunks.len() as u64).sum();
            writer.write(docs).await?;
            progress.advance(spans);
        }
    }
    // Build the ANN graph once at the end rather than per batch; a no-op while small.
    let indexes = writer.indexes.clone();
    tokio::task::spawn_blocking(move || indexes.vectors.optimize()).await.map_err(task_failed)??;
    let mut report = writer.report;
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

fn task_failed(e: tokio::task::JoinError) -> Error {
    Error::Internal(format!("a background task failed: {e}"))
}

/// Writes batches of documents following the durability protocol (module docs).
struct BatchWriter<'a> {
    store: &'a Store,
    embedder: Arc<dyn Embedder>,
    datanet: &'a Datanet,
    indexes: Arc<crate::store::DatanetIndexes>,
    options: &'a IngestOptions,
    /// Chunks this ingest introduced, so a repeat within the upload counts as a duplicate.
    introduced: HashSet<ChunkId>,
    report: IngestReport,
}

/// A chunk this batch stores for the first time, with what each index sees of it.
struct NewChunk {
    id: ChunkId,
    document_hash: [u8; 32],
    /// [`crate::chunk::indexed_text`].
    embedded: String,
    /// [`crate::chunk::keyword_text`].
    keywords: String,
}

impl BatchWriter<'_> {
    async fn write(&mut self, docs: Vec<Prepared>) -> Result<()> {
        let (store, datanet, options) = (self.store, self.datanet, self.options);
        let candidate_ids: Vec<ChunkId> = docs.iter().flat_map(|d| d.chunks.iter().map(|c| c.id)).collect();
        let stored = store.catalog().existing_chunks(datanet.id, &candidate_ids).await?;

        let mut new_docs = Vec::with_capacity(docs.len());
        let mut to_embed: Vec<NewChunk> = Vec::new();
        for doc in docs {
            let mut spans = Vec::with_capacity(doc.chunks.len());
            let mut duplicates = 0;
            for chunk in &doc.chunks {
                let new_chunk = !stored.contains(&chunk.id) && self.introduced.insert(chunk.id);
                if new_chunk {
                    let text = &doc.source.text;
                    to_embed.push(NewChunk {
                        id: chunk.id,
                        document_hash: doc.source.raw_hash,
                        embedded: crate::chunk::indexed_text(text, chunk.start, &chunk.text).into_owned(),
                        keywords: crate::chunk::keyword_text(text, chunk.start, chunk.end, &chunk.text).into_owned(),
                    });
                } else {
                    duplicates += 1;
                }
                spans.push(Span {
                    chunk_id: chunk.id,
                    start: chunk.start,
                    end: chunk.end,
                    tokens: chunk.tokens,
                    new_chunk,
                });
            }
            self.report.chunks += spans.len();
            self.report.duplicate_chunks += duplicates;
            new_docs.push(NewDocument {
                contributor: options.contributor,
                source_name: doc.source.source_name,
                external_id: doc.source.external_id,
                license: options.license.clone(),
                byte_len: doc.source.byte_len,
                raw_hash: doc.source.raw_hash,
                text: doc.source.text,
                spans,
                duplicate_chunks: duplicates,
            });
        }

        let new_ids: Vec<ChunkId> = to_embed.iter().map(|c| c.id).collect();
        store.ensure_room()?;
        store.catalog().journal_add(datanet.id, &new_ids).await?;

        let contributor = options.contributor;
        let embedder = self.embedder.clone();
        let indexes_for_write = self.indexes.clone();
        let written = to_embed.len();
        tokio::task::spawn_blocking(move || -> Result<()> {
            let texts: Vec<&str> = to_embed.iter().map(|c| c.embedded.as_str()).collect();
            let vectors = embedder.embed(&texts)?;
            let points: Vec<VectorPoint> = to_embed
                .iter()
                .zip(vectors)
                .map(|(c, vector)| VectorPoint { chunk_id: c.id, vector, contributor, document_hash: c.document_hash })
                .collect();
            indexes_for_write.vectors.upsert(&points)?;
            let keyword_docs: Vec<KeywordDoc<'_>> =
                to_embed.iter().map(|c| KeywordDoc { chunk_id: c.id, contributor, text: &c.keywords }).collect();
            indexes_for_write.keywords.upsert(&keyword_docs)?;
            indexes_for_write.commit()
        })
        .await
        .map_err(task_failed)??;

        store.catalog().commit_documents(datanet.id, &new_docs).await?;
        self.report.new_chunks += written;
        self.report.documents_stored += new_docs.len();
        Ok(())
    }
}
