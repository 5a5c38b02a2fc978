//! The generator on a GPU (issue #4, item 8). Two jobs, each printing JSON lines:
//!
//! - `parity`: the logits of a two-row batch (a different LoRA adapter on each row) on the CUDA
//!   device, in f32 and bf16, against the CPU path and against transformers + PEFT (a reference
//!   file written by `peer_gpu.py`), plus greedy tokens CPU vs CUDA.
//! - `bench`: aggregate tokens/s and time to first token of one batch whose rows use 1, 8 or 32
//!   distinct adapters (greedy decoding, every generated token fed back).
//!
//! Built with `--features cuda` (see `../shared/gpu/README.md`); `benches/gpu/run.sh` runs both
//! next to the transformers + PEFT peer on the device machine.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use candle_core::{DType, Device, Tensor};
use clap::{Parser, Subcommand};
use serde_json::json;
use tributary_generator::{Adapter, AdapterMix, BatchAdapters, Model, argmax_rows};

#[derive(Parser)]
struct Args {
    /// Hugging Face checkpoint directory (config.json + model.safetensors).
    #[arg(long)]
    model: PathBuf,
    /// Directory holding one PEFT adapter per subdirectory (a0, a1, ...).
    #[arg(long)]
    adapters: PathBuf,
    #[command(subcommand)]
    job: Job,
}

#[derive(Subcommand)]
enum Job {
    Parity {
        /// JSON from peer_gpu.py: {"tokens": [[..],[..]], "adapters": [..], "logits": [[..],[..]]}.
        #[arg(long)]
        reference: PathBuf,
        /// Greedy tokens to compare CPU with CUDA.
        #[arg(long, default_value_t = 16)]
        greedy: usize,
    },
    Bench {
        #[arg(long, default_value_t = 32)]
        rows: usize,
        #[arg(long, value_delimiter = ',', default_value = "1,8,32")]
        distinct: Vec<usize>,
        #[arg(long, default_value_t = 128)]
        prompt_len: usize,
        #[arg(long, default_value_t = 64)]
        new_tokens: usize,
        #[arg(long, default_value = "bf16")]
        dtype: String,
    },
}

fn cuda() -> Result<Device> {
    Device::new_cuda(0).context("no CUDA device (built without --features cuda?)")
}

fn parse_dtype(name: &str) -> Result<DType> {
    Ok(match name {
        "f32" => DType::F32,
        "bf16" => DType::BF16,
        "f16" => DType::F16,
        other => bail!("unknown dtype {other}"),
    })
}

fn load_adapters(dir: &Path, count: usize, model: &Model, dtype: DType) -> Result<Vec<Arc<Adapter>>> {
    (0..count)
        .map(|i| {
            let id = format!("a{i}");
            let adapter = Adapter::load(&id, &dir.join(&id), model.config(), model.device(), dtype)
                .with_context(|| format!("adapter {id}"))?;
            Ok(Arc::new(adapter))
        })
        .collect()
}

/// The prompt tokens of row `row`: the same formula as peer_gpu.py, so both sides read the same.
fn prompt_tokens(row: usize, len: usize, vocab: usize) -> Vec<u32> {
    (0..len).map(|i| ((row * 7919 + i * 104_729) % (vocab - 1000) + 500) as u32).collect()
}

/// Last-position logits of `tokens` (one row per adapter) as f32 rows.
fn logits(model: &Model, tokens: &[Vec<u32>], adapters: &[Arc<Adapter>]) -> Result<Vec<Vec<f32>>> {
    let mixes: Vec<AdapterMix> = adapters.iter().map(|a| vec![(a.clone(), 1.0)]).collect();
    let plan = BatchAdapters::per_row(&mixes, model.device())?;
    let flat: Vec<u32> = tokens.iter().flatten().copied().collect();
    let input = Tensor::from_vec(flat, (tokens.len(), tokens[0].len()), model.device())?;
    let mut cache = model.new_cache();
    Ok(model.forward(&input, &mut cache, &plan)?.to_device(&Device::Cpu)?.to_vec2::<f32>()?)
}

fn greedy(model: &Model, prompt: &[u32], adapter: &Arc<Adapter>, steps: usize) -> Result<Vec<u32>> {
    let plan = BatchAdapters::per_row(&[vec![(adapter.clone(), 1.0)]], model.device())?;
    let mut cache = model.new_cache();
    let mut input = Tensor::from_vec(prompt.to_vec(), (1, prompt.len()), model.device())?;
    let mut out = Vec::with_capacity(steps);
    for _ in 0..steps {
        let next = argmax_rows(&model.forward(&input, &mut cache, &plan)?)?[0];
        out.push(next);
        input = Tensor::from_vec(vec![next], (1, 1), model.device())?;
    }
    Ok(out)
}

/// Largest absolute difference, and whether the argmax agrees, row by row.
fn compare(a: &[Vec<f32>], b: &[Vec<f32>]) -> serde_json::Value {
    let argmax = |row: &[f32]| row.iter().enumerate().max_by(|x, y| x.1.total_cmp(y.1)).map(|(i, _)| i);
    let max_abs = a.iter().zip(b).flat_map(|(x, y)| x.iter().zip(y).map(|(p, q)| (p - q).abs())).fold(0f32, f32::max);
    let scale = b.iter().flatten().map(|v| v.abs()).fold(0f32, f32::max);
    let same_argmax = a.iter().zip(b).all(|(x, y)| argmax(x) == argmax(y));
    json!({"max_abs_diff": max_abs, "max_abs_logit": scale, "same_argmax": same_argmax})
}

