//! Keywords: a trait, and its embedded implementation on tantivy (BM25).
//!
//! One tantivy index per Datanet, like the vectors. Text is analyzed with English stemming and
//! stopwords; queries are analyzed the same way and run as a disjunction of terms, so no query
//! syntax can make a user's question fail to parse.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use tantivy::collector::{DocSetCollector, TopDocs};
use tantivy::query::{BooleanQuery, ConstScoreQuery, Occur, Query, TermQuery};
use tantivy::schema::{Field, IndexRecordOption, STORED, STRING, Schema, TextFieldIndexing, TextOptions, Value};
use tantivy::tokenizer::{
    Language, LowerCaser, RemoveLongFilter, SimpleTokenizer, Stemmer, StopWordFilter, TextAnalyzer,
};
use tantivy::{Index, IndexReader, IndexWriter, ReloadPolicy, TantivyDocument, Term, doc};

use crate::{Address, ChunkId, Error, Result};

/// A chunk's keywords to index.
#[derive(Debug, Clone)]
pub struct KeywordDoc<'a> {
    pub chunk_id: ChunkId,
    pub contributor: Address,
    pub text: &'a str,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct KeywordHit {
    pub chunk_id: ChunkId,
    /// BM25.
    pub score: f32,
}

/// The keyword index of one Datanet. Writes are visible to searches and durable after
/// [`KeywordIndex::commit`].
pub trait KeywordIndex: Send + Sync {
    /// Idempotent: writing a chunk again replaces it.
    fn upsert(&self, docs: &[KeywordDoc<'_>]) -> Result<()>;
    fn delete(&self, ids: &[ChunkId]) -> Result<()>;
    fn search(&self, query: &str, k: usize, contributors: Option<&[Address]>) -> Result<Vec<KeywordHit>>;
    fn ids(&self) -> Result<Vec<ChunkId>>;
    fn commit(&self) -> Result<()>;
}

const ANALYZER: &str = "en_stem";
/// What an index was built with: analyzer and indexed text. An index whose `FORMAT` file says
/// otherwise is rebuilt from the catalog when the store opens (`Store::open`).
const FORMAT: &str = "tributary-keywords 3: en_stem (simple tokens, lowercase, English stopwords, Porter2), heading + chunk + 1024 bytes each side";
const FORMAT_FILE: &str = "FORMAT";
/// The most distinct terms a BM25 query runs with (the first ones of the text): each is a term
/// query over the whole index.
pub const MAX_QUERY_TERMS: usize = 256;
/// Indexing memory budget; tantivy flushes a segment when it fills.
const WRITER_BUDGET: usize = 64 * 1024 * 1024;

struct Fields {
    chunk_id: Field,
    contributor: Field,
    text: Field,
}

pub struct TantivyKeywordIndex {
    index: Index,
    reader: IndexReader,
    // Opened on first write: the writer takes a lock file, and searching needs none.
    writer: Mutex<Option<IndexWriter>>,
    fields: Fields,
    path: PathBuf,
}

fn schema() -> (Schema, Fields) {
    let mut builder = Schema::builder();
    let chunk_id = builder.add_text_field("chunk_id", STRING | STORED);
    let contributor = builder.add_text_field("contributor", STRING);
    let text_options = TextOptions::default().set_indexing_options(
        TextFieldIndexing::default().set_tokenizer(ANALYZER).set_index_option(IndexRecordOption::WithFreqs),
    );
    let text = builder.add_text_field("text", text_options);
    (builder.build(), Fields { chunk_id, contributor, text })
}

fn analyzer() -> TextAnalyzer {
    let builder =
        TextAnalyzer::builder(SimpleTokenizer::default()).filter(RemoveLongFilter::limit(40)).filter(LowerCaser);
    match StopWordFilter::new(Language::English) {
        Some(stop) => builder.filter(stop).filter(Stemmer::new(Language::English)).build(),
        None => builder.filter(Stemmer::new(Language::English)).build(),
    }
}

fn poisoned<T>(_: T) -> Error {
    Error::KeywordIndex("writer lock poisoned by an earlier panic".into())
}

impl TantivyKeywordIndex {
    /// Whether the index at `path` was written in the current format.
    pub fn format_is_current(path: &Path) -> bool {
        std::fs::read_to_string(path.join(FORMAT_FILE)).is_ok_and(|f| f == FORMAT)
    }

    /// Stamps the index at `path` as written in the current format, or (`false`) as not: a
    /// rebuild marks it incomplete first, so that a crash mid-rebuild is redone at next open.
    pub fn stamp_format(path: &Path, current: bool) -> Result<()> {
        let file = path.join(FORMAT_FILE);
        std::fs::write(&file, if current { FORMAT } else { "rebuilding" }).map_err(Error::io(&file))
    }

    /// Opens the index at `path`, creating it when absent.
    pub fn open(path: &Path) -> Result<Self> {
        std::fs::create_dir_all(path).map_err(Error::io(path))?;
        if !path.join(FORMAT_FILE).exists() {
            Self::stamp_format(path, true)?;
        }
        let (schema, fields) = schema();
        let dir = tantivy::directory::MmapDirectory::open(path).map_err(|e| Error::KeywordIndex(e.to_string()))?;
        let index = Index::open_or_create(dir, schema)?;
        index.tokenizers().register(ANALYZER, analyzer());
        let reader = index.reader_builder().reload_policy(ReloadPolicy::Manual).try_into()?;
        Ok(TantivyKeywordIndex { index, reader, writer: Mutex::new(None), fields, path: path.to_path_buf() })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn with_writer<T>(&self, f: impl FnOnce(&mut IndexWriter) -> Result<T>) -> Result<T> {
        let mut guard = self.writer.lock().map_err(poisoned)?;
        if guard.is_none() {
            *guard = Some(self.index.writer(WRITER_BUDGET)?);
        }
        match guard.as_mut() {
            Some(writer) => f(writer),
            None => Err(Error::KeywordIndex("no writer".into())),
        }
    }

    fn chunk_term(&self, id: &ChunkId) -> Term {
        Term::from_field_text(self.fields.chunk_id, &id.to_hex())
    }

    fn query_terms(&self, query: &str) -> Vec<Term> {
        let mut analyzer = self.index.tokenizers().get(ANALYZER).unwrap_or_else(analyzer);
        let mut stream = analyzer.token_stream(query);
        // Distinct terms in order of first appearance, at most MAX_QUERY_TERMS of them: a set,
        // not a scan of the list per token (a 2 MB query of distinct words took 45 s that way).
        let mut seen = std::collections::HashSet::new();
        let mut terms = Vec::new();
        while terms.len() < MAX_QUERY_TERMS && stream.advance() {
            let token = stream.token();
            if seen.insert(token.text.clone()) {
                terms.push(Term::from_field_text(self.fields.text, &token.text));
            }
        }
        terms
    }
}

impl KeywordIndex for TantivyKeywordIndex {
    fn upsert(&self, docs: &[KeywordDoc<'_>]) -> Result<()> {
        self.with_writer(|writer| {
            for d in docs {
                writer.delete_term(self.chunk_term(&d.chunk_id));
                writer.add_document(doc!(
                    self.fields.chunk_id => d.chunk_id.to_hex(),
                    self.fields.contributor => d.contributor.to_lower_hex(),
                    self.fields.text => d.text,
                ))?;
            }
            Ok(())
        })
    }

    fn delete(&self, ids: &[ChunkId]) -> Result<()> {
        self.with_writer(|writer| {
            for id in ids {
                writer.delete_term(self.chunk_term(id));
            }
            Ok(())
        })
    }

    fn search(&self, query: &str, k: usize, contributors: Option<&[Address]>) -> Result<Vec<KeywordHit>> {
        let terms = self.query_terms(query);
        if terms.is_empty() || k == 0 {
            return Ok(Vec::new());
        }
        let text_query: Box<dyn Query> = Box::new(BooleanQuery::new(
            terms
                .into_iter()
                .map(|t| (Occur::Should, Box::new(TermQuery::new(t, IndexRecordOption::WithFreqs)) as Box<dyn Query>))
                .collect(),
        ));
        let query: Box<dyn Query> = match contributors {
            None => text_query,
            Some(list) => {
                let allowed = BooleanQuery::new(
                    list.iter()
                        .map(|c| {
                            let term = Term::from_field_text(self.fields.contributor, &c.to_lower_hex());
                            (Occur::Should, Box::new(TermQuery::new(term, IndexRecordOption::Basic)) as Box<dyn Query>)
                        })
                        .collect(),
                );
                // A zero constant score: the filter selects, BM25 alone ranks.
                Box::new(BooleanQuery::new(vec![
                    (Occur::Must, text_query),
                    (Occur::Must, Box::new(ConstScoreQuery::new(Box::new(allowed), 0.0))),
                ]))
            }
        };
        let searcher = self.reader.searcher();
        let top = searcher.search(&query, &TopDocs::with_limit(k).order_by_score())?;
        let mut hits = Vec::with_capacity(top.len());
        for (score, address) in top {
            let doc: TantivyDocument = searcher.doc(address)?;
            let id = doc
                .get_first(self.fields.chunk_id)
                .and_then(|v| v.as_str())
                .ok_or_else(|| Error::KeywordIndex("document without chunk_id".into()))?;
            hits.push(KeywordHit { chunk_id: id.parse()?, score });
        }
        Ok(hits)
    }

    fn ids(&self) -> Result<Vec<ChunkId>> {
        let searcher = self.reader.searcher();
        let addresses = searcher.search(&tantivy::query::AllQuery, &DocSetCollector)?;
        let mut out = Vec::with_capacity(addresses.len());
        for address in addresses {
            let doc: TantivyDocument = searcher.doc(address)?;
            if let Some(id) = doc.get_first(self.fields.chunk_id).and_then(|v| v.as_str()) {
                out.push(id.parse()?);
            }
        }
        Ok(out)
    }

    fn commit(&self) -> Result<()> {
        self.with_writer(|writer| Ok(writer.commit()?))?;
        self.reader.reload()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::{FORMAT, MAX_QUERY_TERMS, TantivyKeywordIndex};
    use crate::chunk::KEYWORD_CONTEXT_BYTES;

    /// A query's terms are deduplicated with a set, keep their first order, and stop at
    /// MAX_QUERY_TERMS (issue #24, defect 2: one 2 MB query of distinct words ran 45 s).
    #[test]
    fn query_terms_are_distinct_ordered_and_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let index = TantivyKeywordIndex::open(dir.path()).unwrap();
        let texts = |terms: Vec<tantivy::Term>| -> Vec<String> {
            terms.iter().map(|t| t.value().as_str().unwrap_or_default().to_string()).collect()
        };
        assert_eq!(texts(index.query_terms("Rivers river the delta RIVERS delta")), ["river", "delta"]);
        let words: Vec<String> = (0..200_000).map(|i| format!("w{i}")).collect();
        let terms = index.query_terms(&words.join(" "));
        assert_eq!(terms.len(), MAX_QUERY_TERMS);
        assert_eq!(texts(terms)[..3], ["w0", "w1", "w2"]);
    }

    /// An index is rebuilt only when its format line changes: the window it was built with
    /// must be part of that line.
    #[test]
    fn the_format_names_the_keyword_window() {
        assert!(FORMAT.contains(&format!("{KEYWORD_CONTEXT_BYTES} bytes each side")), "{FORMAT}");
    }
}
