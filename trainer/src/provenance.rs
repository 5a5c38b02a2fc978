//! The training log: which data trained an adapter, as a verifiable record.
//!
//! A JSON-lines file: first a header (the base model and its hash, the adapter's shape, every
//! setting, the seed, the Datanets and their versions, the examples' hashes), then one record
//! per optimizer step (the examples and chunks it read, its loss and learning rate). Its root
//! is a blake3 Merkle tree over the lines as stored (leaf `blake3(0x00 || line)`, node
//! `blake3(0x01 || left || right)`, an odd node carried up as it is): stored with the adapter
//! and committed on chain, so anyone holding the log can check it is the one the root names,
//! and a changed, dropped or reordered line shows.

use std::path::Path;

use crate::error::{Error, Result};
use crate::lora::LoraShape;
use crate::train::TrainSettings;

/// A Datanet an adapter was trained from, at the version it had.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct DatanetVersion {
    pub name: String,
    /// The Datanet's content root when training started (what its registry entry commits).
    pub root: String,
    pub chunks: u64,
}

/// What a run is: the first line of its log.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RunHeader {
    pub adapter: String,
    pub base_model: String,
    /// blake3 of the base model's file(s).
    pub base_model_blake3: String,
    pub lora: LoraShape,
    pub settings: TrainSettings,
    pub datanets: Vec<DatanetVersion>,
    /// Every training example's hash, in the order the run indexes them.
    pub examples: Vec<String>,
}

/// One optimizer step.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct StepRecord {
    /// 1-based.
    pub step: usize,
    pub epoch: usize,
    /// The examples' hashes this step's gradient came from.
    pub examples: Vec<String>,
    /// Their chunks, each once.
    pub chunks: Vec<String>,
    /// Mean negative log-likelihood per target token.
    pub loss: f64,
    pub learning_rate: f64,
    /// The gradient's global norm before clipping.
    pub grad_norm: f64,
    pub tokens: usize,
}

/// A line of the log.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "record", rename_all = "snake_case")]
pub enum LogLine {
    Header(RunHeader),
    Step(StepRecord),
}

impl LogLine {
    pub fn to_line(&self) -> Result<String> {
        serde_json::to_string(self).map_err(|e| Error::Invalid(e.to_string()))
    }
}

/// The Merkle root of `lines` (each without its newline), hex.
pub fn log_root<S: AsRef<str>>(lines: &[S]) -> String {
    let mut level: Vec<[u8; 32]> = lines
        .iter()
        .map(|l| {
            let mut h = blake3::Hasher::new();
            h.update(&[0]);
            h.update(l.as_ref().as_bytes());
            *h.finalize().as_bytes()
        })
        .collect();
    if level.is_empty() {
        return hex::encode([0u8; 32]);
    }
    while level.len() > 1 {
        level = level
            .chunks(2)
            .map(|pair| match pair {
                [left, right] => {
                    let mut h = blake3::Hasher::new();
                    h.update(&[1]);
                    h.update(left);
                    h.update(right);
                    *h.finalize().as_bytes()
                }
                [one] => *one,
                _ => unreachable!("chunks(2)"),
            })
            .collect();
    }
    hex::encode(level[0])
}

/// A log read back and checked: its header and steps.
#[derive(Debug, Clone)]
pub struct VerifiedLog {
    pub header: RunHeader,
    pub steps: Vec<StepRecord>,
    pub root: String,
}

/// Reads the log at `path` and checks it: a header first, then steps numbered 1, 2, ... whose
/// examples are the header's, and, when `expected_root` is given, that its root is that one.
pub fn verify_log(path: &Path, expected_root: Option<&str>) -> Result<VerifiedLog> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::Io(path.display().to_string(), e))?;
    let lines: Vec<&str> = text.lines().collect();
    let root = log_root(&lines);
    if let Some(expected) = expected_root
        && !expected.eq_ignore_ascii_case(&root)
    {
        return Err(Error::Tampered(format!("{}: its root is {root}, not {expected}", path.display())));
    }
    let mut parsed = lines.iter().enumerate().map(|(i, line)| {
        serde_json::from_str::<LogLine>(line).map_err(|e| Error::Tampered(format!("line {}: {e}", i + 1)))
    });
    let header = match parsed.next().transpose()? {
        Some(LogLine::Header(h)) => h,
        _ => return Err(Error::Tampered("the first line is not the run's header".into())),
    };
    let known: std::collections::HashSet<&str> = header.examples.iter().map(String::as_str).collect();
    let mut steps = Vec::new();
    for line in parsed {
        let LogLine::Step(step) = line? else { return Err(Error::Tampered("a second header".into())) };
        if step.step != steps.len() + 1 {
            return Err(Error::Tampered(format!("step {} where step {} was due", step.step, steps.len() + 1)));
        }
        if let Some(unknown) = step.examples.iter().find(|e| !known.contains(e.as_str())) {
            return Err(Error::Tampered(format!("step {} names example {unknown}, not in the header", step.step)));
        }
        steps.push(step);
    }
    Ok(VerifiedLog { header, steps, root })
}
