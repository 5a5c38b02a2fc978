//! The local generator under concurrent answers (issue #22): clients each with their own LoRA
//! adapter send cited-answer prompts (three SciFact abstracts, ~800 tokens, as the product
//! builds them) through `LocalGenerator::stream`, i.e. the scheduler, at 1, 4 and 16 clients.
//! Prints one JSON line per concurrency: answers/s, latency p50/p99, time to first token, the
//! whole server's tokens/s and the prompt rate.
//!
//!     cargo run -p tributary-benches --bin batching -- --corpus ../shared/eval/scifact-dev/corpus.jsonl

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use candle_core::Device;
use clap::Parser;
use tributary_generator::{
    AdapterRegistry, AdapterSource, ChatRequest, GenerationParams, Generator, LocalGenerator, LocalModel,
    SchedulerConfig, Source, StreamEvent,
};

#[derive(Parser)]
struct Args {
    #[arg(long, env = "TRIBUTARY_LLM", default_value = "models/SmolLM2-135M-Instruct.Q4_1.gguf")]
    model: PathBuf,
    /// SciFact's corpus (JSON lines with `title` and `text`).
    #[arg(long, default_value = "../shared/eval/scifact-dev/corpus.jsonl")]
    corpus: PathBuf,
    /// Concurrent clients, one run each.
    #[arg(long, value_delimiter = ',', default_value = "1,4,16")]
    clients: Vec<usize>,
    /// Answers each client asks for, one after another (at least 16 answers a run).
    #[arg(long, default_value_t = 16)]
    answers: usize,
    #[arg(long, default_value_t = 64)]
    max_tokens: usize,
    #[arg(long, default_value_t = 16)]
    rank: usize,
    /// Prompts through `fused` (the fused step), `candle` (candle's ops), or `auto` (the
    /// model's default: fused where the CPU has the tiled kernel).
    #[arg(long, default_value = "auto")]
    prompts: String,
    #[arg(long, default_value = "target/bench-data/batching")]
    work_dir: PathBuf,
    /// Also write the prompts (chat messages, as JSON) here, for the peer to answer.
    #[arg(long)]
    dump_prompts: Option<PathBuf>,
}

/// Prompts of three abstracts each, with a question, as the product asks them.
fn prompts(corpus: &Path, count: usize) -> Result<Vec<Vec<tributary_generator::ChatMessage>>> {
    let file = std::fs::File::open(corpus).with_context(|| format!("opening {}", corpus.display()))?;
    let mut abstracts = Vec::new();
    for line in std::io::BufReader::new(file).lines().take(3 * count) {
        let doc: serde_json::Value = serde_json::from_str(&line?)?;
        abstracts.push(format!("{} {}", doc["title"].as_str().unwrap_or(""), doc["text"].as_str().unwrap_or("")));
    }
    let source = |i: usize, text: &str| Source {
        chunk_id: format!("c{i}"),
        document: format!("d{i}"),
        contributor: "0x0".into(),
        datanet: "scifact".into(),
        text: text.to_string(),
        start: 0,
        end: text.len(),
        relevance: 1.0,
        score: 1.0,
    };
    Ok(abstracts
        .chunks(3)
        .enumerate()
        .map(|(i, three)| {
            let sources: Vec<Source> = three.iter().enumerate().map(|(j, t)| source(3 * i + j, t)).collect();
            tributary_generator::messages("What do these studies find?", &sources)
        })
        .collect())
}

