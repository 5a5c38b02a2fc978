//! Uploaded bytes through the document parsers (by the first byte: .txt, .md or BEIR .jsonl)
//! and the chunker: never a panic, and every chunk's offsets point at its own text in the
//! document (the indexer's invariant).
#![no_main]

// Each target uses one of the checks.
#[allow(dead_code)]
#[path = "../checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::documents(data));
