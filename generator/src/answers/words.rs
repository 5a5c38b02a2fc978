//! Content words: what a sentence says beyond its grammar, compared between an answer, its
//! question and its passages.

use std::collections::HashSet;

const STOPWORDS: &[&str] = &[
    "the",
    "and",
    "for",
    "are",
    "was",
    "were",
    "with",
    "that",
    "this",
    "from",
    "its",
    "it's",
    "into",
    "than",
    "then",
    "they",
    "them",
    "their",
    "there",
    "these",
    "those",
    "has",
    "have",
    "had",
    "not",
    "but",
    "can",
    "could",
    "would",
    "should",
    "will",
    "also",
    "been",
    "being",
    "which",
    "who",
    "whom",
    "what",
    "when",
    "where",
    "why",
    "how",
    "all",
    "any",
    "each",
    "more",
    "most",
    "many",
    "much",
    "other",
    "some",
    "such",
    "only",
    "own",
    "same",
    "very",
    "you",
    "your",
    "our",
    "his",
    "her",
    "she",
    "him",
    "about",
    "over",
    "under",
    "between",
    "through",
    "during",
    "before",
    "after",
    "above",
    "below",
    "out",
    "off",
    "again",
    "further",
    "once",
    "here",
    "both",
    "few",
    "because",
    "until",
    "while",
    "does",
    "did",
    "doing",
    "may",
    "might",
    "must",
    "one",
    "passage",
    "passages",
    "answer",
    "question",
    "according",
];

/// Lower-cased content words (numbers kept, stopwords and one/two-letter words dropped),
/// lightly stemmed so that "rivers" meets "river" and "recorded" meets "record".
pub(crate) fn content_words(text: &str) -> HashSet<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(|w| w.to_lowercase())
        .filter(|w| w.chars().all(|c| c.is_numeric()) || (w.chars().count() > 2 && !STOPWORDS.contains(&w.as_str())))
        .map(|w| stem(&w))
        .collect()
}

/// A light suffix strip (plural, past, gerund): enough for an answer and a passage to meet
/// on the same word written in another form; not a linguistic stemmer.
fn stem(word: &str) -> String {
    if !word.is_ascii() || word.chars().any(|c| c.is_ascii_digit()) {
        return word.to_string();
    }
    let n = word.len();
    let cut = if n > 5 && word.ends_with("ing") {
        3
    } else if n > 4 && word.ends_with("ied") {
        return format!("{}y", &word[..n - 3]);
    } else if n > 4 && word.ends_with("ed") && !word.ends_with("eed") {
        2
    } else if n > 4 && word.ends_with("ies") {
        return format!("{}y", &word[..n - 3]);
    } else if n > 4 && word.ends_with('s') && !word.ends_with("ss") && !word.ends_with("us") {
        1
    } else {
        0
    };
    word[..n - cut].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms_of_a_word_meet() {
        let a = content_words("The library recorded 241,000 loans; the rivers were mapped.");
        let b = content_words("How many loans did the library record? Which river was mapping it?");
        for w in ["library", "record", "loan", "river", "mapp"] {
            assert!(a.contains(w) && b.contains(w), "{w}: {a:?} {b:?}");
        }
        assert!(a.contains("241") && a.contains("000"));
        assert!(!a.contains("the") && !a.contains("were"));
    }
}
