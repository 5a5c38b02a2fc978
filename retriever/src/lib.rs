//! The read half: hybrid retrieval over one or more Datanets.
//!
//! Dense (cosine over MiniLM vectors) and BM25 candidate lists are fetched per Datanet, merged,
//! and fused. Two fusions are offered: reciprocal rank fusion and a convex combination of
//! min-max-normalized scores; the default is the one that measured best on the SciFact dev set
//! (see `benches/RESULTS.md`). The retriever never writes: it uses the indexes' read methods and
//! the catalog's queries only.

use std::collections::HashMap;
use std::sync::Arc;

use tributary_indexer::{Address, ChunkId, Datanet, Embedder, Store};

pub use tributary_indexer::Error;
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Which signals rank passages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    #[default]
    Hybrid,
    Dense,
    Bm25,
}

impl std::str::FromStr for Mode {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "hybrid" => Ok(Mode::Hybrid),
            "dense" => Ok(Mode::Dense),
            "bm25" => Ok(Mode::Bm25),
            _ => Err(Error::InvalidArgument(format!("mode must be hybrid, dense or bm25, not {s:?}"))),
        }
    }
}

/// How hybrid mode combines the two lists.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub enum Fusion {
    /// `sum 1 / (k + rank)` over the lists a passage appears in.
    Rrf { k: f32 },
    /// `alpha * dense + (1 - alpha) * bm25`, each min-max-normalized over its candidates.
    Convex { alpha: f32 },
}

impl Default for Fusion {
    fn default() -> Self {
        Fusion::Convex { alpha: DEFAULT_ALPHA }
    }
}

/// Weight of the dense score in the default convex fusion: the best of 0.3..0.7 on the SciFact
/// dev set (benches/RESULTS.md), and the neutral choice.
pub const DEFAULT_ALPHA: f32 = 0.5;

#[derive(Debug, Clone, Copy)]
pub struct RetrieverConfig {
    pub fusion: Fusion,
    /// Candidates fetched from each list before fusion (at least `k`).
    pub candidates: usize,
}

impl Default for RetrieverConfig {
    fn default() -> Self {
        RetrieverConfig { fusion: Fusion::default(), candidates: 100 }
    }
}

/// The most characters a query's text may have: a question, not a document. Past it a query is
/// refused (one 2 MB query of distinct words once cost 45 s of CPU).
pub const MAX_QUERY_CHARS: usize = 8 * 1024;
/// The most Datanets one query may search (each costs a dense and a BM25 search).
pub const MAX_QUERY_DATANETS: usize = 16;
/// The most contributors one query may filter by.
pub const MAX_QUERY_CONTRIBUTORS: usize = 64;

/// A question.
#[derive(Debug, Clone)]
pub struct Query<'a> {
    pub text: &'a str,
    pub datanets: &'a [Datanet],
    /// Only passages first contributed by these addresses.
    pub contributors: Option<&'a [Address]>,
    pub k: usize,
    pub mode: Mode,
}

impl Query<'_> {
    /// Refuses a query past the bounds above, or with nothing to search: what one request may
    /// cost is bounded before any work is done.
    pub fn check(&self) -> Result<()> {
        check_bounds(self.text, self.datanets.len(), self.contributors.map_or(0, <[Address]>::len))?;
        if self.text.trim().is_empty() {
            return Err(Error::InvalidArgument("the query is empty".into()));
        }
        if self.datanets.is_empty() {
            return Err(Error::InvalidArgument("name at least one Datanet".into()));
        }
        Ok(())
    }
}

/// The bounds of [`Query::check`] on a query's text and the lengths of its lists, for front ends
/// that check a request before resolving its names.
pub fn check_bounds(text: &str, datanets: usize, contributors: usize) -> Result<()> {
    if text.chars().nth(MAX_QUERY_CHARS).is_some() {
        return Err(Error::InvalidArgument(format!("a query has at most {MAX_QUERY_CHARS} characters")));
    }
    if datanets > MAX_QUERY_DATANETS {
        return Err(Error::InvalidArgument(format!("a query names at most {MAX_QUERY_DATANETS} Datanets")));
    }
    if contributors > MAX_QUERY_CONTRIBUTORS {
        return Err(Error::InvalidArgument(format!("a query names at most {MAX_QUERY_CONTRIBUTORS} contributors")));
    }
    Ok(())
}

