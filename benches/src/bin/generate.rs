//! Generator speed on the CPU: decode tokens/s and time to first token on a GGUF model, LoRA
//! adapter cold-load and hot-switch latency, and the throughput of a batch whose rows use
//! different adapters relative to one where they share one. Prints one JSON line.
//!
//!     cargo run -p tributary-benches --bin generate -- --model models/SmolLM2-135M-Instruct.Q4_1.gguf

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Result;
use candle_core::{DType, Device, Tensor};
use clap::Parser;
use tributary_generator::{
    Adapter, AdapterCache, AdapterRegistry, AdapterSource, BatchAdapters, ChatMessage, GenerationParams, KvCache,
    LocalModel, Model,
};

#[derive(Parser)]
struct Args {
    #[arg(long, env = "TRIBUTARY_LLM", default_value = "models/SmolLM2-135M-Instruct.Q4_1.gguf")]
    model: PathBuf,
    /// Tokens to generate per run.
    #[arg(long, default_value_t = 128)]
    tokens: usize,
    #[arg(long, default_value_t = 16)]
    rank: usize,
    /// Rows of the mixed-adapter batch.
    #[arg(long, default_value_t = 8)]
    batch: usize,
    #[arg(long, default_value = "target/bench-data/adapters")]
    work_dir: PathBuf,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// A batch decoding step after step, timed: every row's adapters as `mixes` give them.
struct BatchRun {
    adapters: BatchAdapters,
    cache: KvCache,
    rows: usize,
    steps: usize,
    seconds: f64,
}

impl BatchRun {
    /// After a 32-token prompt on every row (not timed).
    fn start(model: &Model, mixes: &[tributary_generator::AdapterMix]) -> Result<Self> {
        let rows = mixes.len();
        let adapters = BatchAdapters::per_row(mixes, model.device())?;
        let prompt: Vec<u32> = (0..rows * 32).map(|i| (i % 1000) as u32 + 100).collect();
        let mut cache = model.new_cache();
        model.forward(&Tensor::from_vec(prompt, (rows, 32), model.device())?, &mut cache, &adapters)?;
        Ok(BatchRun { adapters, cache, rows, steps: 0, seconds: 0.0 })
    }

    fn advance(&mut self, model: &Model, steps: usize) -> Result<()> {
        let step = Tensor::from_vec(vec![200u32; self.rows], (self.rows, 1), model.device())?;
        let start = Instant::now();
        for _ in 0..steps {
            model.forward(&step, &mut self.cache, &self.adapters)?;
        }
        self.seconds += start.elapsed().as_secs_f64();
        self.steps += steps;
        Ok(())
    }

