//! One contract for every dense-vector backend: the embedded qdrant-edge shard always; the
//! qdrant-client backend against the in-process stand-in (tests/it/qdrant_standin.rs) always,
//! and against a real Qdrant server when `QDRANT_URL` is set.

use tributary_indexer::{
    Address, ChunkId, EdgeIndexConfig, EdgeVectorIndex, QdrantSettings, QdrantVectorIndex, VectorIndex, VectorPoint,
};

use crate::qdrant_standin;

const DIM: usize = 16;

fn contributor(n: u64) -> Address {
    format!("0x{n:040x}").parse().unwrap()
}

/// A unit vector pointing mostly along `axis`.
fn vector(axis: usize, wobble: f32) -> Vec<f32> {
    let mut v: Vec<f32> =
        (0..DIM).map(|i| if i == axis % DIM { 1.0 } else { wobble * ((i * 7 + axis) % 5) as f32 / 5.0 }).collect();
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    v.iter_mut().for_each(|x| *x /= n);
    v
}

fn point(text: &str, axis: usize, who: u64) -> VectorPoint {
    VectorPoint {
        chunk_id: ChunkId::of_text(text),
        vector: vector(axis, 0.1),
        contributor: contributor(who),
        document_hash: [7; 32],
    }
}

/// What every backend must do, given two Datanets' indexes (`a`, `b`) of one deployment.
fn contract(a: &dyn VectorIndex, b: &dyn VectorIndex) {
    let points: Vec<VectorPoint> = (0..40).map(|i| point(&format!("chunk {i}"), i, i as u64 % 3 + 1)).collect();
    a.upsert(&points).unwrap();
    // The same text in another Datanet is another point.
    b.upsert(&points[..5]).unwrap();
    a.commit().unwrap();
    b.commit().unwrap();
    assert_eq!((a.len().unwrap(), b.len().unwrap()), (40, 5));
    a.upsert(&points[..10]).unwrap();
    assert_eq!(a.len().unwrap(), 40, "an upsert of the same chunk replaces it");

    let hits = a.search(&vector(3, 0.1), 5, None).unwrap();
    assert_eq!(hits.len(), 5);
    assert_eq!(hits[0].chunk_id, ChunkId::of_text("chunk 3"), "{hits:?}");
    assert!((hits[0].score - 1.0).abs() < 1e-3, "cosine of a vector with itself: {}", hits[0].score);
    assert!(hits.windows(2).all(|w| w[0].score >= w[1].score));
    assert_eq!(a.search_exact(&vector(3, 0.1), 5).unwrap(), hits);
    // Scoped to its Datanet: b holds chunks 0-4 only.
    let in_b = b.search(&vector(3, 0.1), 10, None).unwrap();
    assert_eq!(in_b.len(), 5);
    assert!(in_b.iter().all(|h| (0..5).any(|i| h.chunk_id == ChunkId::of_text(&format!("chunk {i}")))));
    // The contributor filter: only their points, never short.
    let who = [contributor(2)];
    let theirs = a.search(&vector(3, 0.1), 8, Some(&who)).unwrap();
    assert_eq!(theirs.len(), 8);
    let owned: Vec<ChunkId> = points.iter().filter(|p| p.contributor == who[0]).map(|p| p.chunk_id).collect();
    assert!(theirs.iter().all(|h| owned.contains(&h.chunk_id)));

    let mut ids = a.ids().unwrap();
    ids.sort();
    let mut expected: Vec<ChunkId> = points.iter().map(|p| p.chunk_id).collect();
    expected.sort();
    assert_eq!(ids, expected);
    a.delete(&[points[3].chunk_id, points[4].chunk_id]).unwrap();
    assert_eq!(a.len().unwrap(), 38);
    assert_ne!(a.search(&vector(3, 0.1), 1, None).unwrap()[0].chunk_id, points[3].chunk_id);
    assert_eq!(b.len().unwrap(), 5, "a delete in one Datanet leaves the other alone");
    a.optimize().unwrap();
    assert_eq!(a.len().unwrap(), 38);

    let bad = VectorPoint { vector: vec![1.0; DIM - 1], ..point("bad", 0, 1) };
    assert!(a.upsert(&[bad]).is_err());
    assert!(a.search(&[1.0; DIM + 1], 3, None).is_err());
}

#[test]
fn embedded_backend_keeps_the_contract() {
    let dir = tempfile::tempdir().unwrap();
    let a = EdgeVectorIndex::open(&dir.path().join("a"), EdgeIndexConfig::new(DIM)).unwrap();
    let b = EdgeVectorIndex::open(&dir.path().join("b"), EdgeIndexConfig::new(DIM)).unwrap();
    contract(&a, &b);
}

