//! Approximate search against exact search on the embedded vector index, after the HNSW graph
//! is built: unfiltered (which is what a Datanet-scoped query is, one shard per Datanet) and
//! contributor-filtered.

use tributary_indexer::{Address, ChunkId, EdgeIndexConfig, EdgeVectorIndex, VectorIndex, VectorPoint};

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> f32 {
        // xorshift64*: deterministic, good enough for test data.
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        ((self.0.wrapping_mul(0x2545F4914F6CDD1D) >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }
    fn vector(&mut self, center: &[f32], spread: f32) -> Vec<f32> {
        let v: Vec<f32> = center.iter().map(|c| c + spread * self.next()).collect();
        let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        v.into_iter().map(|x| x / n).collect()
    }
}

const DIM: usize = 48;
const POINTS: usize = 4000;

fn contributor(n: usize) -> Address {
    format!("0x{:040x}", n + 1).parse().unwrap()
}

#[test]
fn hnsw_recall_at_10_against_exact_search() {
    let dir = tempfile::tempdir().unwrap();
    // A low threshold so that the 4000 points get an HNSW graph, as 100k would by default.
    let config = EdgeIndexConfig { dimension: DIM, indexing_threshold_kb: 64, hnsw_ef: 128 };
    let index = EdgeVectorIndex::open(dir.path(), config).unwrap();
    let mut rng = Rng(0x9E3779B97F4A7C15);
    // Clustered data, as real embeddings are.
    let centers: Vec<Vec<f32>> = (0..20).map(|_| (0..DIM).map(|_| rng.next()).collect()).collect();
    let points: Vec<VectorPoint> = (0..POINTS)
        .map(|i| VectorPoint {
            chunk_id: ChunkId::of_text(&format!("point {i}")),
            vector: rng.vector(&centers[i % centers.len()], 0.6),
            contributor: contributor(i % 7),
            document_hash: [0; 32],
        })
        .collect();
    for batch in points.chunks(500) {
        index.upsert(batch).unwrap();
    }
    index.optimize().unwrap();
    assert_eq!(index.len().unwrap(), POINTS);

    let queries: Vec<Vec<f32>> = (0..60).map(|i| rng.vector(&centers[i % centers.len()], 0.8)).collect();
    let (mut found, mut total) = (0usize, 0usize);
    for q in &queries {
        let exact: Vec<ChunkId> = index.search_exact(q, 10).unwrap().iter().map(|h| h.chunk_id).collect();
        let approx: Vec<ChunkId> = index.search(q, 10, None).unwrap().iter().map(|h| h.chunk_id).collect();
        assert_eq!(approx.len(), 10);
        found += approx.iter().filter(|id| exact.contains(id)).count();
        total += exact.len();
    }
    let recall = found as f64 / total as f64;
    assert!(recall >= 0.99, "recall@10 {recall}");

    // Contributor filter: recall@10 against brute force over that contributor's points.
    let who = [contributor(3)];
    let (mut found, mut total) = (0usize, 0usize);
    for q in queries.iter().take(20) {
        let got: Vec<ChunkId> = index.search(q, 10, Some(&who)).unwrap().iter().map(|h| h.chunk_id).collect();
        assert_eq!(got.len(), 10, "a filtered search must not come back short");
        let mut brute: Vec<(f32, ChunkId)> = points
            .iter()
            .filter(|p| p.contributor == who[0])
            .map(|p| (p.vector.iter().zip(q).map(|(a, b)| a * b).sum::<f32>(), p.chunk_id))
            .collect();
        brute.sort_by(|a, b| b.0.total_cmp(&a.0));
        let expected: Vec<ChunkId> = brute.iter().take(10).map(|x| x.1).collect();
        found += got.iter().filter(|id| expected.contains(id)).count();
        total += expected.len();
    }
    let filtered_recall = found as f64 / total as f64;
    assert!(filtered_recall >= 0.99, "filtered recall@10 {filtered_recall}");

    // Reopening finds everything again.
    drop(index);
    let reopened = EdgeVectorIndex::open(dir.path(), config).unwrap();
    assert_eq!(reopened.len().unwrap(), POINTS);
    assert_eq!(reopened.ids().unwrap().len(), POINTS);
}

#[test]
fn wrong_dimension_is_an_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let index = EdgeVectorIndex::open(dir.path(), EdgeIndexConfig::new(8)).unwrap();
    let bad = VectorPoint {
        chunk_id: ChunkId::of_text("x"),
        vector: vec![1.0; 7],
        contributor: Address::ZERO,
        document_hash: [0; 32],
    };
    assert!(index.upsert(&[bad]).is_err());
    assert!(index.search(&[1.0; 9], 3, None).is_err());
}
