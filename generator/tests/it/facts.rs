//! The fact check on the project's factual QA dev set (benches/data/facts): no sentence whose
//! number, date or name its cited passages lack is credited, whether the model wrote it or the
//! test altered a true one.

use std::path::PathBuf;
use std::sync::Arc;

use candle_core::Device;
use tributary_generator::{
    AdapterRegistry, Answer, AnswerRequest, CitationKind, CitationPolicy, GenerationParams, LocalGenerator, LocalModel,
    Origin, Source, attribute, unheld_facts,
};

use crate::{answered, smollm2};

fn dev_set() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../benches/data/facts")
}

fn document(name: &str) -> String {
    std::fs::read_to_string(dev_set().join("documents").join(name)).unwrap()
}

fn source(document: &str, text: &str) -> Source {
    Source {
        chunk_id: format!("{document}#0"),
        text: text.into(),
        document: document.into(),
        contributor: "0x1111111111111111111111111111111111111111".into(),
        datanet: "facts".into(),
        start: 0,
        end: text.len(),
        relevance: 0.6,
        score: 1.0,
    }
}

/// `sentence` with its first number changed to one the document does not hold (a digit added).
fn with_number_changed(sentence: &str, document: &str) -> Option<String> {
    let start = sentence.find(|c: char| c.is_ascii_digit())?;
    let len = sentence[start..].find(|c: char| !c.is_ascii_digit()).unwrap_or(sentence.len() - start);
    for extra in ["7", "3", "9"] {
        let changed = format!("{}{}{}", &sentence[..start + len], extra, &sentence[start + len..]);
        if !unheld_facts(&changed, document).is_empty() {
            return Some(changed);
        }
    }
    None
}

#[test]
fn no_altered_fact_in_the_dev_set_is_credited() {
    let policy = CitationPolicy::default();
    let (mut true_credited, mut altered, mut renamed) = (0, 0, 0);
    for entry in std::fs::read_dir(dev_set().join("documents")).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        let sources = [source(&path.to_string_lossy(), &text)];
        let body = text.lines().filter(|l| !l.starts_with('#')).collect::<Vec<_>>().join(" ");
        for sentence in body.split(". ").map(str::trim).filter(|s| s.len() > 20) {
            let sentence = format!("{}.", sentence.trim_end_matches('.'));
            // The document's own sentence, cited: credited.
            let (cited, _) = attribute(&format!("{sentence} [1]"), "", &sources, &policy);
            if cited.iter().all(|s| s.kind == Some(CitationKind::Marker)) {
                true_credited += 1;
            }
            // One number changed: never credited, by marker or post hoc.
            if let Some(changed) = with_number_changed(&sentence, &text) {
                let (checked, _) = attribute(&format!("{changed} [1]"), "", &sources, &policy);
                let credited: Vec<_> = checked.iter().filter(|s| !s.citations.is_empty()).collect();
                assert!(
                    credited.iter().all(|s| unheld_facts(&s.text, &text).is_empty()),
                    "{changed:?} credited: {checked:?}"
                );
                assert!(checked.iter().any(|s| !s.unsupported_facts.is_empty()), "{changed:?}: {checked:?}");
                altered += 1;
            }
            // A name replaced by one the document does not hold: never credited.
            let names: Vec<&str> = sentence
                .split_whitespace()
                .skip(1)
                .filter(|w| w.len() > 3 && w.chars().next().is_some_and(char::is_uppercase))
                .collect();
            if let Some(name) = names.first() {
                let renamed_sentence = sentence.replacen(name.trim_end_matches([',', '.', ';']), "Zebulon", 1);
                let (checked, _) = attribute(&format!("{renamed_sentence} [1]"), "", &sources, &policy);
                assert!(checked.iter().all(|s| s.citations.is_empty() || !s.text.contains("Zebulon")), "{checked:?}");
                renamed += 1;
            }
        }
    }
    assert!(altered > 100 && renamed > 100, "{altered} altered, {renamed} renamed");
    // True sentences are not caught by the same check (the split of the document at ". " can
    // cut after an abbreviation, so not every piece is a whole sentence).
    assert!(true_credited > 150, "{true_credited} of the documents' own sentences credited");
}

