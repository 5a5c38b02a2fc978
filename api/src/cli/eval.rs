//! `tributary eval`: answer quality on a question set with known answers.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use tributary_generator::GenerationParams;

use super::output;
use crate::app::App;
use crate::app::eval::{Asking, Outcome, read_questions, report, run};

#[derive(Args)]
pub struct EvalArgs {
    /// Datanet(s) the questions are asked of; repeat for several.
    #[arg(long = "datanet", required = true)]
    datanets: Vec<String>,
    /// JSONL, one question per line: id, question, answer, alternatives, kind, document
    /// (the answering document's file name) and distractors (see benches/data/facts/README.md).
    #[arg(long)]
    questions: PathBuf,
    /// Passages retrieved per question.
    #[arg(long, default_value_t = 3)]
    k: usize,
    #[arg(long, default_value_t = 96)]
    max_tokens: usize,
    /// A registered LoRA adapter; `ID=WEIGHT` and repeats combine several.
    #[arg(long = "adapter")]
    adapters: Vec<String>,
    /// Only the first N questions.
    #[arg(long)]
    limit: Option<usize>,
    /// Write every question's result here, one JSON object per line.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Print the totals as JSON.
    #[arg(long)]
    json: bool,
}

pub async fn eval(app: &App, args: EvalArgs) -> Result<()> {
    let mut questions = read_questions(&args.questions)?;
    questions.truncate(args.limit.unwrap_or(usize::MAX));
    let generator = app.answer_backend()?;
    let asking = Asking {
        datanets: &args.datanets,
        k: args.k,
        // Greedy: the default sampling.
        params: GenerationParams { max_tokens: args.max_tokens, ..GenerationParams::default() },
        adapters: super::answers::parse_adapters(&args.adapters)?,
    };
    let bar = indicatif::ProgressBar::new(questions.len() as u64);
    let mut out = match &args.out {
        Some(path) => Some(std::io::BufWriter::new(
            std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?,
        )),
        None => None,
    };
    let mut written: Result<()> = Ok(());
    let mut each = |scored: &crate::app::eval::Scored| {
        if let Some(out) = out.as_mut()
            && written.is_ok()
        {
            written = serde_json::to_string(scored).map_err(Into::into).and_then(|line| Ok(writeln!(out, "{line}")?));
        }
        if scored.outcome != Outcome::RightAndCited {
            // On stderr: stdout holds the totals (JSON with --json).
            bar.suspend(|| {
                eprintln!(
                    "{} {:?}: {}\n    expected {:?}; answered {:?}",
                    scored.id, scored.outcome, scored.question, scored.expected, scored.answer
                )
            });
        }
        bar.inc(1);
    };
    let scored = run(app, generator, &questions, &asking, &mut each).await?;
    bar.finish_and_clear();
    written?;
    if let Some(mut out) = out {
        out.flush()?;
    }
    let totals = report(&scored);
    if args.json {
        return output::print_json(&totals);
    }
    let count = |o: Outcome| totals.outcomes.get(&o).copied().unwrap_or(0);
    println!("questions                     {}", totals.questions);
    println!(
        "right and cited               {} ({:.1}%)",
        count(Outcome::RightAndCited),
        100.0 * totals.right_and_cited
    );
    println!("right, not cited to its source {}", count(Outcome::RightUncited));
    println!("wrong fact marked grounded    {} (target 0)", count(Outcome::WrongGrounded));
    println!("grounded, no answer stated    {}", count(Outcome::GroundedWithoutAnswer));
    println!("nothing cited                 {}", count(Outcome::Ungrounded));
    println!("no relevant passage           {}", count(Outcome::NotFound));
    println!("citation recall (ALCE-style)  {:.3}", totals.citation_recall);
    println!("citation precision            {:.3}", totals.citation_precision);
    println!(
        "sentences {}, cited {}; caught by the fact check {}: repaired {}, quoted {}, left out {}",
        totals.sentences, totals.cited_sentences, totals.fact_failures, totals.repaired, totals.quoted, totals.dropped
    );
    println!(
        "the model's drafts, before the checks: {} state the answer, {} a wrong value instead",
        totals.draft_right, totals.draft_wrong
    );
    for (kind, (n, right)) in &totals.by_kind {
        println!("  {kind:<10} {right}/{n}");
    }
    Ok(())
}
