//! Query embeddings, remembered: a search service sees the same questions again and again, and
//! embedding one is most of a search's CPU (about 3.5 ms of ~5 on 2 cores). [`QueryCache`] wraps
//! an [`Embedder`] and keeps the vectors of single texts (queries) in a cache bounded by bytes;
//! batches (ingest) pass through untouched.
//!
//! Entries are keyed by the blake3 hash of the text, so an entry weighs the same whatever the
//! query's length (a cache keyed by whole texts grew without bound on distinct 30 MB queries),
//! and the cache is quick_cache's: sharded, with O(1) eviction (no scan of every entry under one
//! lock on a miss).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::{Embedder, Result};

/// What one entry is counted as: its key, its vector, and the map's bookkeeping around them.
const ENTRY_OVERHEAD: u64 = 32 + 64;

#[derive(Clone)]
struct ByBytes;

impl quick_cache::Weighter<[u8; 32], Arc<[f32]>> for ByBytes {
    fn weight(&self, _key: &[u8; 32], vector: &Arc<[f32]>) -> u64 {
        ENTRY_OVERHEAD + 4 * vector.len() as u64
    }
}

/// Remembers query vectors, up to `capacity_bytes` of them. It embeds only through a caller's
/// view ([`QueryCache::scoped`]), so no lookup can hit another caller's entries.
pub struct QueryCache {
    inner: Arc<dyn Embedder>,
    entries: quick_cache::sync::Cache<[u8; 32], Arc<[f32]>, ByBytes>,
    hits: AtomicU64,
    misses: AtomicU64,
}

