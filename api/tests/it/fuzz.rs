//! The fuzz targets' short version, on stable and in CI (issue #24, suite 3): each target's
//! check (`fuzz/checks.rs`, shared with the cargo-fuzz targets) on its committed seeds, on
//! every input in `fuzz/regressions/<target>/` (a finding kept as a regression test), and on
//! seeded mutations of them. Not coverage-guided: the long, guided campaigns are
//! `scripts/fuzz.sh`. `TRIBUTARY_FUZZ_CASES` (default 5,000 per target) and
//! `TRIBUTARY_FUZZ_SEED` set the mutations; a failing input is written to
//! `target/fuzz-replay/<target>-<case>` and its hex printed.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

use crate::Rng;

#[path = "../../../fuzz/checks.rs"]
mod checks;

/// Byte strings the parsers care about, spliced in whole.
const TOKENS: &[&[u8]] = &[
    b"[1]",
    b"[2]",
    b"[9]",
    b"[^1]",
    b"\0",
    b"\"",
    b"\\u0000",
    b"\\ud800",
    b"{\"_id\":",
    b"\"text\":",
    b"null",
    b"-1",
    b"1e309",
    b"18446744073709551616",
    b"0x",
    b"\n\n# ",
    b"```",
    b"1,250",
    b"2.4 million",
    b"Dr. ",
    b"U.S.",
    b"passage 2",
    b"\xe2\x80\xaf",
    b"\xc3\xa9",
    b"\xff\xfe",
    b" km",
    b"$",
    b"%",
    b"March 3, 1921",
];

/// One to four edits of `input`: a bit flipped, a byte set, bytes inserted or deleted, a range
/// repeated, a token spliced in, or the tail of another seed.
fn mutate(rng: &mut Rng, input: &[u8], others: &[Vec<u8>]) -> Vec<u8> {
    let mut out = input.to_vec();
    for _ in 0..1 + rng.below(4) {
        let at = rng.below(out.len() + 1);
        match rng.below(7) {
            0 if !out.is_empty() => {
                let i = rng.below(out.len());
                out[i] ^= 1 << rng.below(8);
            }
            1 if !out.is_empty() => {
                let i = rng.below(out.len());
                out[i] = [0, 0xff, b'[', b']', b'\0', b'"', b'{', b'}', b'.', b' ', b'\n', b'7'][rng.below(12)];
            }
            2 => {
                let bytes: Vec<u8> = (0..1 + rng.below(8)).map(|_| rng.draw() as u8).collect();
                out.splice(at..at, bytes);
            }
            3 if !out.is_empty() => {
                let end = (at + 1 + rng.below(16)).min(out.len());
                out.drain(at.min(end)..end);
            }
            4 if !out.is_empty() => {
                let start = rng.below(out.len());
                let end = (start + 1 + rng.below(32)).min(out.len());
                let copy = out[start..end].to_vec();
                out.splice(at..at, copy);
            }
            5 => {
                out.splice(at..at, TOKENS[rng.below(TOKENS.len())].iter().copied());
            }
            _ => {
                let other = &others[rng.below(others.len())];
                let from = rng.below(other.len() + 1);
                out.truncate(at);
                out.extend_from_slice(&other[from..]);
            }
        }
    }
    out.truncate(4096);
    out
}

fn inputs(dir: &Path) -> Vec<Vec<u8>> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut paths: Vec<PathBuf> = entries.map(|e| e.unwrap().path()).collect();
    paths.sort();
    paths.iter().map(|p| std::fs::read(p).unwrap()).collect()
}

/// Runs `check` on `input`; a panic writes the input where the message says and fails.
fn run(target: &str, case: &str, check: fn(&[u8]), input: &[u8]) {
    if catch_unwind(AssertUnwindSafe(|| check(input))).is_err() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/fuzz-replay");
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("{target}-{case}"));
        std::fs::write(&path, input).unwrap();
        panic!("{target}: case {case} failed; input in {} ({})", path.display(), hex::encode(input));
    }
}

#[test]
fn fuzz_targets_hold_on_seeds_regressions_and_mutations() {
    let env = |name: &str, default: u64| std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default);
    let cases = env("TRIBUTARY_FUZZ_CASES", 5_000);
    let seed = env("TRIBUTARY_FUZZ_SEED", 24);
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
    for (target, check) in checks::TARGETS {
        let seeds = inputs(&fuzz.join("seeds").join(target));
        assert!(!seeds.is_empty(), "{target} has no seeds");
        for (i, input) in seeds.iter().chain(&inputs(&fuzz.join("regressions").join(target))).enumerate() {
            run(target, &format!("given{i}"), *check, input);
        }
        let mut rng = Rng(seed ^ target.len() as u64);
        let mut pool = seeds.clone();
        for case in 0..cases {
            let parent = rng.below(pool.len());
            let input = mutate(&mut rng, &pool[parent], &seeds);
            run(target, &case.to_string(), *check, &input);
            // Mutants breed too, so edits pile up past the seeds' neighbourhood.
            if pool.len() < 256 {
                pool.push(input);
            } else {
                let slot = rng.below(pool.len());
                pool[slot] = input;
            }
        }
    }
}
