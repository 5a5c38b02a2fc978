use candle_core::Device;
use std::time::Instant;
use tributary_generator::{LocalModel, Projection};
use tributary_trainer::*;

fn main() {
    let path = std::env::var("TRIBUTARY_LLM").unwrap();
    let local = LocalModel::load(std::path::Path::new(&path), &Device::Cpu).unwrap();
    let model = local.model();
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30);
        libc::mallopt(libc::M_TOP_PAD, 256 << 20);
    }
    let base = FrozenBase::new(model).unwrap();
    let t = Instant::now();
    for l in 0..model.config().num_layers {
        for p in Projection::ALL {
            let _ = model.projection_weight(l, p).unwrap();
        }
    }
    println!("dequantize all: {:?}", t.elapsed());
    let params = LoraParams::init(&LoraShape::default_for_training(), model.config(), 0, &Device::Cpu).unwrap();
    let len: usize = std::env::var("LEN").ok().and_then(|s| s.parse().ok()).unwrap_or(300);
    let rows_n: usize = std::env::var("ROWS").ok().and_then(|s| s.parse().ok()).unwrap_or(1);
    let tokens: Vec<u32> = (0..len as u32).map(|i| (i * 37 + 11) % 49000).collect();
    let rows: Vec<Row> = (0..rows_n).map(|_| Row { tokens: &tokens, target_start: len - 20 }).collect();
    for _ in 0..2 {
        let t = Instant::now();
        let loss = nll(&base, Some(&params), &rows).unwrap();
        let f = t.elapsed();
        let g = loss.backward().unwrap();
        println!(
            "forward {:?}, backward {:?}, tok/s {:.0}",
            f,
            t.elapsed() - f,
            (len * rows_n) as f64 / t.elapsed().as_secs_f64()
        );
        drop(g);
    }
}
