//! Retrieval over a real store: filters, modes, and what a passage carries.

use std::path::PathBuf;
use std::sync::Arc;

use tributary_indexer::{
    Address, Datanet, EmbedBackend, Embedder, IngestOptions, NewDatanet, NoProgress, Store, StoreConfig, Visibility,
    ingest,
};
use tributary_retriever::{
    Error, Fusion, MAX_QUERY_CHARS, MAX_QUERY_CONTRIBUTORS, MAX_QUERY_DATANETS, Mode, Query, Retriever, RetrieverConfig,
};

fn model_dir() -> PathBuf {
    std::env::var_os("TRIBUTARY_EMBED_MODEL")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models/all-MiniLM-L6-v2"))
}

const ALICE: &str = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266";
const BOB: &str = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8";

struct Fixture {
    retriever: Retriever,
    rivers: Datanet,
    kitchen: Datanet,
    _dir: tempfile::TempDir,
}

async fn datanet(store: &Store, name: &str) -> Datanet {
    let owner: Address = ALICE.parse().unwrap();
    store
        .catalog()
        .create_datanet(&NewDatanet {
            name: name.into(),
            description: String::new(),
            owner,
            visibility: Visibility::Public,
            review: false,
        })
        .await
        .unwrap()
}

async fn fixture(config: RetrieverConfig) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(StoreConfig::new(dir.path().join("data"))).await.unwrap());
    let embedder: Arc<dyn Embedder> = tributary_indexer::load_embedder(&model_dir(), EmbedBackend::Auto).unwrap();
    let rivers = datanet(&store, "rivers").await;
    let kitchen = datanet(&store, "kitchen").await;
    let write = |name: &str, body: &str| {
        let path = dir.path().join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, body).unwrap();
        path
    };
    let a = write(
        "a/confluence.md",
        "At a confluence a tributary joins the main stem, and the river's discharge increases downstream.",
    );
    // A distractor in the same upload as the answer.
    write("a/delta.md", "A river delta forms where a river deposits sediment as it enters the sea.");
    let b =
        write("b/gauges.md", "Stream gauges record the stage of a river; a rating curve converts stage to discharge.");
    let k = write("k/bread.md", "Bread dough rises because yeast ferments sugars and releases carbon dioxide.");
    for (net, path, who) in [
        (&rivers, a.parent().unwrap(), ALICE),
        (&rivers, b.parent().unwrap(), BOB),
        (&kitchen, k.parent().unwrap(), BOB),
    ] {
        let options = IngestOptions::new(who.parse().unwrap());
        ingest(&store, embedder.clone(), net, &[path.to_path_buf()], &options, &NoProgress).await.unwrap();
    }
    Fixture { retriever: Retriever::new(store, embedder, config), rivers, kitchen, _dir: dir }
}

#[tokio::test(flavor = "multi_thread")]
async fn hybrid_search_finds_the_answer_and_carries_citation_fields() {
    let f = fixture(RetrieverConfig::default()).await;
    let nets = [f.rivers.clone()];
    let passages = f
        .retriever
        .search(&Query {
            text: "What happens to discharge below a confluence?",
            datanets: &nets,
            contributors: None,
            k: 3,
            mode: Mode::Hybrid,
        })
        .await
        .unwrap();
    assert_eq!(passages.len(), 3);
    let top = &passages[0];
    assert_eq!(top.document, "confluence.md");
    assert_eq!(top.contributor, ALICE);
    assert_eq!(top.datanet, "rivers");
    assert_eq!(top.chunk_id.len(), 64);
    assert!(top.dense_score.is_some() && top.bm25_score.is_some());
    assert_eq!((top.start, top.end), (0, top.text.len()));
    assert!(passages.windows(2).all(|w| w[0].score >= w[1].score));
}

