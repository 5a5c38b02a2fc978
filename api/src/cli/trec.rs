//! Batch evaluation: BEIR queries in, a TREC run out.

use std::io::{BufWriter, Write};
use std::path::Path;

use anyhow::{Context, Result};
use tributary_indexer::{Address, Datanet};
use tributary_retriever::{Mode, Query, Retriever, rank_documents, read_queries};

pub async fn write_run(
    retriever: &Retriever,
    datanets: &[Datanet],
    contributors: Option<&[Address]>,
    mode: Mode,
    k: usize,
    queries: &Path,
    run: &Path,
) -> Result<()> {
    let queries = read_queries(queries)?;
    let file = std::fs::File::create(run).with_context(|| format!("creating {}", run.display()))?;
    let mut out = BufWriter::new(file);
    let tag = format!("tributary-{}", serde_json::to_value(mode)?.as_str().unwrap_or("run"));
    let bar = indicatif::ProgressBar::new(queries.len() as u64);
    for (qid, text) in &queries {
        // Several chunks can come from one document: fetch more chunks than documents wanted.
        let passages = retriever.search(&Query { text, datanets, contributors, k: k * 3, mode }).await?;
        for (rank, (doc, score)) in rank_documents(&passages, k).into_iter().enumerate() {
            writeln!(out, "{qid} Q0 {doc} {} {score:.6} {tag}", rank + 1)?;
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    out.flush()?;
    eprintln!("wrote {} queries to {}", queries.len(), run.display());
    Ok(())
}
