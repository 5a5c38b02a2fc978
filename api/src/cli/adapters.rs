//! `tributary adapter add|list|remove|train|show|verify`: the LoRA adapter registry, and
//! adapters trained here (Model Factory).

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::Subcommand;

use indicatif::{ProgressBar, ProgressStyle};
use tributary_trainer::{Control, LoraShape, TrainSettings};

use crate::app::App;
use crate::app::training;

#[derive(Subcommand)]
pub enum AdapterCommand {
    /// Register a PEFT LoRA adapter (adapter_config.json + adapter_model.safetensors) after
    /// checking it against the generator model.
    Add {
        id: String,
        /// Directory with the adapter files.
        #[arg(required_unless_present = "hub")]
        path: Option<PathBuf>,
        /// A Hugging Face hub repository id instead, read from the local hub cache.
        #[arg(long, conflicts_with = "path")]
        hub: Option<String>,
    },
    List {
        #[arg(long)]
        json: bool,
    },
    Remove {
        id: String,
    },
    /// Fine-tune a LoRA adapter on a Datanet's question/answer pairs and evaluate it on pairs
    /// held out of training (`adapter try` runs it, `adapter publish` registers it). Started
    /// again after an interruption, a run with the same name and settings resumes from its
    /// last checkpoint.
    Train {
        name: String,
        #[arg(long)]
        datanet: String,
        /// JSONL, one {"question", "answer", "chunks"?: [chunk ids]} per line.
        #[arg(long, required_unless_present = "synthesize")]
        pairs: Option<PathBuf>,
        /// Also write N pairs from the Datanet's own chunks: the base model writes a question
        /// a chunk answers, the chunk's sentence that answers it is the answer.
        #[arg(long)]
        synthesize: Option<usize>,
        #[arg(long, default_value_t = 16)]
        rank: usize,
        #[arg(long, default_value_t = 32.0)]
        alpha: f64,
        /// Projections to adapt, comma-separated PEFT names.
        #[arg(long, value_delimiter = ',', default_value = "q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj")]
        targets: Vec<String>,
        #[arg(long, default_value_t = 3)]
        epochs: usize,
        #[arg(long, default_value_t = 2e-4)]
        lr: f64,
        /// Examples per optimizer step.
        #[arg(long, default_value_t = 4)]
        batch: usize,
        /// Examples per forward pass (the step accumulates the rest). Memory grows with it
        /// (SmolLM2, 300-token rows: 3.5 GB at 1, 10.8 GB at 4) faster than speed does.
        #[arg(long, default_value_t = 1)]
        micro_batch: usize,
        #[arg(long)]
        max_steps: Option<usize>,
        /// Warmup steps (default: 6% of the run's steps).
        #[arg(long)]
        warmup: Option<usize>,
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Share of the pairs held out of training to evaluate the adapter on.
        #[arg(long, default_value_t = 0.2)]
        holdout: f64,
        /// Longest example in tokens (passages, question and answer).
        #[arg(long, default_value_t = 1024)]
        max_tokens: usize,
        /// Steps between checkpoints (a killed run resumes from the last one).
        #[arg(long, default_value_t = 10)]
        checkpoint_every: usize,
    },
    /// Registers a trained adapter so questions may name it; refused when it does not beat its
    /// base on the held-out pairs, unless --force.
    Publish {
        id: String,
        #[arg(long)]
        force: bool,
    },
    /// Answers a question with the base model and with a trained adapter, side by side, from
    /// the same passages (nothing charged or recorded).
    Try {
        id: String,
        #[arg(long)]
        datanet: String,
        question: String,
        #[arg(long)]
        json: bool,
    },
    /// Training-data attribution: a trained adapter's answer to QUESTION and the training
    /// examples that influenced it most (gradient similarity on the adapter's parameters). With
    /// --check instead of a question: how often each training question's answer ranks its own
    /// example first.
    Influence {
        id: String,
        #[arg(long)]
        datanet: String,
        #[arg(required_unless_present = "check")]
        question: Option<String>,
        #[arg(long, default_value_t = 3)]
        top: usize,
        #[arg(long, conflicts_with = "question")]
        check: bool,
        /// With --check: the first N training questions.
        #[arg(long, default_value_t = usize::MAX)]
        limit: usize,
        #[arg(long)]
        json: bool,
    },
    /// An adapter's registry entry, and how it was trained where it was trained here.
    Show {
        id: String,
        #[arg(long)]
        json: bool,
    },
    /// Checks a trained adapter's training log against its recorded root (and against the
    /// registry contract's, once committed).
    Verify {
        id: String,
    },
    /// Commits a published adapter's training root in the registry contract (chain.toml).
    Commit {
        id: String,
    },
}

