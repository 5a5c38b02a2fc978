//! The write path on both SQL backends: dedup, offsets, re-runs, bad input, recovery.

use std::path::{Path, PathBuf};

use tributary_indexer::{
    Address, ChunkId, Datanet, DatanetUpdate, Error, IngestOptions, KeywordDoc, NewDatanet, NoProgress, Store,
    VectorPoint, Visibility, ingest,
};

use crate::backends::{BOTH, Backend, store};
use crate::{alice, bob, embedder};

const TRIBUTARIES: &str = "# Tributaries\n\nA tributary is a stream that flows into a larger river, the main stem.\n\nDownstream of a confluence the main river carries more water.\n";
const WATERSHEDS: &str = "A watershed drains all of its rainfall to a single outlet.\n\nWatersheds are separated by drainage divides, usually ridges.\n";
/// WATERSHEDS re-typed: other line breaks and spacing, same normalized text.
const WATERSHEDS_RETYPED: &str = "A watershed drains all of its rainfall\nto a single outlet.\r\n\r\nWatersheds are separated by  drainage divides, usually ridges.";

fn write(dir: &Path, name: &str, body: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, body).unwrap();
    path
}

async fn datanet(store: &Store, name: &str) -> Datanet {
    store
        .catalog()
        .create_datanet(&NewDatanet {
            name: name.into(),
            description: String::new(),
            owner: alice(),
            visibility: Visibility::Public,
            review: false,
        })
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn dedup_across_contributors_keeps_first_credit_on_both_backends() {
    for backend in BOTH {
        dedup_and_offsets(backend).await;
    }
}

async fn dedup_and_offsets(backend: Backend) {
    let (dir, store) = store(backend).await;
    let files = dir.path().join("upload");
    let alice_dir = files.join("alice");
    write(&alice_dir, "tributaries.md", TRIBUTARIES);
    write(&alice_dir, "watersheds.txt", WATERSHEDS);
    let bob_file = write(&files.join("bob"), "notes.txt", WATERSHEDS_RETYPED);
    let net = datanet(&store, "rivers").await;
    let embedder = embedder();

    let first = ingest(
        &store,
        embedder.clone(),
        &net,
        std::slice::from_ref(&alice_dir),
        &IngestOptions::new(alice()),
        &NoProgress,
    )
    .await
    .unwrap();
    assert_eq!((first.documents_stored, first.duplicate_chunks), (2, 0), "{backend:?} {first:?}");
    assert!(first.new_chunks >= 2);

    let second =
        ingest(&store, embedder.clone(), &net, &[bob_file], &IngestOptions::new(bob()), &NoProgress).await.unwrap();
    assert_eq!(second.documents_stored, 1, "{backend:?}");
    assert_eq!(second.new_chunks, 0, "{backend:?}: the re-typed copy must not be embedded again");
    assert_eq!(second.duplicate_chunks, second.chunks);

    // The duplicate's credit stays with alice; bob's document still records its spans.
    let docs = store.catalog().documents(net.id).await.unwrap();
    assert_eq!(docs.len(), 3);
    let bob_doc = docs.iter().find(|d| d.contributor == bob()).unwrap();
    assert_eq!(bob_doc.duplicate_chunks, bob_doc.chunk_count);
    let ids = store.catalog().chunk_ids(net.id).await.unwrap();
    let records = store.catalog().chunk_records(net.id, &ids).await.unwrap();
    assert!(records.iter().all(|r| r.contributor == alice()), "{backend:?}: credit moved");

    // Offsets round-trip for every span of every document, duplicates included.
    for doc in &docs {
        let spans = store.catalog().document_spans(doc.id).await.unwrap();
        assert_eq!(spans.len(), doc.chunk_count);
        for (id, start, end) in spans {
            assert_eq!(
                ChunkId::of_text(&doc.text[start..end]),
                id,
                "{backend:?}: span {start}..{end} of {}",
                doc.external_id
            );
        }
    }
    for record in &records {
        let doc = docs.iter().find(|d| d.id == record.document_id).unwrap();
        assert_eq!(&doc.text[record.start..record.end], record.text);
    }

    // Re-running an upload changes nothing.
    let again =
        ingest(&store, embedder.clone(), &net, &[alice_dir], &IngestOptions::new(alice()), &NoProgress).await.unwrap();
    assert_eq!((again.documents_already_present, again.documents_stored, again.new_chunks), (2, 0, 0));

    let consistency = store.verify(&net).await.unwrap();
    assert!(consistency.is_consistent(), "{backend:?}: {consistency:?}");
    assert_eq!(consistency.catalog_chunks, first.new_chunks);
    assert_eq!(consistency.vector_points, first.new_chunks);
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_input_stores_nothing_on_both_backends() {
    for backend in BOTH {
        let (dir, store) = store(backend).await;
        let upload = dir.path().join("upload");
        write(&upload, "a-good.md", TRIBUTARIES);
        write(&upload, "b-bad.jsonl", "{\"_id\":\"1\",\"text\":\"fine\"}\n{\"_id\":\"2\" \"text\":\"x\"}\n");
        let net = datanet(&store, "strict").await;
        let err =
            ingest(&store, embedder(), &net, &[upload], &IngestOptions::new(alice()), &NoProgress).await.unwrap_err();
        assert!(matches!(err, Error::MalformedInput { line: Some(2), .. }), "{backend:?}: {err}");
        assert!(err.to_string().contains("b-bad.jsonl:2"), "{err}");
        assert!(store.catalog().documents(net.id).await.unwrap().is_empty(), "{backend:?}: half-stored");
        let consistency = store.verify(&net).await.unwrap();
        assert_eq!((consistency.catalog_chunks, consistency.vector_points, consistency.keyword_docs), (0, 0, 0));

        let missing = store.catalog().datanet("nope").await.unwrap_err();
        assert!(matches!(missing, Error::DatanetNotFound(_)));
        // Issue #24, defect 9: a private Datanet is stored under `name~0xowner`, so creating a
        // Datanet never collides with (and so never reveals) someone else's private name. It
        // collided, and answered DatanetExists, when names were unique across all Datanets.
        async fn create(store: &Store, name: &str, owner: Address, visibility: Visibility) -> Result<Datanet, Error> {
            let new = NewDatanet { name: name.into(), description: String::new(), owner, visibility, review: false };
            store.catalog().create_datanet(&new).await
        }
        let (alice, bob) = (alice(), bob());
        let plans = create(&store, "plans", alice, Visibility::Private).await.unwrap();
        assert_eq!(plans.name, format!("plans~{}", alice.to_lower_hex()), "{backend:?}");
        let public = create(&store, "plans", bob, Visibility::Public).await.unwrap();
        assert_eq!(public.name, "plans", "{backend:?}: someone's private name does not block a public one");
        let bobs = create(&store, "plans", bob, Visibility::Private).await.unwrap();
        assert_eq!(bobs.name, format!("plans~{}", bob.to_lower_hex()));
        assert_eq!(store.catalog().datanet(&plans.name).await.unwrap().id, plans.id);
        for (name, owner, visibility) in [
            ("plans", alice, Visibility::Private),
            ("plans", alice, Visibility::Public),
            ("strict", bob, Visibility::Public),
        ] {
            let dup = create(&store, name, owner, visibility).await.unwrap_err();
            assert!(matches!(dup, Error::DatanetExists(_)), "{backend:?}: {dup}");
        }
        // Its name stays when it is made public: receipts and the chain registry record it.
        let update = DatanetUpdate { visibility: Some(Visibility::Public), ..Default::default() };
        assert_eq!(store.catalog().update_datanet(&plans.name, &update).await.unwrap().name, plans.name);
        for bad in ["", "Has Caps", "a/b", "a~0x00", &"x".repeat(65)] {
            let err = store
                .catalog()
                .create_datanet(&NewDatanet {
                    name: bad.into(),
                    description: String::new(),
                    owner: alice,
                    visibility: Visibility::Public,
                    review: false,
                })
                .await
                .unwrap_err();
            assert!(matches!(err, Error::InvalidDatanetName(_)), "{bad:?}");
        }
    }
}

/// The protocol's crash window, replayed in-process: journaled and indexed, never committed.
/// (The real kill -9 test is in the `tributary` binary's tests.)
#[tokio::test(flavor = "multi_thread")]
async fn recovery_removes_index_writes_that_were_never_committed() {
    let (dir, store) = store(Backend::Sqlite).await;
    let net = datanet(&store, "crashy").await;
    let file = write(dir.path(), "t.md", TRIBUTARIES);
    ingest(&store, embedder(), &net, &[file], &IngestOptions::new(alice()), &NoProgress).await.unwrap();

    let text = "An orphan chunk that reached the indexes but not the catalog.";
    let orphan = ChunkId::of_text(text);
    store.catalog().journal_add(net.id, &[orphan]).await.unwrap();
    let indexes = store.indexes(net.id).unwrap();
    let vector = embedder().embed(&[text]).unwrap().remove(0);
    indexes
        .vectors
        .upsert(&[VectorPoint { chunk_id: orphan, vector, contributor: bob(), document_hash: [7; 32] }])
        .unwrap();
    indexes.keywords.upsert(&[KeywordDoc { chunk_id: orphan, contributor: bob(), text }]).unwrap();
    indexes.commit().unwrap();
    let before = store.verify(&net).await.unwrap();
    assert_eq!(before.orphan_vectors, vec![orphan.to_hex()]);
    assert_eq!(before.orphan_keywords, vec![orphan.to_hex()]);
    drop(indexes);

    assert_eq!(store.recover().await.unwrap(), 1);
    let after = store.verify(&net).await.unwrap();
    assert!(after.is_consistent(), "{after:?}");
    assert!(store.catalog().journal_pending().await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn repair_rebuilds_missing_index_entries_from_the_catalog() {
    let (dir, store) = store(Backend::Sqlite).await;
    let net = datanet(&store, "lossy").await;
    let file = write(dir.path(), "w.txt", WATERSHEDS);
    ingest(&store, embedder(), &net, &[file], &IngestOptions::new(alice()), &NoProgress).await.unwrap();
    let ids = store.catalog().chunk_ids(net.id).await.unwrap();
    let indexes = store.indexes(net.id).unwrap();
    indexes.vectors.delete(&ids[..1]).unwrap();
    indexes.keywords.delete(&ids).unwrap();
    indexes.commit().unwrap();
    let found = store.repair(&net, embedder().as_ref()).await.unwrap();
    assert_eq!(found.missing_from_vectors.len(), 1);
    assert_eq!(found.missing_from_keywords.len(), ids.len());
    assert!(store.verify(&net).await.unwrap().is_consistent());
}

/// A keyword index written in another format (say, an older analyzer) is rebuilt from the
/// catalog when the store opens, without the embedding model.
#[tokio::test(flavor = "multi_thread")]
async fn outdated_keyword_index_is_rebuilt_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let config = tributary_indexer::StoreConfig::new(dir.path().join("data"));
    let store = Store::open(config.clone()).await.unwrap();
    let net = datanet(&store, "upgrade").await;
    let file = write(dir.path(), "t.md", TRIBUTARIES);
    ingest(&store, embedder(), &net, &[file], &IngestOptions::new(alice()), &NoProgress).await.unwrap();
    let before = store.verify(&net).await.unwrap();
    drop(store);

    let keywords = dir.path().join("data/datanets").join(net.id.to_string()).join("keywords");
    std::fs::write(keywords.join("FORMAT"), "tributary-keywords 1").unwrap();
    let store = Store::open(config).await.unwrap();
    assert!(tributary_indexer::TantivyKeywordIndex::format_is_current(&keywords));
    let after = store.verify(&net).await.unwrap();
    assert!(after.is_consistent(), "{after:?}");
    assert_eq!(after.keyword_docs, before.keyword_docs);
    let hits = store.indexes(net.id).unwrap().keywords.search("confluence", 5, None).unwrap();
    assert!(!hits.is_empty());
}
