//! The citation parser and checker on any model output: never a panic, and every citation it
//! keeps names a passage that exists.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tributary_generator::{CitationPolicy, Source, attribute};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    // question \0 answer \0 passage \0 passage ...
    let mut parts = text.split('\0');
    let (Some(question), Some(answer)) = (parts.next(), parts.next()) else { return };
    let sources: Vec<Source> = parts
        .take(8)
        .enumerate()
        .map(|(i, passage)| Source {
            chunk_id: format!("{i:064x}"),
            text: passage.to_string(),
            document: "d".into(),
            contributor: "0x0000000000000000000000000000000000000001".into(),
            datanet: "fuzz".into(),
            start: 0,
            end: passage.len(),
            relevance: 0.9,
            score: 0.5,
        })
        .collect();
    let (sentences, _) = attribute(answer, question, &sources, &CitationPolicy::default());
    for sentence in sentences {
        for n in sentence.citations {
            assert!(n >= 1 && n <= sources.len(), "citation [{n}] of {} passages", sources.len());
        }
    }
});