pub async fn adapter(app: &App, command: AdapterCommand) -> Result<()> {
    let registry = app.adapters()?;
    match command {
        AdapterCommand::Add { id, path, hub } => {
            let source = match (path, hub) {
                (Some(path), None) => tributary_generator::AdapterSource::Path(
                    std::fs::canonicalize(&path).with_context(|| format!("adapter directory {}", path.display()))?,
                ),
                (None, Some(repo)) => tributary_generator::AdapterSource::Hub(repo),
                _ => bail!("give a directory or --hub REPO"),
            };
            let generator = app.generator()?;
            let entry = registry.register(&id, source, generator.model().model().config())?;
            println!("registered {} (rank {}, modules {})", entry.id, entry.rank, entry.target_modules.join(","));
        }
        AdapterCommand::List { json } => {
            let entries = registry.list()?;
            if json {
                println!("{}", serde_json::to_string_pretty(&entries)?);
            } else if entries.is_empty() {
                println!("no adapters registered");
            } else {
                for e in entries {
                    println!("{}  rank {}  {}  {:?}", e.id, e.rank, e.target_modules.join(","), e.source);
                }
            }
        }
        AdapterCommand::Remove { id } => {
            if !crate::app::adapters::remove(app, &id).await? {
                bail!("adapter {id} is not registered");
            }
            println!("removed {id}");
        }
        AdapterCommand::Train {
            name,
            datanet,
            pairs,
            synthesize,
            rank,
            alpha,
            targets,
            epochs,
            lr,
            batch,
            micro_batch,
            max_steps,
            warmup,
            seed,
            holdout,
            max_tokens,
            checkpoint_every,
        } => {
            let pairs = pairs.as_deref().map(training::read_pairs).transpose()?.unwrap_or_default();
            let synthesize = synthesize.unwrap_or(0);
            let mut settings = TrainSettings {
                epochs,
                learning_rate: lr,
                batch_size: batch,
                micro_batch,
                max_steps,
                seed,
                checkpoint_every,
                ..TrainSettings::default()
            };
            // Synthesized pairs count as planned (some may be skipped when written).
            let planned = pairs.len() + synthesize;
            let train_pairs = planned - training::held_out(planned, holdout);
            let (_, total) = settings.plan(train_pairs.max(1))?;
            settings.warmup_steps = warmup.unwrap_or(training::default_warmup(total));
            let request = training::TrainRequest {
                name,
                datanet,
                pairs,
                lora: LoraShape { rank, alpha, targets },
                settings,
                holdout,
                max_tokens,
                synthesize,
            };
            let bar = ProgressBar::new(total as u64);
            bar.set_style(
                ProgressStyle::with_template("{bar:40} step {pos}/{len}  {msg}  ETA {eta}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            let shown = bar.clone();
            if synthesize > 0 {
                bar.set_message(format!("writing {synthesize} questions from the Datanet's chunks"));
            }
            let record = training::train_adapter(app, request, move |step, total| {
                shown.set_length(total as u64);
                shown.set_position(step.step as u64);
                shown.set_message(format!("loss {:.4}", step.loss));
                Control::Continue
            })
            .await;
            bar.finish_and_clear();
            let record = record?;
            let e = &record.evaluation;
            if let Some(step) = record.resumed_at {
                println!("resumed from the checkpoint of step {step}");
            }
            println!(
                "trained {} on {} pairs of {}: {} steps, final loss {:.4}, {:.0} tokens/s",
                record.adapter,
                record.train_pairs,
                record.datanet,
                record.steps,
                record.final_loss,
                record.tokens_per_second
            );
            println!(
                "held out {} pairs: loss {:.4} with the adapter, {:.4} base; answer F1 {:.3}, base {:.3} ({})",
                e.heldout_pairs,
                e.adapter_loss,
                e.base_loss,
                e.adapter_answer_f1,
                e.base_answer_f1,
                if e.beats_base() { "better than the base" } else { "NOT better than the base" }
            );
            if record.synthesized_pairs > 0 {
                println!("{} of the pairs were written from the Datanet's chunks", record.synthesized_pairs);
            }
            println!("training log root {}", record.log_root);
        }
        AdapterCommand::Publish { id, force } => {
            let (record, registered) = training::publish_adapter(app, &id, force, None).await?;
            let note = if record.forced { " (forced: it does not beat its base)" } else { "" };
            println!("published {id}{note}");
            println!("its answers credit its training data: {} chunks of {}", registered.chunks, registered.datanet);
        }
        AdapterCommand::Try { id, datanet, question, json } => {
            let trial = training::try_adapter(app, &id, &datanet, &question).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&trial)?);
            } else {
                for (n, (chunk, text)) in trial.passages.iter().enumerate() {
                    println!(
                        "[{}] {} {}",
                        n + 1,
                        &chunk[..chunk.len().min(12)],
                        text.chars().take(100).collect::<String>()
                    );
                }
                println!("base:    {}", trial.base.trim());
                println!("{id}: {}", trial.adapter.trim());
            }
        }
        AdapterCommand::Influence { id, datanet, question, top, check, limit, json } => {
            if check {
                let result = training::influence_check(app, &id, &datanet, limit).await?;
                if json {
                    println!("{}", serde_json::to_string_pretty(&result)?);
                } else {
                    println!(
                        "{} of {} answers rank their own training example first ({:.2}); attribution {:.2} s an answer",
                        result.top1, result.questions, result.top1_rate, result.mean_seconds
                    );
                    println!(
                        "  {:?} similarity instead: {:.2}; first example on the answer's own chunk: {:.2}; own example \
                         among those credited: {:.2} ({:.1} credited an answer)",
                        result.other_similarity,
                        result.other_top1_rate,
                        result.chunk_top1_rate,
                        result.credited_rate,
                        result.mean_credited
                    );
                    println!(
                        "  of the {} answers that state their own example's answer, {:.2} rank it first",
                        result.right_answers, result.right_top1_rate
                    );
                }
            } else {
                let question = question.unwrap_or_default();
                let found = training::influence(app, &id, &datanet, &question, top).await?;
                if json {
                    println!("{}", serde_json::to_string_pretty(&found)?);
                } else {
                    println!("{}", found.answer.trim());
                    for e in &found.examples {
                        let chunks: Vec<&str> = e.example.chunks.iter().map(|c| &c[..c.len().min(12)]).collect();
                        println!("  {:.3}  {}  (chunks {})", e.score, e.example.question, chunks.join(", "));
                    }
                    println!("attribution took {:.2} s", found.seconds);
                }
            }
        }
        AdapterCommand::Show { id, json } => {
            let entry = registry.get(&id).ok();
            let record = training::training_record(app, &id)?;
            if entry.is_none() && record.is_none() {
                bail!("adapter {id} is neither registered nor trained here");
            }
            if json {
                let value = serde_json::json!({ "adapter": entry, "training": record });
                println!("{}", serde_json::to_string_pretty(&value)?);
            } else {
                match &entry {
                    Some(e) => println!("{}  rank {}  {}  {:?}", e.id, e.rank, e.target_modules.join(","), e.source),
                    None => println!("{id}  trained, not published"),
                }
                match record {
                    Some(r) => {
                        println!(
                            "trained on Datanet {} ({} pairs, {} steps, seed {})",
                            r.datanet, r.train_pairs, r.steps, r.settings.seed
                        );
                        for d in &r.datanets {
                            println!("  {} at root {} ({} chunks)", d.name, d.root, d.chunks);
                        }
                        println!("base model {} (blake3 {})", r.base_model, r.base_model_blake3);
                        let e = &r.evaluation;
                        println!(
                            "held-out loss {:.4} (base {:.4}), answer F1 {:.3} (base {:.3}) over {} pairs",
                            e.adapter_loss, e.base_loss, e.adapter_answer_f1, e.base_answer_f1, e.heldout_pairs
                        );
                        println!("training log root {}", r.log_root);
                    }
                    None => println!("not trained here"),
                }
            }
        }
        AdapterCommand::Verify { id } => {
            let (verified, on_chain) = training::verify_training(app, &id).await?;
            println!(
                "training log of {id} verifies: root {}, {} steps over {} examples{}",
                verified.root,
                verified.steps.len(),
                verified.header.examples.len(),
                if on_chain { "; the registry contract holds the same root" } else { "" }
            );
        }
        AdapterCommand::Commit { id } => {
            let committed = training::commit_training(app, &id).await?;
            println!(
                "committed {id}'s training root {} as adapter {} (transaction {})",
                committed.training_root, committed.id, committed.transaction
            );
        }
    }
    Ok(())
}