fn parity(args: &Args, reference: &Path, steps: usize) -> Result<()> {
    let raw = std::fs::read(reference).with_context(|| reference.display().to_string())?;
    let reference: serde_json::Value = serde_json::from_slice(&raw)?;
    let tokens: Vec<Vec<u32>> = serde_json::from_value(reference["tokens"].clone())?;
    let expected: Vec<Vec<f32>> = serde_json::from_value(reference["logits"].clone())?;
    let rows = tokens.len();

    let cpu = Model::from_safetensors(&args.model, DType::F32, &Device::Cpu)?;
    let cpu_adapters = load_adapters(&args.adapters, rows, &cpu, DType::F32)?;
    let cpu_logits = logits(&cpu, &tokens, &cpu_adapters)?;
    let cpu_tokens = greedy(&cpu, &tokens[0], &cpu_adapters[0], steps)?;
    drop((cpu, cpu_adapters));

    let device = cuda()?;
    let gpu = Model::from_safetensors(&args.model, DType::F32, &device)?;
    let gpu_adapters = load_adapters(&args.adapters, rows, &gpu, DType::F32)?;
    let gpu_logits = logits(&gpu, &tokens, &gpu_adapters)?;
    let gpu_tokens = greedy(&gpu, &tokens[0], &gpu_adapters[0], steps)?;
    drop((gpu, gpu_adapters));

    let half = Model::from_safetensors(&args.model, DType::BF16, &device)?;
    let half_adapters = load_adapters(&args.adapters, rows, &half, DType::BF16)?;
    let half_logits = logits(&half, &tokens, &half_adapters)?;

    println!(
        "{}",
        json!({
            "job": "parity", "rows": rows, "prompt_len": tokens[0].len(),
            "cuda_f32_vs_cpu_f32": compare(&gpu_logits, &cpu_logits),
            "cpu_f32_vs_transformers_f32": compare(&cpu_logits, &expected),
            "cuda_f32_vs_transformers_f32": compare(&gpu_logits, &expected),
            "cuda_bf16_vs_cpu_f32": compare(&half_logits, &cpu_logits),
            "greedy_tokens": steps, "greedy_cuda_equals_cpu": gpu_tokens == cpu_tokens,
            "greedy_cpu": cpu_tokens, "greedy_cuda": gpu_tokens,
        })
    );
    Ok(())
}

struct Run {
    ttft_s: f64,
    total_s: f64,
}

/// One batch: gather the rows' adapters, prefill, then decode greedily, each token fed back.
fn run_batch(model: &Model, mixes: &[AdapterMix], prompt_len: usize, new_tokens: usize) -> Result<Run> {
    let rows = mixes.len();
    let vocab = model.config().vocab_size;
    let flat: Vec<u32> = (0..rows).flat_map(|r| prompt_tokens(r, prompt_len, vocab)).collect();
    let start = Instant::now();
    let plan = BatchAdapters::per_row(mixes, model.device())?;
    let mut cache = model.new_cache();
    let input = Tensor::from_vec(flat, (rows, prompt_len), model.device())?;
    // argmax_rows copies to the host, so each step's time includes the device work.
    let mut next = argmax_rows(&model.forward(&input, &mut cache, &plan)?)?;
    let ttft_s = start.elapsed().as_secs_f64();
    for _ in 1..new_tokens {
        let input = Tensor::from_vec(next, (rows, 1), model.device())?;
        next = argmax_rows(&model.forward(&input, &mut cache, &plan)?)?;
    }
    Ok(Run { ttft_s, total_s: start.elapsed().as_secs_f64() })
}

fn bench(
    args: &Args,
    rows: usize,
    distinct: &[usize],
    prompt_len: usize,
    new_tokens: usize,
    dtype: &str,
) -> Result<()> {
    let device = cuda()?;
    let dtype = parse_dtype(dtype)?;
    let load = Instant::now();
    let model = Model::from_safetensors(&args.model, dtype, &device)?;
    let most = distinct.iter().copied().max().unwrap_or(1);
    let adapters = load_adapters(&args.adapters, most, &model, dtype)?;
    let load_s = load.elapsed().as_secs_f64();
    let mixes_for = |n: usize| -> Vec<AdapterMix> { (0..rows).map(|r| vec![(adapters[r % n].clone(), 1.0)]).collect() };
    // Warm-up: cuBLAS handles, kernel loading, the allocator.
    run_batch(&model, &mixes_for(most), prompt_len, 4)?;
    for &n in distinct {
        let mixes = mixes_for(n);
        let runs: Vec<Run> =
            (0..3).map(|_| run_batch(&model, &mixes, prompt_len, new_tokens)).collect::<Result<_>>()?;
        let best = runs.iter().min_by(|a, b| a.total_s.total_cmp(&b.total_s)).context("no runs")?;
        let ttft = runs.iter().map(|r| r.ttft_s).fold(f64::INFINITY, f64::min);
        println!(
            "{}",
            json!({
                "job": "bench", "engine": "tributary", "dtype": format!("{dtype:?}"), "rows": rows,
                "distinct_adapters": n, "prompt_len": prompt_len, "new_tokens": new_tokens, "load_s": load_s,
                "ttft_ms": ttft * 1e3, "total_s": best.total_s,
                "tokens_per_s": (rows * new_tokens) as f64 / best.total_s,
                "decode_tokens_per_s": (rows * (new_tokens - 1)) as f64 / (best.total_s - best.ttft_s),
            })
        );
    }
    Ok(())
}

fn main() -> Result<()> {
    let args = Args::parse();
    match &args.job {
        Job::Parity { reference, greedy } => parity(&args, reference, *greedy),
        Job::Bench { rows, distinct, prompt_len, new_tokens, dtype } => {
            bench(&args, *rows, distinct, *prompt_len, *new_tokens, dtype)
        }
    }
}