#[tokio::test(flavor = "multi_thread")]
async fn filters_restrict_datanets_and_contributors_in_every_mode() {
    let f = fixture(RetrieverConfig::default()).await;
    let rivers = [f.rivers.clone()];
    let both = [f.rivers.clone(), f.kitchen.clone()];
    let bob: Address = BOB.parse().unwrap();
    for mode in [Mode::Hybrid, Mode::Dense, Mode::Bm25] {
        let q =
            |datanets, contributors| Query { text: "yeast bread river discharge", datanets, contributors, k: 10, mode };
        let only_rivers = f.retriever.search(&q(&rivers, None)).await.unwrap();
        assert!(!only_rivers.is_empty());
        assert!(only_rivers.iter().all(|p| p.datanet == "rivers"), "{mode:?}");
        let across = f.retriever.search(&q(&both, None)).await.unwrap();
        assert!(across.iter().any(|p| p.datanet == "kitchen"), "{mode:?}");
        let bobs = f.retriever.search(&q(&both, Some(std::slice::from_ref(&bob)))).await.unwrap();
        assert!(!bobs.is_empty());
        assert!(bobs.iter().all(|p| p.contributor == BOB), "{mode:?}: {bobs:?}");
        assert!(bobs.iter().any(|p| p.document == "gauges.md"));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn rrf_and_bad_queries() {
    let f = fixture(RetrieverConfig { fusion: Fusion::Rrf { k: 60.0 }, candidates: 50 }).await;
    let nets = [f.rivers.clone()];
    let passages = f
        .retriever
        .search(&Query { text: "rating curve stage", datanets: &nets, contributors: None, k: 1, mode: Mode::Hybrid })
        .await
        .unwrap();
    assert_eq!(passages[0].document, "gauges.md");
    let empty =
        f.retriever.search(&Query { text: "  ", datanets: &nets, contributors: None, k: 3, mode: Mode::Hybrid }).await;
    assert!(empty.is_err());
    let none =
        f.retriever.search(&Query { text: "river", datanets: &[], contributors: None, k: 3, mode: Mode::Hybrid }).await;
    assert!(none.is_err());
    // Stopwords only: BM25 has nothing to match, which is an empty list, not an error.
    let stop = f
        .retriever
        .search(&Query { text: "the of and", datanets: &nets, contributors: None, k: 3, mode: Mode::Bm25 })
        .await
        .unwrap();
    assert!(stop.is_empty());
}

/// What one query may cost is bounded (issue #24, defects 1 and 2): a Datanet named many times
/// is searched once, and past 16 names, 64 contributors or 8,192 characters the query is refused
/// before any search; a long query of distinct words runs with its first terms only.
#[tokio::test(flavor = "multi_thread")]
async fn queries_are_bounded_and_deduplicated() {
    let f = fixture(RetrieverConfig::default()).await;
    let q = |text, datanets, contributors| Query { text, datanets, contributors, k: 10, mode: Mode::Hybrid };
    let once = [f.rivers.clone()];
    let repeated = vec![f.rivers.clone(); MAX_QUERY_DATANETS];
    let single = f.retriever.search(&q("river discharge", &once, None)).await.unwrap();
    let same = f.retriever.search(&q("river discharge", &repeated, None)).await.unwrap();
    assert_eq!(same, single, "a repeated Datanet is searched once (no passage twice)");

    let too_many = vec![f.rivers.clone(); MAX_QUERY_DATANETS + 1];
    let refused = f.retriever.search(&q("river", &too_many, None)).await.unwrap_err();
    assert!(matches!(refused, Error::InvalidArgument(_)), "{refused}");
    let bob: Address = BOB.parse().unwrap();
    let contributors = vec![bob; MAX_QUERY_CONTRIBUTORS + 1];
    let refused = f.retriever.search(&q("river", &once, Some(&contributors))).await.unwrap_err();
    assert!(matches!(refused, Error::InvalidArgument(_)), "{refused}");
    let contributors = vec![bob; MAX_QUERY_CONTRIBUTORS];
    let bobs = f.retriever.search(&q("river", &once, Some(&contributors))).await.unwrap();
    assert!(bobs.iter().all(|p| p.contributor == BOB), "{bobs:?}");

    let long = "é".repeat(MAX_QUERY_CHARS + 1);
    let refused = f.retriever.search(&q(&long, &once, None)).await.unwrap_err();
    assert!(matches!(refused, Error::InvalidArgument(_)), "{refused}");
    // At the bound, of distinct words (the query that once took 45 s of CPU, 250 times shorter):
    // answered, from the first terms.
    let words: Vec<String> = (0..MAX_QUERY_CHARS / 8).map(|i| format!("w{i:06}")).collect();
    let mut text = format!("rating curve {}", words.join(" "));
    text.truncate(MAX_QUERY_CHARS);
    let bm25 = Query { text: &text, datanets: &once, contributors: None, k: 3, mode: Mode::Bm25 };
    let found = f.retriever.search(&bm25).await.unwrap();
    assert_eq!(found.first().map(|p| p.document.as_str()), Some("gauges.md"), "{found:?}");
}
