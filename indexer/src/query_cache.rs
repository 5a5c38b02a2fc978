//! Query embeddings, remembered: a search service sees the same questions again and again, and
//! embedding one is most of a search's CPU (about 3.5 ms of ~5 on 2 cores). [`QueryCache`] wraps
//! an [`Embedder`] and keeps the vectors of single texts (queries) in a bounded
//! least-recently-used map; batches (ingest) pass through untouched.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::{Embedder, Result};

/// An [`Embedder`] that remembers the vectors of the last `capacity` distinct queries.
pub struct QueryCache {
    inner: Arc<dyn Embedder>,
    capacity: usize,
    state: Mutex<CacheState>,
}

#[derive(Default)]
struct CacheState {
    /// text -> (vector, last use)
    entries: HashMap<String, (Vec<f32>, u64)>,
    clock: u64,
    hits: u64,
    misses: u64,
}

impl QueryCache {
    pub fn new(inner: Arc<dyn Embedder>, capacity: usize) -> Self {
        QueryCache { inner, capacity: capacity.max(1), state: Mutex::new(CacheState::default()) }
    }

    /// (hits, misses) since creation.
    pub fn counts(&self) -> (u64, u64) {
        self.state.lock().map(|s| (s.hits, s.misses)).unwrap_or((0, 0))
    }

    fn cached(&self, text: &str) -> Option<Vec<f32>> {
        let mut state = self.state.lock().ok()?;
        state.clock += 1;
        let now = state.clock;
        match state.entries.get_mut(text) {
            Some((vector, used)) => {
                *used = now;
                let vector = vector.clone();
                state.hits += 1;
                Some(vector)
            }
            None => {
                state.misses += 1;
                None
            }
        }
    }

    fn remember(&self, text: &str, vector: &[f32]) {
        let Ok(mut state) = self.state.lock() else { return };
        if state.entries.len() >= self.capacity && !state.entries.contains_key(text) {
            // O(capacity) per eviction: a few microseconds at the default size, against
            // milliseconds for the embedding it saves.
            if let Some(oldest) = state.entries.iter().min_by_key(|(_, (_, used))| *used).map(|(k, _)| k.clone()) {
                state.entries.remove(&oldest);
            }
        }
        let now = state.clock;
        state.entries.insert(text.to_string(), (vector.to_vec(), now));
    }
}

impl Embedder for QueryCache {
    fn dimension(&self) -> usize {
        self.inner.dimension()
    }

    fn count_tokens(&self, text: &str) -> usize {
        self.inner.count_tokens(text)
    }

    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
        let [text] = texts else { return self.inner.embed(texts) };
        if let Some(vector) = self.cached(text) {
            return Ok(vec![vector]);
        }
        let vectors = self.inner.embed(texts)?;
        if let Some(vector) = vectors.first() {
            self.remember(text, vector);
        }
        Ok(vectors)
    }

    fn model_name(&self) -> &str {
        self.inner.model_name()
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
    fn repeated_queries_are_embedded_once_and_the_least_recent_is_evicted() {
        let inner = Arc::new(Counting(AtomicUsize::new(0)));
        let cache = QueryCache::new(inner.clone(), 2);
        assert_eq!(cache.embed(&["a"]).unwrap(), vec![vec![1.0]]);
        assert_eq!(cache.embed(&["bb"]).unwrap(), vec![vec![2.0]]);
        assert_eq!(cache.embed(&["a"]).unwrap(), vec![vec![1.0]]); // hit; "bb" is now the oldest
        assert_eq!(inner.0.load(Ordering::SeqCst), 2);
        cache.embed(&["ccc"]).unwrap(); // evicts "bb"
        cache.embed(&["a"]).unwrap(); // still cached
        assert_eq!(inner.0.load(Ordering::SeqCst), 3);
        cache.embed(&["bb"]).unwrap(); // embedded again
        assert_eq!(inner.0.load(Ordering::SeqCst), 4);
        assert_eq!(cache.counts(), (2, 4));
        // Batches pass through, uncached.
        cache.embed(&["a", "a"]).unwrap();
        assert_eq!(inner.0.load(Ordering::SeqCst), 6);
    }
}
