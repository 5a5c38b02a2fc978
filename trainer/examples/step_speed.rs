//! One training step's speed and memory on the real model: a forward and backward pass of
//! `ROWS` rows of `LEN` tokens (defaults 1 and 300) through SmolLM2 with a rank-16 adapter on
//! every projection, twice (the first warms up). benches/RESULTS.md quotes it.
//!   source scripts/env.sh && LEN=300 ROWS=1 /usr/bin/time -v cargo run -q -p tributary-trainer --example step_speed

use std::time::Instant;

use candle_core::Device;
use tributary_generator::LocalModel;
use tributary_trainer::{FrozenBase, LoraParams, LoraShape, Row, nll, tune_allocator};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::var("TRIBUTARY_LLM").map_err(|_| "TRIBUTARY_LLM is not set: source scripts/env.sh")?;
    let number = |name: &str, default: usize| std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default);
    let (len, rows) = (number("LEN", 300), number("ROWS", 1));
    tune_allocator();
    let local = LocalModel::load(std::path::Path::new(&path), &Device::Cpu)?;
    let model = local.model();
    let base = FrozenBase::new(model)?;
    let params = LoraParams::init(&LoraShape::default_for_training(), model.config(), 0, &Device::Cpu)?;
    let tokens: Vec<u32> = (0..len as u32).map(|i| (i * 37 + 11) % 49_000).collect();
    let batch: Vec<Row<'_>> =
        (0..rows).map(|_| Row { tokens: &tokens, target_start: len.saturating_sub(20) }).collect();
    for pass in ["warm-up", "measured"] {
        let started = Instant::now();
        let loss = nll(&base, Some(&params), &batch)?;
        let forward = started.elapsed();
        drop(loss.backward()?);
        let total = started.elapsed();
        println!(
            "{pass}: forward {forward:.2?}, backward {:.2?}, {:.0} tokens/s",
            total - forward,
            (len * rows) as f64 / total.as_secs_f64()
        );
    }
    Ok(())
}
