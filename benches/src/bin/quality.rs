//! Retrieval quality on a BEIR-layout dataset: ingests the corpus, runs every query in several
//! modes, and prints nDCG@10 and Recall@100, beside any peer runs (TREC files) given.
//!
//!     cargo run --release -p tributary-benches --bin quality -- \
//!         --dataset ../shared/eval/scifact-dev --peer-run bm25s+MiniLM=target/peer/hybrid.trec

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::Parser;
use tributary_benches::{Run, evaluate, read_qrels, read_trec_run};
use tributary_indexer::{
    Address, ChunkerConfig, EmbedBackend, Error as IndexError, IngestOptions, NewDatanet, Store, StoreConfig,
    Visibility, load_embedder,
};
use tributary_retriever::{Fusion, Mode, Query, Retriever, RetrieverConfig, rank_documents, read_queries};

#[derive(Parser)]
struct Args {
    /// BEIR folder: corpus.jsonl, queries.jsonl, qrels/<split>.tsv.
    #[arg(long)]
    dataset: PathBuf,
    #[arg(long, default_value = "train")]
    split: String,
    #[arg(long, default_value = "target/bench-data/quality")]
    data_dir: PathBuf,
    #[arg(long, env = "TRIBUTARY_EMBED_MODEL", default_value = "models/all-MiniLM-L6-v2")]
    embed_model: PathBuf,
    /// auto (ONNX Runtime when installed), candle or onnx.
    #[arg(long, env = "TRIBUTARY_EMBED_BACKEND", default_value = "auto")]
    embed_backend: EmbedBackend,
    /// Convex-fusion dense weights to sweep.
    #[arg(long, value_delimiter = ',', default_value = "0.3,0.4,0.5,0.6,0.7")]
    alphas: Vec<f32>,
    /// Chunk size in embedder tokens (a fresh --data-dir for each size).
    #[arg(long, default_value_t = ChunkerConfig::default().target_tokens)]
    chunk_tokens: usize,
    #[arg(long, default_value_t = ChunkerConfig::default().overlap_tokens)]
    overlap_tokens: usize,
    /// Candidates per list before fusion.
    #[arg(long, default_value_t = 300)]
    candidates: usize,
    /// Skip the single-signal and RRF baselines.
    #[arg(long)]
    hybrid_only: bool,
    /// `NAME=FILE` TREC runs of peers, evaluated on the same qrels.
    #[arg(long = "peer-run")]
    peer_runs: Vec<String>,
    /// Write our runs here as TREC files (one per configuration).
    #[arg(long)]
    runs_out: Option<PathBuf>,
    /// Also write each configuration's passages (query, document, chunk, score; best first),
    /// for trying document aggregations offline.
    #[arg(long)]
    passages_out: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let qrels = read_qrels(&args.dataset.join("qrels").join(format!("{}.tsv", args.split)))?;
    let queries: Vec<(String, String)> = read_queries(&args.dataset.join("queries.jsonl"))?
        .into_iter()
        .filter(|(id, _)| qrels.contains_key(id))
        .collect();
    let embedder = load_embedder(&args.embed_model, args.embed_backend)
        .with_context(|| format!("model in {}", args.embed_model.display()))?;
    let store = Arc::new(Store::open(StoreConfig::new(&args.data_dir)).await?);
    let datanet = match store
        .catalog()
        .create_datanet(&NewDatanet {
            name: "eval".into(),
            description: args.dataset.display().to_string(),
            owner: Address::ZERO,
            visibility: Visibility::Public,
            review: false,
        })
        .await
    {
        Ok(d) => d,
        Err(IndexError::DatanetExists(_)) => store.catalog().datanet("eval").await?,
        Err(e) => return Err(e.into()),
    };
    let report = tributary_indexer::ingest(
        &store,
        embedder.clone(),
        &datanet,
        &[args.dataset.join("corpus.jsonl")],
        &IngestOptions {
            chunker: ChunkerConfig { target_tokens: args.chunk_tokens, overlap_tokens: args.overlap_tokens },
            ..IngestOptions::new(Address::ZERO)
        },
        &tributary_indexer::NoProgress,
    )
    .await?;
    eprintln!(
        "corpus: {} documents ({} new), {} new chunks in {:.0} s",
        report.documents, report.documents_stored, report.new_chunks, report.seconds
    );

    let mut configs: Vec<(String, Mode, Fusion)> = Vec::new();
    if !args.hybrid_only {
        configs.push(("bm25".into(), Mode::Bm25, Fusion::default()));
        configs.push(("dense".into(), Mode::Dense, Fusion::default()));
        configs.push(("hybrid rrf k=60".into(), Mode::Hybrid, Fusion::Rrf { k: 60.0 }));
    }
    for alpha in &args.alphas {
        configs.push((format!("hybrid convex a={alpha}"), Mode::Hybrid, Fusion::Convex { alpha: *alpha }));
    }
    let datanets = [datanet];
    println!("| system | nDCG@10 | Recall@100 |\n| --- | --- | --- |");
    for (name, mode, fusion) in configs {
        let retriever =
            Retriever::new(store.clone(), embedder.clone(), RetrieverConfig { fusion, candidates: args.candidates });
        let mut run = Run::new();
        let mut passage_lines = String::new();
        for (qid, text) in &queries {
            let passages =
                retriever.search(&Query { text, datanets: &datanets, contributors: None, k: 300, mode }).await?;
            if args.passages_out.is_some() {
                for p in &passages {
                    passage_lines.push_str(&format!("{qid}\t{}\t{}\t{}\n", p.document, p.chunk_id, p.score));
                }
            }
            run.insert(qid.clone(), rank_documents(&passages, 100));
        }
        if let Some(dir) = &args.passages_out {
            std::fs::create_dir_all(dir)?;
            std::fs::write(dir.join(format!("{}.tsv", name.replace([' ', '='], "_"))), passage_lines)?;
        }
        if let Some(dir) = &args.runs_out {
            std::fs::create_dir_all(dir)?;
            let mut body = String::new();
            for (qid, ranked) in &run {
                for (i, (doc, score)) in ranked.iter().enumerate() {
                    body.push_str(&format!("{qid} Q0 {doc} {} {score} tributary\n", i + 1));
                }
            }
            std::fs::write(dir.join(format!("{}.trec", name.replace([' ', '='], "_"))), body)?;
        }
        let (ndcg, recall) = evaluate(&run, &qrels);
        println!("| tributary {name} | {ndcg:.4} | {recall:.4} |");
    }
    for peer in &args.peer_runs {
        let (name, file) = peer.split_once('=').context("--peer-run takes NAME=FILE")?;
        let (ndcg, recall) = evaluate(&read_trec_run(&PathBuf::from(file))?, &qrels);
        println!("| peer {name} | {ndcg:.4} | {recall:.4} |");
    }
    println!("\n{} judged queries; documents scored by their best chunk.", qrels.len());
    Ok(())
}