/// A retrieved passage, with everything a citation needs.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Passage {
    pub chunk_id: String,
    pub text: String,
    /// Byte offsets into the document's text.
    pub start: usize,
    pub end: usize,
    pub document_id: i64,
    /// The document's external id (the BEIR `_id`, or the file name).
    pub document: String,
    pub source: String,
    /// EIP-55 address of the contributor who holds the credit.
    pub contributor: String,
    pub datanet: String,
    /// The fused (or single-signal) score that ranks the passages.
    pub score: f32,
    pub dense_score: Option<f32>,
    pub bm25_score: Option<f32>,
}

pub struct Retriever {
    store: Arc<Store>,
    embedder: Arc<dyn Embedder>,
    config: RetrieverConfig,
}

/// A dense and a BM25 candidate list over the Datanets `ids`, each `depth` deep.
type Candidates = (Vec<(i64, ChunkId, f32)>, Vec<(i64, ChunkId, f32)>);

fn candidates(
    store: &Store,
    ids: &[i64],
    vector: Option<&[f32]>,
    text: &str,
    mode: Mode,
    contributors: Option<&[Address]>,
    depth: usize,
) -> Result<Candidates> {
    let (mut dense, mut bm25) = (Vec::new(), Vec::new());
    for &id in ids {
        let indexes = store.indexes(id)?;
        if let Some(vector) = vector {
            for hit in indexes.vectors.search(vector, depth, contributors)? {
                dense.push((id, hit.chunk_id, hit.score));
            }
        }
        if mode != Mode::Dense {
            for hit in indexes.keywords.search(text, depth, contributors)? {
                bm25.push((id, hit.chunk_id, hit.score));
            }
        }
    }
    Ok((dense, bm25))
}

#[derive(Default, Clone, Copy)]
struct Candidate {
    dense: Option<(usize, f32)>,
    bm25: Option<(usize, f32)>,
}

impl Retriever {
    pub fn new(store: Arc<Store>, embedder: Arc<dyn Embedder>, config: RetrieverConfig) -> Self {
        Retriever { store, embedder, config }
    }

    pub fn config(&self) -> &RetrieverConfig {
        &self.config
    }

    pub async fn search(&self, query: &Query<'_>) -> Result<Vec<Passage>> {
        query.check()?;
        if query.k == 0 {
            return Ok(Vec::new());
        }
        let depth = self.config.candidates.max(query.k);
        let query_vector = match query.mode {
            Mode::Bm25 => None,
            Mode::Dense | Mode::Hybrid => {
                let embedder = self.embedder.clone();
                let text = query.text.to_string();
                let mut vectors = tokio::task::spawn_blocking(move || embedder.embed(&[text.as_str()]))
                    .await
                    .map_err(|e| Error::Model(format!("embedding task failed: {e}")))??;
                vectors.pop()
            }
        };

        // Candidates from every Datanet (each once), keyed by (Datanet, chunk): searched on a
        // blocking thread, never on the async workers.
        let mut ids: Vec<i64> = query.datanets.iter().map(|d| d.id).collect();
        ids.sort_unstable();
        ids.dedup();
        let mut contributors = query.contributors.map(<[Address]>::to_vec);
        if let Some(list) = &mut contributors {
            list.sort_unstable();
            list.dedup();
        }
        let (store, text, mode) = (self.store.clone(), query.text.to_string(), query.mode);
        let (mut dense, mut bm25) = tokio::task::spawn_blocking(move || {
            candidates(&store, &ids, query_vector.as_deref(), &text, mode, contributors.as_deref(), depth)
        })
        .await
        .map_err(|e| Error::KeywordIndex(format!("search task failed: {e}")))??;
        let scored = fuse(&mut dense, &mut bm25, query.mode, self.config.fusion, depth);
        // Candidates without a citable catalog row (flagged, or still being ingested) drop out:
        // resolve further down the list until k passages are found or the list ends.
        let mut passages = Vec::with_capacity(query.k);
        let mut rest = scored.as_slice();
        while passages.len() < query.k && !rest.is_empty() {
            // A window of k each time: one query when nothing is skipped, few when much is.
            let (window, tail) = rest.split_at(query.k.min(rest.len()));
            passages.extend(self.resolve(query.datanets, window).await?);
            rest = tail;
        }
        passages.truncate(query.k);
        Ok(passages)
    }

