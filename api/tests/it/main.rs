//! End-to-end tests of the `tributary` binary: real processes, real files.

mod ask;
mod batch;
mod chain;
mod cli;
mod crash;
mod facts;
mod faults;
mod fuzz;
mod http;
mod layers;
mod ledger;
mod review;
mod serve;
mod soak;
mod training;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub const ALICE: &str = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266";
pub const BOB: &str = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8";

/// splitmix64: random draws reproducible from a seed (the crash and fuzz tests' plans).
pub struct Rng(pub u64);

impl Rng {
    pub fn draw(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A draw below `n` (0 when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.draw() % n.max(1) as u64) as usize
    }
}

pub fn model_dir() -> PathBuf {
    std::env::var_os("TRIBUTARY_EMBED_MODEL")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models/all-MiniLM-L6-v2"))
}

pub fn llm() -> PathBuf {
    std::env::var_os("TRIBUTARY_LLM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models/SmolLM2-135M-Instruct.Q4_1.gguf"))
}

/// `tributary` with a private data directory and SQLite.
pub fn tributary(data_dir: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tributary"));
    cmd.env("TRIBUTARY_DATA_DIR", data_dir)
        .env("TRIBUTARY_EMBED_MODEL", model_dir())
        .env("TRIBUTARY_LLM", llm())
        .env_remove("DATABASE_URL")
        .env("RUST_LOG", "warn");
    cmd
}

pub fn run_ok(cmd: &mut Command) -> String {
    let out: Output = cmd.output().expect("tributary runs");
    assert!(
        out.status.success(),
        "{:?} failed\nstdout: {}\nstderr: {}",
        cmd,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A synthetic BEIR corpus: varied sentences so that chunks differ.
pub fn write_corpus(path: &Path, documents: usize) {
    write_corpus_range(path, 0..documents);
}

/// Documents `range` of the synthetic corpus (disjoint ranges give disjoint documents).
pub fn write_corpus_range(path: &Path, range: std::ops::Range<usize>) {
    let topics = ["river", "glacier", "delta", "aquifer", "estuary", "wetland", "canyon", "lake"];
    let verbs = ["feeds", "drains", "erodes", "floods", "shapes", "cools", "fills", "carries"];
    let mut body = String::new();
    for i in range {
        let mut text = String::new();
        for s in 0..12 {
            let t = topics[(i + s) % topics.len()];
            let v = verbs[(i * 3 + s) % verbs.len()];
            text.push_str(&format!("The {t} number {i} {v} region {s} during season {}. ", (i * 7 + s) % 13));
        }
        body.push_str(
            &serde_json::json!({"_id": format!("doc{i}"), "title": format!("Document {i}"), "text": text}).to_string(),
        );
        body.push('\n');
    }
    std::fs::write(path, body).unwrap();
}