fn percentile(values: &[f64], p: f64) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    v[((v.len() - 1) as f64 * p).round() as usize]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let args = Args::parse();
    let mut model = LocalModel::load(&args.model, &Device::Cpu)?;
    match args.prompts.as_str() {
        "fused" => model.set_fused_prompts(true),
        "candle" => model.set_fused_prompts(false),
        "auto" => {}
        other => anyhow::bail!("--prompts {other}: fused, candle or auto"),
    }
    let fused_prompts = model.model().exact_prefixes();
    let config = model.model().config().clone();
    let largest = args.clients.iter().copied().max().unwrap_or(1);
    let registry = Arc::new(AdapterRegistry::open(args.work_dir.join("adapters.json"))?);
    for i in 0..largest {
        let dir = args.work_dir.join(format!("a{i}"));
        if !dir.join("adapter_model.safetensors").exists() {
            tributary_benches::write_random_adapter(&dir, &config, args.rank)?;
        }
        registry.register(&format!("a{i}"), AdapterSource::Path(dir), &config)?;
    }
    let scheduler = SchedulerConfig { max_rows: largest.max(16), prefix_cache_bytes: 0, ..Default::default() };
    let generator = Arc::new(LocalGenerator::with_scheduler(model, registry, 1 << 30, scheduler));
    let all_prompts = Arc::new(prompts(&args.corpus, 64)?);
    if let Some(path) = &args.dump_prompts {
        let json: Vec<Vec<serde_json::Value>> = all_prompts
            .iter()
            .map(|m| m.iter().map(|m| serde_json::json!({"role": m.role, "content": m.content})).collect())
            .collect();
        std::fs::write(path, serde_json::to_string(&json)?)?;
    }
    for &clients in &args.clients {
        let per_client = args.answers.div_ceil(clients).max(1);
        let started = Instant::now();
        let before = generator.scheduler_stats();
        let mut tasks = Vec::new();
        for c in 0..clients {
            let (generator, prompts, max_tokens) = (generator.clone(), all_prompts.clone(), args.max_tokens);
            tasks.push(tokio::spawn(async move {
                let mut done = Vec::new();
                for k in 0..per_client {
                    let messages = prompts[(c * per_client + k) % prompts.len()].clone();
                    let params = GenerationParams { max_tokens, ..Default::default() };
                    let request = ChatRequest { messages, params, adapters: vec![(format!("a{c}"), 1.0)] };
                    let asked = Instant::now();
                    let mut first = None;
                    let mut events = generator.stream(request);
                    let mut completion = None;
                    while let Some(event) = events.recv().await {
                        match event? {
                            StreamEvent::Token(_) => first = first.or(Some(asked.elapsed())),
                            StreamEvent::Done(d) => completion = Some(d),
                        }
                    }
                    let completion = completion.context("no completion")?;
                    let total = asked.elapsed();
                    done.push((total, first.unwrap_or(total), completion.prompt_tokens, completion.completion_tokens));
                }
                anyhow::Ok(done)
            }));
        }
        let mut results: Vec<(Duration, Duration, usize, usize)> = Vec::new();
        for task in tasks {
            results.extend(task.await??);
        }
        let wall = started.elapsed().as_secs_f64();
        let after = generator.scheduler_stats();
        let latency: Vec<f64> = results.iter().map(|r| r.0.as_secs_f64()).collect();
        let ttft: Vec<f64> = results.iter().map(|r| r.1.as_secs_f64() * 1e3).collect();
        let prompt_tokens: usize = results.iter().map(|r| r.2).sum();
        let tokens: usize = results.iter().map(|r| r.3).sum();
        let steps = (after.steps - before.steps).max(1);
        println!(
            "{}",
            serde_json::json!({
                "clients": clients, "answers": results.len(), "distinct_adapters": clients,
                "fused_prompts": fused_prompts,
                "answers_per_s": results.len() as f64 / wall,
                "latency_p50_s": percentile(&latency, 0.5), "latency_p99_s": percentile(&latency, 0.99),
                "ttft_p50_ms": percentile(&ttft, 0.5), "ttft_p99_ms": percentile(&ttft, 0.99),
                "generated_tokens_per_s": tokens as f64 / wall,
                "prompt_tokens_mean": prompt_tokens as f64 / results.len() as f64,
                "completion_tokens_mean": tokens as f64 / results.len() as f64,
                "mean_batch_rows": (after.step_rows - before.step_rows) as f64 / steps as f64,
            })
        );
    }
    Ok(())
}