    async fn resolve(&self, datanets: &[Datanet], top: &[((i64, ChunkId), f32, Candidate)]) -> Result<Vec<Passage>> {
        let mut by_datanet: HashMap<i64, Vec<ChunkId>> = HashMap::new();
        for ((datanet_id, chunk_id), _, _) in top {
            by_datanet.entry(*datanet_id).or_default().push(*chunk_id);
        }
        let mut records = HashMap::new();
        for (datanet_id, ids) in by_datanet {
            for record in self.store.catalog().citable_chunk_records(datanet_id, &ids).await? {
                records.insert((datanet_id, record.chunk_id), record);
            }
        }
        let names: HashMap<i64, &str> = datanets.iter().map(|d| (d.id, d.name.as_str())).collect();
        let mut passages = Vec::with_capacity(top.len());
        for &(key, score, candidate) in top {
            // An index entry without a citable catalog row is flagged, or an ingest still in
            // flight (or an orphan that recovery will remove): skip it.
            let Some(record) = records.remove(&key) else { continue };
            passages.push(Passage {
                chunk_id: record.chunk_id.to_hex(),
                text: record.text,
                start: record.start,
                end: record.end,
                document_id: record.document_id,
                document: record.document_external_id,
                source: record.source_name,
                contributor: record.contributor.to_checksummed(),
                datanet: names.get(&key.0).copied().unwrap_or_default().to_string(),
                score,
                dense_score: candidate.dense.map(|(_, s)| s),
                bm25_score: candidate.bm25.map(|(_, s)| s),
            });
        }
        Ok(passages)
    }
}

/// Ranks documents by their best passage (the BEIR convention for chunked corpora): the top
/// `k` `(document, score)` pairs, ties broken by document id.
pub fn rank_documents(passages: &[Passage], k: usize) -> Vec<(String, f32)> {
    let mut best: HashMap<&str, f32> = HashMap::new();
    for p in passages {
        let entry = best.entry(p.document.as_str()).or_insert(f32::MIN);
        *entry = entry.max(p.score);
    }
    let mut docs: Vec<(String, f32)> = best.into_iter().map(|(d, s)| (d.to_string(), s)).collect();
    docs.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    docs.truncate(k);
    docs
}

/// Reads BEIR `queries.jsonl` into `(id, text)` pairs; a malformed line is an error naming it.
pub fn read_queries(path: &std::path::Path) -> Result<Vec<(String, String)>> {
    #[derive(serde::Deserialize)]
    struct BeirQuery {
        #[serde(rename = "_id")]
        id: serde_json::Value,
        text: String,
    }
    let body = std::fs::read_to_string(path).map_err(|source| Error::Io { path: path.to_path_buf(), source })?;
    let malformed = |line, reason: String| Error::MalformedInput { path: path.to_path_buf(), line: Some(line), reason };
    let mut out = Vec::new();
    for (index, line) in body.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let q: BeirQuery = serde_json::from_str(line)
            .map_err(|e| malformed(index + 1, format!("not a BEIR query {{\"_id\",\"text\"}}: {e}")))?;
        let id = match q.id {
            serde_json::Value::String(s) if !s.is_empty() => s,
            serde_json::Value::Number(n) => n.to_string(),
            _ => return Err(malformed(index + 1, "\"_id\" must be a non-empty string or number".into())),
        };
        out.push((id, q.text));
    }
    Ok(out)
}

type Key = (i64, ChunkId);

