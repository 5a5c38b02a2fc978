//! `tributary search`: one query, or a BEIR query file into a TREC run.

use std::path::PathBuf;

use anyhow::{Result, bail};
use clap::Args;
use tributary_retriever::{Mode, Query};

use super::{output, trec};
use crate::app::search::{fusion_of, retriever};
use crate::app::{App, parse_address};

#[derive(Args)]
pub struct SearchArgs {
    /// Datanet(s) to search; repeat for several.
    #[arg(long = "datanet", required = true)]
    datanets: Vec<String>,
    /// Only passages credited to these contributors; repeat for several.
    #[arg(long = "contributor")]
    contributors: Vec<String>,
    #[arg(long, default_value = "hybrid")]
    mode: Mode,
    #[arg(long, default_value_t = 5)]
    k: usize,
    /// `convex` (default) or `rrf`.
    #[arg(long)]
    fusion: Option<String>,
    /// Dense weight for convex fusion.
    #[arg(long)]
    alpha: Option<f32>,
    #[arg(long)]
    json: bool,
    /// BEIR queries.jsonl: evaluate instead of answering one query.
    #[arg(long, requires = "run")]
    queries: Option<PathBuf>,
    /// TREC run file to write with --queries.
    #[arg(long, requires = "queries")]
    run: Option<PathBuf>,
    /// The query (omit with --queries).
    query: Option<String>,
}

pub async fn search(app: &App, args: SearchArgs) -> Result<()> {
    let mut datanets = Vec::new();
    for name in &args.datanets {
        datanets.push(app.datanet(name).await?);
    }
    let contributors = args.contributors.iter().map(|c| parse_address(c)).collect::<Result<Vec<_>>>()?;
    let retriever = retriever(app, fusion_of(args.fusion.as_deref(), args.alpha)?, crate::app::search::CLI_SCOPE)?;
    let contributors = (!contributors.is_empty()).then_some(contributors.as_slice());

    if let (Some(queries), Some(run)) = (&args.queries, &args.run) {
        return trec::write_run(&retriever, &datanets, contributors, args.mode, args.k, queries, run).await;
    }
    let Some(text) = args.query.as_deref() else { bail!("give a query, or --queries and --run") };
    let passages =
        retriever.search(&Query { text, datanets: &datanets, contributors, k: args.k, mode: args.mode }).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&passages)?);
    } else {
        output::print_passages(&passages);
    }
    Ok(())
}