fn settings(url: &str, collection: &str) -> QdrantSettings {
    QdrantSettings {
        url: url.to_string(),
        api_key: None,
        collection: collection.to_string(),
        shards: 1,
        replication: 1,
        write_consistency: 1,
        hnsw_ef: 128,
    }
}

#[test]
fn qdrant_client_backend_keeps_the_contract_on_the_stand_in() {
    let server = qdrant_standin::start();
    let config = settings(&server.url, "tributary");
    let a = QdrantVectorIndex::open(&config, 1, DIM).unwrap();
    // A second opening (another Datanet, or another replica) finds the collection made.
    let b = QdrantVectorIndex::open(&config, 2, DIM).unwrap();
    contract(&a, &b);
}

/// Needs a real server: `QDRANT_URL=http://… cargo nextest run -p tributary-indexer --run-ignored all
/// -E 'test(/real_server/)'`. Ignored (and listed as skipped) otherwise: no Qdrant server can be
/// installed on the machines CI runs on.
#[test]
#[ignore = "needs a Qdrant server: set QDRANT_URL and run with --run-ignored"]
fn qdrant_client_backend_keeps_the_contract_on_a_real_server() {
    let config = QdrantSettings::from_env().expect("QDRANT_* settings are valid");
    let mut config = config.expect("QDRANT_URL is set");
    // A collection of its own, so that a shared server's data is never touched.
    config.collection = format!("tributary-test-{}", std::process::id());
    let a = QdrantVectorIndex::open(&config, 1, DIM).unwrap();
    let b = QdrantVectorIndex::open(&config, 2, DIM).unwrap();
    contract(&a, &b);
}

/// A whole store on the qdrant-client backend (PostgreSQL catalog, vectors on the stand-in):
/// an ingest is searchable, `verify` finds catalog and indexes agreeing, and a chunk the
/// catalog never committed (a crash between the index write and the commit) is removed from
/// the server at the next open, as on the embedded backend.
#[tokio::test(flavor = "multi_thread")]
async fn a_store_on_the_qdrant_backend_ingests_verifies_and_recovers() {
    use tributary_indexer::testing::fresh_pg_schema;
    use tributary_indexer::{IngestOptions, NewDatanet, NoProgress, Store, StoreConfig, Visibility, ingest};

    let server = qdrant_standin::start();
    let dir = tempfile::tempdir().unwrap();
    let mut config = StoreConfig::new(dir.path());
    config.database_url = Some(fresh_pg_schema("qd").await.expect("PostgreSQL reachable at TEST_DATABASE_URL"));
    config.qdrant = Some(settings(&server.url, "deployment"));
    let store = Store::open(config.clone()).await.unwrap();
    let new = NewDatanet {
        name: "rivers".into(),
        description: String::new(),
        owner: crate::alice(),
        visibility: Visibility::Public,
        review: false,
    };
    let net = store.catalog().create_datanet(&new).await.unwrap();
    let files = dir.path().join("upload");
    std::fs::create_dir_all(&files).unwrap();
    std::fs::write(files.join("a.txt"), "The Missouri River is the longest river in North America.\n").unwrap();
    std::fs::write(files.join("b.txt"), "A delta forms where a river deposits sediment.\n").unwrap();
    let embedder = crate::embedder();
    let report = ingest(&store, embedder.clone(), &net, &[files], &IngestOptions::new(crate::alice()), &NoProgress)
        .await
        .unwrap();
    assert_eq!(report.new_chunks, 2);
    let query = embedder.embed(&["longest river"]).unwrap().remove(0);
    let indexes = store.indexes(net.id).unwrap();
    let hits = tokio::task::spawn_blocking(move || indexes.vectors.search(&query, 2, None)).await.unwrap().unwrap();
    let top = store.catalog().chunk_records(net.id, &[hits[0].chunk_id]).await.unwrap();
    assert!(top[0].text.contains("Missouri"), "{top:?}");
    assert!(store.verify(&net).await.unwrap().is_consistent());

    // An index write the catalog never committed: journaled, written to the server, no rows.
    let orphan = ChunkId::of_text("never committed");
    store.catalog().journal_add(net.id, &[orphan]).await.unwrap();
    let vector = embedder.embed(&["never committed"]).unwrap().remove(0);
    let written = VectorPoint { chunk_id: orphan, vector, contributor: crate::alice(), document_hash: [0; 32] };
    store.indexes(net.id).unwrap().vectors.upsert(&[written]).unwrap();
    assert_eq!(store.indexes(net.id).unwrap().vectors.len().unwrap(), 3);
    drop(store);
    let reopened = Store::open(config).await.unwrap();
    assert_eq!(reopened.indexes(net.id).unwrap().vectors.len().unwrap(), 2, "recovery removed the orphan");
    assert!(reopened.verify(&net).await.unwrap().is_consistent());
}