async fn ask(generator: Arc<LocalGenerator>, question: &str, sources: Vec<Source>) -> Answer {
    let request = AnswerRequest {
        question: question.into(),
        sources,
        params: GenerationParams { max_tokens: 96, ..Default::default() },
        adapters: Vec::new(),
        policy: CitationPolicy::default(),
        influence: false,
        history: Vec::new(),
    };
    answered(generator, request).await
}

#[tokio::test]
async fn the_models_answers_credit_only_sentences_their_passages_hold() {
    let dir = tempfile::tempdir().unwrap();
    let model = LocalModel::load(&smollm2(), &Device::Cpu).unwrap();
    let registry = Arc::new(AdapterRegistry::open(dir.path().join("adapters.json")).unwrap());
    let generator = Arc::new(LocalGenerator::new(model, registry, 64 << 20));
    // Questions whose passages hold same-kind distractors next to the answer; a second
    // document of the same kind offered beside the right one.
    let cases = [
        ("How long is the River Varne from its source to the sea?", "varne-river.md", "wexley-canal.md"),
        (
            "How many loans did the Quillon Public Library record in 2023?",
            "quillon-public-library.md",
            "radio-tarnmouth.md",
        ),
        (
            "Who was the master of the SS Meridel when she was wrecked?",
            "wreck-of-the-meridel.md",
            "skerrow-point-lighthouse.md",
        ),
        ("On what date did Greyholm Wind Farm open?", "greyholm-wind-farm.md", "corran-dam.md"),
    ];
    let mut quoted_or_repaired = 0;
    for (question, right, other) in cases {
        let sources = vec![source(right, &document(right)), source(other, &document(other))];
        let answer = ask(generator.clone(), question, sources.clone()).await;
        for sentence in &answer.sentences {
            if sentence.citations.is_empty() {
                continue;
            }
            let cited: String =
                sentence.citations.iter().map(|n| sources[n - 1].text.as_str()).collect::<Vec<_>>().join("\n");
            assert!(unheld_facts(&sentence.text, &cited).is_empty(), "{question}: {sentence:?} credited");
            if sentence.origin == Origin::Quoted {
                let passage = sources[sentence.citations[0] - 1].text.split_whitespace().collect::<Vec<_>>().join(" ");
                assert!(passage.contains(&sentence.text), "a quote is the passage's words: {sentence:?}");
            }
        }
        // The answer's text is its sentences: a draft that failed is not what is returned.
        if answer.draft.is_some() {
            quoted_or_repaired += 1;
            for sentence in &answer.sentences {
                assert!(answer.answer.contains(sentence.text.trim_end_matches('.')), "{answer:?}");
            }
        }
        assert_eq!(answer.grounded, !answer.citations.is_empty());
    }
    // SmolLM2 takes a neighbouring fact on some of these; the check caught it at least once.
    assert!(quoted_or_repaired > 0);
}

/// Bad input never panics: answers and passages made of the pieces the checks parse (digits,
/// separators, currency and degree signs, markers, months, accents, dashes), in random order.
#[test]
fn the_checks_take_any_text() {
    const PIECES: &[&str] = &[
        "1", "9", "0", ",", ".", " ", "  ", "\n", "$", "£", "€", "°", "%", "-", "–", "[", "]", "[^", "[1]", "[2, 3]",
        "passage", "Passage", "number", "is", "May", "Nov", "14", "2012", "km", "minutes", "million", "per", "cent",
        "Dr.", "U.S.", "e.g.", "é", "\u{301}", "日本", "’s", "'", "and", "how many", "When", "Who", ";", ":",
        "\u{202f}", "#", "A320",
    ];
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut next = |n: usize| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % n as u64) as usize
    };
    let policy = CitationPolicy::default();
    for _ in 0..2000 {
        let mut text = |len: usize| (0..len).map(|_| PIECES[next(PIECES.len())]).collect::<String>();
        let (answer, question) = (text(40), text(12));
        let sources = [source("a.md", &text(80)), source("b.md", &text(60))];
        let (sentences, stats) = attribute(&answer, &question, &sources, &policy);
        assert_eq!(stats.sentences, sentences.len());
        for s in sentences.iter().filter(|s| !s.citations.is_empty()) {
            let cited: String = s.citations.iter().map(|n| sources[n - 1].text.as_str()).collect::<Vec<_>>().join("\n");
            assert!(unheld_facts(&s.text, &cited).is_empty(), "{answer:?} -> {s:?}");
        }
    }
}