    /// Tokens (rows × steps) a second.
    fn rate(&self) -> f64 {
        (self.steps * self.rows) as f64 / self.seconds
    }
}

/// Tokens/s of batches whose rows use `batches[i]`, timed in turns (16 steps each, the order
/// rotating every round) so that a slow phase of a shared machine falls on all of them rather
/// than on whichever ran then; `steps` steps each in all.
fn batch_rates(model: &Model, batches: &[Vec<tributary_generator::AdapterMix>], steps: usize) -> Result<Vec<f64>> {
    const TURN: usize = 16;
    let mut runs = batches.iter().map(|mixes| BatchRun::start(model, mixes)).collect::<Result<Vec<_>>>()?;
    for round in 0..steps.div_ceil(TURN) {
        let turn = TURN.min(steps - round * TURN);
        for i in 0..runs.len() {
            let run = (round + i) % runs.len();
            runs[run].advance(model, turn)?;
        }
    }
    Ok(runs.iter().map(BatchRun::rate).collect())
}

fn main() -> Result<()> {
    let args = Args::parse();
    let device = Device::Cpu;
    let load_start = Instant::now();
    let mut model = LocalModel::from_gguf(&args.model, &device)?;
    let load_s = load_start.elapsed().as_secs_f64();
    let config = model.model().config().clone();

    // Decode speed: a fixed prompt, greedy, no stop (runs to --tokens unless the model ends);
    // the fused CPU step we ship, then every step through candle's ops, in this one process.
    let messages =
        [ChatMessage::user("Write a long story about a river that flows through a forest and into the sea.")];
    let params = GenerationParams { max_tokens: args.tokens, ..Default::default() };
    let decode = |model: &LocalModel| -> Result<(f64, f64, usize, usize)> {
        model.complete(
            &messages,
            &GenerationParams { max_tokens: 4, ..Default::default() },
            &Vec::new(),
            &mut |_| true,
        )?;
        let mut first_token = None;
        let start = Instant::now();
        let done = model.complete(&messages, &params, &Vec::new(), &mut |_| {
            first_token.get_or_insert_with(|| start.elapsed().as_secs_f64());
            true
        })?;
        let total = start.elapsed().as_secs_f64();
        let ttft = first_token.unwrap_or(total);
        let rate = (done.completion_tokens.saturating_sub(1)) as f64 / (total - ttft).max(1e-9);
        Ok((ttft, rate, done.prompt_tokens, done.completion_tokens))
    };
    let fused = model.model().fused_decode();
    let (ttft, decode_tps, prompt_tokens, completion_tokens) = decode(&model)?;
    model.set_fused_decode(false);
    let (_, candle_ops_tps, _, _) = decode(&model)?;
    model.set_fused_decode(true);

    // Adapters: cold load (files -> checked tensors), hot switch (a cached adapter for the next request).
    let registry = AdapterRegistry::open(args.work_dir.join("adapters.json"))?;
    let mut ids = Vec::new();
    for i in 0..args.batch.max(2) {
        let id = format!("bench-{i}");
        let dir = args.work_dir.join(&id);
        if !dir.join("adapter_model.safetensors").exists() {
            tributary_benches::write_random_adapter(&dir, &config, args.rank)?;
        }
        registry.register(&id, AdapterSource::Path(dir), &config)?;
        ids.push(id);
    }
    let mut cold = Vec::new();
    for id in &ids {
        let dir = registry.get(id)?.source.resolve()?;
        let t = Instant::now();
        let adapter = Adapter::load(id, &dir, &config, &device, DType::F32)?;
        cold.push(t.elapsed().as_secs_f64() * 1e3);
        drop(adapter);
    }
    let cache = AdapterCache::new(1 << 30, device.clone(), DType::F32);
    let loaded: Vec<Arc<Adapter>> = ids.iter().map(|id| cache.get(&registry, id, &config)).collect::<Result<_, _>>()?;
    let mut hot = Vec::new();
    for round in 0..200 {
        let id = &ids[round % ids.len()];
        let t = Instant::now();
        let adapter = cache.get(&registry, id, &config)?;
        let _mix = BatchAdapters::uniform(vec![(adapter, 1.0)], 1, &device)?;
        hot.push(t.elapsed().as_secs_f64() * 1e3);
    }

    // Time to first token with an adapter (its factors widened for the prompt's matmuls),
    // best of three after a warm-up.
    let with_adapter = vec![(loaded[0].clone(), 1.0)];
    let first_only = GenerationParams { max_tokens: 1, ..Default::default() };
    let mut ttft_adapter = f64::INFINITY;
    for _ in 0..4 {
        let t = Instant::now();
        model.complete(&messages, &first_only, &with_adapter, &mut |_| true)?;
        ttft_adapter = ttft_adapter.min(t.elapsed().as_secs_f64());
    }

    // Mixed batch: every row its own adapter, against every row the same adapter.
    // Enough steps that one slow moment of a shared VM does not decide the ratio.
    let steps = 64;
    let same: Vec<_> = (0..args.batch).map(|_| vec![(loaded[0].clone(), 1.0)]).collect();
    let mixed: Vec<_> = (0..args.batch).map(|i| vec![(loaded[i % loaded.len()].clone(), 1.0)]).collect();
    let base: Vec<_> = (0..args.batch).map(|_| Vec::new()).collect();
    let rates = batch_rates(model.model(), &[same, mixed, base], steps)?;
    let (same_rate, mixed_rate, base_rate) = (rates[0], rates[1], rates[2]);

    let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    println!(
        "{}",
        serde_json::json!({
            "model": model.name(), "threads": threads, "load_s": load_s,
            "prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "ttft_ms": ttft * 1e3, "decode_tokens_per_s": decode_tps, "fused_decode": fused,
            "decode_tokens_per_s_candle_ops": candle_ops_tps,
            "adapter_rank": args.rank, "adapter_cold_load_ms_median": median(cold),
            "adapter_hot_switch_ms_median": median(hot),
            "adapter_bytes": loaded[0].bytes(), "ttft_ms_with_adapter": ttft_adapter * 1e3,
            "batch_rows": args.batch, "batch_tokens_per_s_base": base_rate,
            "batch_tokens_per_s_same_adapter": same_rate, "batch_tokens_per_s_mixed_adapters": mixed_rate,
            "mixed_over_same": mixed_rate / same_rate,
        })
    );
    Ok(())
}