/// Sorts each list by score (ties by chunk id, for deterministic output), keeps `depth`, and
/// fuses. Returns keys with fused score, best first.
fn fuse(
    dense: &mut [(i64, ChunkId, f32)],
    bm25: &mut [(i64, ChunkId, f32)],
    mode: Mode,
    fusion: Fusion,
    depth: usize,
) -> Vec<(Key, f32, Candidate)> {
    let order = |a: &(i64, ChunkId, f32), b: &(i64, ChunkId, f32)| {
        b.2.total_cmp(&a.2).then_with(|| (a.0, a.1).cmp(&(b.0, b.1)))
    };
    dense.sort_by(order);
    bm25.sort_by(order);
    let dense = &dense[..dense.len().min(depth)];
    let bm25 = &bm25[..bm25.len().min(depth)];

    let mut candidates: HashMap<Key, Candidate> = HashMap::new();
    for (rank, (d, c, s)) in dense.iter().enumerate() {
        candidates.entry((*d, *c)).or_default().dense = Some((rank, *s));
    }
    for (rank, (d, c, s)) in bm25.iter().enumerate() {
        candidates.entry((*d, *c)).or_default().bm25 = Some((rank, *s));
    }
    let range = |list: &[(i64, ChunkId, f32)]| {
        let max = list.first().map(|x| x.2).unwrap_or(0.0);
        let min = list.last().map(|x| x.2).unwrap_or(0.0);
        (min, max)
    };
    let (dense_min, dense_max) = range(dense);
    let (bm25_min, bm25_max) = range(bm25);
    let normalize = |s: f32, (min, max): (f32, f32)| if max > min { (s - min) / (max - min) } else { 1.0 };

    let mut scored: Vec<(Key, f32, Candidate)> = candidates
        .into_iter()
        .map(|(key, c)| {
            let score = match mode {
                Mode::Dense => c.dense.map(|x| x.1).unwrap_or(f32::MIN),
                Mode::Bm25 => c.bm25.map(|x| x.1).unwrap_or(f32::MIN),
                Mode::Hybrid => match fusion {
                    Fusion::Rrf { k } => {
                        c.dense.map(|(r, _)| 1.0 / (k + r as f32 + 1.0)).unwrap_or(0.0)
                            + c.bm25.map(|(r, _)| 1.0 / (k + r as f32 + 1.0)).unwrap_or(0.0)
                    }
                    Fusion::Convex { alpha } => {
                        alpha * c.dense.map(|(_, s)| normalize(s, (dense_min, dense_max))).unwrap_or(0.0)
                            + (1.0 - alpha) * c.bm25.map(|(_, s)| normalize(s, (bm25_min, bm25_max))).unwrap_or(0.0)
                    }
                },
            };
            (key, score, c)
        })
        .collect();
    scored.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    scored
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u8) -> ChunkId {
        ChunkId::of_text(&format!("chunk {n}"))
    }

    #[test]
    fn convex_fusion_rewards_agreement() {
        // Chunk 1 is second in both lists, 2 and 3 each top one list only.
        let mut dense = vec![(1, id(2), 0.9), (1, id(1), 0.8), (1, id(4), 0.1)];
        let mut bm25 = vec![(1, id(3), 12.0), (1, id(1), 10.0), (1, id(5), 1.0)];
        let fused = fuse(&mut dense, &mut bm25, Mode::Hybrid, Fusion::Convex { alpha: 0.5 }, 10);
        assert_eq!(fused[0].0.1, id(1));
        let rrf = fuse(&mut dense, &mut bm25, Mode::Hybrid, Fusion::Rrf { k: 60.0 }, 10);
        assert_eq!(rrf[0].0.1, id(1));
    }

    #[test]
    fn single_modes_rank_by_their_own_score_and_ties_are_deterministic() {
        let mut dense = vec![(1, id(1), 0.5), (1, id(2), 0.5), (1, id(3), 0.7)];
        let mut bm25 = vec![(1, id(1), 3.0)];
        let fused = fuse(&mut dense, &mut bm25, Mode::Dense, Fusion::default(), 10);
        assert_eq!(fused[0].0.1, id(3));
        let (a, b) = (fused[1].0.1, fused[2].0.1);
        assert!(a < b, "ties must break by chunk id");
        let fused = fuse(&mut dense, &mut bm25, Mode::Bm25, Fusion::default(), 10);
        assert_eq!(fused[0].0.1, id(1));
    }

    #[test]
    fn depth_cuts_each_list() {
        let mut dense: Vec<_> = (0..10).map(|n| (1, id(n), n as f32)).collect();
        let fused = fuse(&mut dense, &mut Vec::new(), Mode::Dense, Fusion::default(), 3);
        assert_eq!(fused.len(), 3);
        assert_eq!(fused[0].0.1, id(9));
    }
}