impl QueryCache {
    /// A cache holding at most `capacity_bytes` of entries (key, vector and overhead counted).
    pub fn new(inner: Arc<dyn Embedder>, capacity_bytes: u64) -> Self {
        let per_entry = ENTRY_OVERHEAD + 4 * inner.dimension().max(1) as u64;
        let estimated = (capacity_bytes / per_entry).max(1) as usize;
        QueryCache {
            inner,
            entries: quick_cache::sync::Cache::with_weighter(estimated, capacity_bytes.max(1), ByBytes),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    /// (hits, misses) since creation.
    pub fn counts(&self) -> (u64, u64) {
        (self.hits.load(Ordering::Relaxed), self.misses.load(Ordering::Relaxed))
    }

    /// This cache seen from one caller: its entries are keyed by `scope` and the text, so a
    /// caller's lookups only ever hit the entries its own queries made. Without it, a hit (a
    /// faster search, a counter going up) tells anyone that a guessed question was asked
    /// recently by someone else, of a private Datanet too.
    pub fn scoped(self: &Arc<Self>, scope: &str) -> Arc<dyn Embedder> {
        Arc::new(Scoped { cache: self.clone(), scope: scope.to_string() })
    }

    fn key(scope: &str, text: &str) -> [u8; 32] {
        let mut hasher = blake3::Hasher::new();
        // Length-prefixed: no (scope, text) pair hashes like another.
        hasher.update(&(scope.len() as u64).to_le_bytes());
        hasher.update(scope.as_bytes());
        hasher.update(text.as_bytes());
        *hasher.finalize().as_bytes()
    }

    fn embed_in(&self, scope: &str, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
        let [text] = texts else { return self.inner.embed(texts) };
        let key = Self::key(scope, text);
        if let Some(vector) = self.entries.get(&key) {
            self.hits.fetch_add(1, Ordering::Relaxed);
            return Ok(vec![vector.to_vec()]);
        }
        self.misses.fetch_add(1, Ordering::Relaxed);
        let vectors = self.inner.embed(texts)?;
        if let Some(vector) = vectors.first() {
            self.entries.insert(key, Arc::from(vector.as_slice()));
        }
        Ok(vectors)
    }

    /// Entries held, and what they weigh in bytes (never above the capacity).
    pub fn size(&self) -> (usize, u64) {
        (self.entries.len(), self.entries.weight())
    }
}

/// [`QueryCache::scoped`].
struct Scoped {
    cache: Arc<QueryCache>,
    scope: String,
}

impl Embedder for Scoped {
    fn dimension(&self) -> usize {
        self.cache.inner.dimension()
    }

    fn count_tokens(&self, text: &str) -> usize {
        self.cache.inner.count_tokens(text)
    }

    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
        self.cache.embed_in(&self.scope, texts)
    }

    fn model_name(&self) -> &str {
        self.cache.inner.model_name()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Embeds a text as its length, counting calls.
    struct Counting(AtomicUsize);

    impl Embedder for Counting {
        fn dimension(&self) -> usize {
            1
        }
        fn count_tokens(&self, text: &str) -> usize {
            text.len()
        }
        fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
            self.0.fetch_add(texts.len(), Ordering::SeqCst);
            Ok(texts.iter().map(|t| vec![t.len() as f32]).collect())
        }
        fn model_name(&self) -> &str {
            "counting"
        }
    }

    #[test]
    fn repeated_queries_are_embedded_once() {
        let inner = Arc::new(Counting(AtomicUsize::new(0)));
        let cache = Arc::new(QueryCache::new(inner.clone(), 1 << 20));
        let view = cache.scoped("key:1");
        assert_eq!(view.embed(&["a"]).unwrap(), vec![vec![1.0]]);
        assert_eq!(view.embed(&["bb"]).unwrap(), vec![vec![2.0]]);
        assert_eq!(view.embed(&["a"]).unwrap(), vec![vec![1.0]]);
        assert_eq!(inner.0.load(Ordering::SeqCst), 2);
        assert_eq!(cache.counts(), (1, 2));
        // Batches pass through, uncached.
        view.embed(&["a", "a"]).unwrap();
        assert_eq!(inner.0.load(Ordering::SeqCst), 4);
    }

    /// Issue #24, defect 15: one caller's query is never a hit for another (the hit, a faster
    /// answer and a counter, would tell that the question was asked).
    #[test]
    fn scopes_do_not_share_entries() {
        let inner = Arc::new(Counting(AtomicUsize::new(0)));
        let cache = Arc::new(QueryCache::new(inner.clone(), 1 << 20));
        let (alice, bob) = (cache.scoped("key:1"), cache.scoped("key:2"));
        alice.embed(&["the secret merger"]).unwrap();
        alice.embed(&["the secret merger"]).unwrap();
        assert_eq!((cache.counts(), inner.0.load(Ordering::SeqCst)), ((1, 1), 1), "alice's repeat is a hit");
        bob.embed(&["the secret merger"]).unwrap();
        assert_eq!((cache.counts(), inner.0.load(Ordering::SeqCst)), ((1, 2), 2), "bob's guess is a miss");
        cache.scoped("key:").embed(&["1the secret merger"]).unwrap();
        assert_eq!(cache.counts(), (1, 3), "scope and text do not run together");
    }

    /// Issue #24, defect 3: the cache is bounded by bytes, whatever the queries' lengths (a
    /// cache of 4,096 whole texts held 4,096 x 30 MB).
    #[test]
    fn long_distinct_queries_stay_within_the_byte_capacity() {
        let inner = Arc::new(Counting(AtomicUsize::new(0)));
        let capacity = 64 * 1024;
        let cache = Arc::new(QueryCache::new(inner.clone(), capacity));
        let view = cache.scoped("anonymous");
        let long = "q".repeat(100_000);
        for i in 0..5_000 {
            view.embed(&[format!("{i} {long}").as_str()]).unwrap();
            let (_, bytes) = cache.size();
            assert!(bytes <= capacity, "{bytes} bytes held after {i} queries");
        }
        let (entries, bytes) = cache.size();
        assert!(entries > 100 && bytes > capacity / 2, "the capacity is used: {entries} entries, {bytes} bytes");
    }
}
