//! Uploaded bytes through the document parsers (by the first byte: .txt, .md or BEIR .jsonl)
//! and the chunker: never a panic, and every chunk's offsets point at its own text in the
//! document (the indexer's invariant).
#![no_main]

use libfuzzer_sys::fuzz_target;
use tributary_indexer::{Chunker, ChunkerConfig, read_upload};

fuzz_target!(|data: &[u8]| {
    let Some((&kind, bytes)) = data.split_first() else { return };
    let name = ["a.txt", "a.md", "a.jsonl"][kind as usize % 3];
    let Ok(documents) = read_upload(name, bytes.to_vec()) else { return };
    // Whitespace-separated words stand in for the embedder's tokenizer.
    let config = ChunkerConfig { target_tokens: 8 + (kind as usize % 40), overlap_tokens: kind as usize % 4 };
    let chunker = Chunker::new(config, |s: &str| s.split_whitespace().count().max(1)).expect("a valid config");
    for document in documents {
        for chunk in chunker.chunk(&document.text) {
            assert_eq!(&document.text[chunk.start..chunk.end], chunk.text, "offsets point at the chunk's text");
        }
    }
});
