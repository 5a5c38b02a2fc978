//! Speed: ingest throughput (chunks/s, end to end) and hybrid search latency (p50/p99, query
//! embedding included; p50 of the dense and BM25 legs alone too) at a given corpus size, plus
//! peak RSS. The Python peer
//! (benches/peer_speed.py) measures the same on the same chunk texts; benches/speed.sh runs both
//! and prints the ratios.
//!
//!     cargo run -p tributary-benches --bin speed -- --corpus corpus.jsonl --queries queries.jsonl \
//!         --chunks 10000 --export target/speed/chunks.jsonl

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::Parser;
use tributary_indexer::{
    Address, EmbedBackend, IngestOptions, NewDatanet, Store, StoreConfig, Visibility, load_embedder,
};
use tributary_retriever::{Mode, Query, Retriever, RetrieverConfig, read_queries};

#[derive(Parser)]
struct Args {
    /// BEIR corpus whose documents are cycled (with a numbered suffix) up to `--chunks`.
    #[arg(long)]
    corpus: PathBuf,
    #[arg(long)]
    queries: PathBuf,
    /// Target number of chunks to ingest.
    #[arg(long, default_value_t = 10_000)]
    chunks: usize,
    /// Queries to time.
    #[arg(long, default_value_t = 200)]
    searches: usize,
    #[arg(long, default_value = "target/bench-data/speed")]
    data_dir: PathBuf,
    #[arg(long, env = "TRIBUTARY_EMBED_MODEL", default_value = "models/all-MiniLM-L6-v2")]
    embed_model: PathBuf,
    /// auto (ONNX Runtime when installed), candle or onnx.
    #[arg(long, env = "TRIBUTARY_EMBED_BACKEND", default_value = "auto")]
    embed_backend: EmbedBackend,
    /// Write the ingested chunk texts here (JSONL) for the peer.
    #[arg(long)]
    export: Option<PathBuf>,
    /// Time searches on the Datanet an earlier run left in `--data-dir` (its indexes as the
    /// current code reads them) instead of ingesting again.
    #[arg(long)]
    search_only: bool,
}

fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmHWM:")).map(str::to_string))
        .and_then(|l| l.split_whitespace().nth(1).and_then(|kb| kb.parse::<f64>().ok()))
        .map(|kb| kb / 1024.0)
        .unwrap_or(f64::NAN)
}

fn percentile(sorted_ms: &[f64], p: f64) -> f64 {
    let i = ((sorted_ms.len() as f64 - 1.0) * p).round() as usize;
    sorted_ms[i.min(sorted_ms.len() - 1)]
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    if args.search_only {
        let store = Arc::new(Store::open(StoreConfig::new(args.data_dir.join("data"))).await?);
        let datanet = store.catalog().datanet("speed").await?;
        let chunks = store.catalog().chunk_ids(datanet.id).await?.len();
        let embedder = load_embedder(&args.embed_model, args.embed_backend)?;
        let mut result = time_searches(&args, store, embedder, datanet).await?;
        result.insert("chunks".into(), chunks.into());
        result.insert("search_only".into(), true.into());
        println!("{}", serde_json::Value::Object(result));
        return Ok(());
    }
    if args.data_dir.exists() {
        std::fs::remove_dir_all(&args.data_dir).with_context(|| format!("clearing {}", args.data_dir.display()))?;
    }
    let embedder = load_embedder(&args.embed_model, args.embed_backend)?;

    // Build the upload: corpus documents, cycled. A copy carries its number after every
    // sentence, so each of its chunks is new content: a copy marked only once would share all
    // but one of its chunks with the original, which deduplication stores once (a first run at
    // "100k" ingested 47,814 chunks that way).
    let corpus: Vec<serde_json::Value> = std::fs::read_to_string(&args.corpus)?
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?;
    if corpus.is_empty() {
        bail!("empty corpus");
    }
    std::fs::create_dir_all(&args.data_dir)?;
    let upload = args.data_dir.join("upload.jsonl");
    let mut file = std::io::BufWriter::new(std::fs::File::create(&upload)?);
    // SciFact averages ~2.5 chunks a document at the default chunking (12,821 chunks from
    // 5,183 abstracts); the ingest reports the exact count.
    let documents = args.chunks * 2 / 5 + 1;
    for i in 0..documents {
        let doc = &corpus[i % corpus.len()];
        let round = i / corpus.len();
        let text = doc["text"].as_str().unwrap_or_default();
        let title = doc["title"].as_str().unwrap_or_default();
        // The title too: where a document's body runs past one chunk, its title can be a
        // chunk of its own (a "100k" run with unmarked titles stored 74,014 chunks).
        let (title, text) = if round == 0 {
            (title.to_string(), text.to_string())
        } else {
            let marker = format!("(copy {round})");
            (format!("{title} {marker}"), format!("{marker} {}", text.replace(". ", &format!(". {marker} "))))
        };
        let record = serde_json::json!({"_id": format!("{}-{round}", doc["_id"].as_str().unwrap_or("x")), "title": title, "text": text});
        writeln!(file, "{record}")?;
    }
    file.flush()?;
    drop(file);

    let store = Arc::new(Store::open(StoreConfig::new(args.data_dir.join("data"))).await?);
    let datanet = store
        .catalog()
        .create_datanet(&NewDatanet {
            name: "speed".into(),
            description: String::new(),
            owner: Address::ZERO,
            visibility: Visibility::Public,
            review: false,
        })
        .await?;
    let started = Instant::now();
    let report = tributary_indexer::ingest(
        &store,
        embedder.clone(),
        &datanet,
        &[upload],
        &IngestOptions::new(Address::ZERO),
        &tributary_indexer::NoProgress,
    )
    .await?;
    let ingest_s = started.elapsed().as_secs_f64();
    let chunks_per_s = report.new_chunks as f64 / ingest_s;

    if let Some(path) = &args.export {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let ids = store.catalog().chunk_ids(datanet.id).await?;
        let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
        for batch in ids.chunks(1000) {
            for record in store.catalog().chunk_records(datanet.id, batch).await? {
                writeln!(out, "{}", serde_json::json!({"id": record.chunk_id.to_hex(), "text": record.text}))?;
            }
        }
        out.flush()?;
    }

    let mut result = time_searches(&args, store, embedder, datanet).await?;
    result.insert("chunks".into(), report.new_chunks.into());
    result.insert("ingest_seconds".into(), ingest_s.into());
    result.insert("ingest_chunks_per_s".into(), chunks_per_s.into());
    println!("{}", serde_json::Value::Object(result));
    Ok(())
}

/// Query embedding alone, then whole hybrid searches (the first 10 warm caches), in ms, and
/// the peak RSS after them: the fields every result line has.
async fn time_searches(
    args: &Args,
    store: Arc<Store>,
    embedder: Arc<dyn tributary_indexer::Embedder>,
    datanet: tributary_indexer::Datanet,
) -> Result<serde_json::Map<String, serde_json::Value>> {
    let queries = read_queries(&args.queries)?;
    // Query embedding alone, to split search latency into model and index time.
    let mut embed_ms = Vec::new();
    for (_, text) in queries.iter().take(args.searches) {
        let t = Instant::now();
        embedder.embed(&[text.as_str()])?;
        embed_ms.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    embed_ms.sort_by(f64::total_cmp);
    let retriever = Retriever::new(store.clone(), embedder, RetrieverConfig::default());
    let datanets = [datanet];
    let latencies = time_mode(&retriever, &datanets, &queries, args.searches, Mode::Hybrid).await?;
    // Each leg alone (dense includes the query's embedding), to see where hybrid time goes.
    let dense = time_mode(&retriever, &datanets, &queries, args.searches, Mode::Dense).await?;
    let bm25 = time_mode(&retriever, &datanets, &queries, args.searches, Mode::Bm25).await?;
    let mut result = serde_json::Map::new();
    result.insert("system".into(), "tributary".into());
    result.insert("search_p50_ms".into(), percentile(&latencies, 0.5).into());
    result.insert("search_p99_ms".into(), percentile(&latencies, 0.99).into());
    result.insert("query_embedding_p50_ms".into(), percentile(&embed_ms, 0.5).into());
    result.insert("dense_search_p50_ms".into(), percentile(&dense, 0.5).into());
    result.insert("bm25_search_p50_ms".into(), percentile(&bm25, 0.5).into());
    result.insert("peak_rss_mib".into(), peak_rss_mib().into());
    Ok(result)
}

/// Sorted latencies (ms) of `searches` top-10 searches in `mode`, after 10 that warm caches.
async fn time_mode(
    retriever: &Retriever,
    datanets: &[tributary_indexer::Datanet],
    queries: &[(String, String)],
    searches: usize,
    mode: Mode,
) -> Result<Vec<f64>> {
    let mut latencies = Vec::new();
    for (i, (_, text)) in queries.iter().cycle().take(searches + 10).enumerate() {
        let t = Instant::now();
        let passages = retriever.search(&Query { text, datanets, contributors: None, k: 10, mode }).await?;
        let ms = t.elapsed().as_secs_f64() * 1000.0;
        // Keywords alone may match nothing (a query of stopwords); the other modes always find some.
        if passages.is_empty() && mode != Mode::Bm25 {
            bail!("no passages for {text:?}");
        }
        // The first few warm caches and the page cache.
        if i >= 10 {
            latencies.push(ms);
        }
    }
    latencies.sort_by(f64::total_cmp);
    Ok(latencies)
}
