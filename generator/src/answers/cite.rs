//! Cited answers: numbered passages in, sentences with citations out.
//!
//! The model is asked to cite with `[n]`. Its markers are checked: a number that names no
//! given passage is dropped and counted, and so is a marker to a passage that shares no content
//! with the sentence (small models cite by habit). A sentence left without a valid marker is
//! attributed post hoc to the passages whose content words cover enough of it, and marked so;
//! a sentence nothing supports credits no one. So every credited source was used, and a used
//! source is credited.

use std::collections::HashSet;

use crate::runtime::chat::ChatMessage;

/// A retrieved passage offered to the model.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Source {
    pub chunk_id: String,
    pub text: String,
    pub document: String,
    pub contributor: String,
    pub datanet: String,
    /// Byte offsets of the chunk in its document.
    pub start: usize,
    pub end: usize,
    /// How well it matches the question: cosine similarity of the embeddings.
    pub relevance: f32,
    /// The retriever's ranking score (fused), comparable within one result list.
    pub score: f32,
}

/// Thresholds of the citation checks.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CitationPolicy {
    /// Below this relevance a passage is not offered at all; with none left the answer says
    /// that the Datanet does not hold one.
    pub min_relevance: f32,
    /// Share of a sentence's content words a passage must contain for a post-hoc citation.
    pub post_hoc_support: f32,
    /// Share a passage must contain for the model's own marker to stand.
    pub marker_support: f32,
    /// Passages scoring below this fraction of the best one are not offered: small models
    /// answer from the wrong passage when given weak ones (SmolLM2-135M named the Mississippi
    /// instead of the Missouri with two passages, and answered right with one).
    pub min_score_ratio: f32,
}

impl Default for CitationPolicy {
    fn default() -> Self {
        // Chosen on the sample Datanet and SciFact questions: MiniLM cosines of unrelated
        // question/passage pairs stay under 0.2; a sentence copied or paraphrased from a passage
        // shares well over half of its content words, one stitched from general knowledge rarely does.
        CitationPolicy { min_relevance: 0.2, post_hoc_support: 0.5, marker_support: 0.2, min_score_ratio: 0.5 }
    }
}

/// How a sentence's citation was established.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CitationKind {
    /// The model wrote `[n]` and the passage supports the sentence.
    Marker,
    /// No valid marker; attributed by content overlap.
    PostHoc,
}

/// One sentence of the answer and the passages (1-based numbers) it cites.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CitedSentence {
    /// The sentence without its markers.
    pub text: String,
    pub citations: Vec<usize>,
    pub kind: Option<CitationKind>,
}

/// What the checks found, for reporting citation quality.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CitationStats {
    pub sentences: usize,
    /// Sentences cited by a valid marker.
    pub marker: usize,
    /// Sentences cited post hoc.
    pub post_hoc: usize,
    /// Sentences nothing supports.
    pub unsupported: usize,
    /// Markers naming a passage that was not given.
    pub dropped_out_of_range: usize,
    /// Markers to a passage that does not support their sentence.
    pub dropped_unsupported: usize,
}

/// Passages that fit: the highest-ranked first, until `budget` tokens are used.
pub fn select_sources(
    sources: &[Source],
    policy: &CitationPolicy,
    budget: usize,
    count_tokens: &dyn Fn(&str) -> usize,
) -> Vec<Source> {
    let mut used = 0;
    let mut chosen = Vec::new();
    let best = sources.iter().map(|s| s.score).fold(f32::MIN, f32::max);
    let strong = |s: &&Source| s.relevance >= policy.min_relevance && s.score >= best * policy.min_score_ratio;
    for source in sources.iter().filter(strong) {
        let cost = count_tokens(&source.text) + 8;
        if used + cost > budget {
            // Lower-ranked passages are dropped first: stop at the first that does not fit.
            break;
        }
        used += cost;
        chosen.push(source.clone());
    }
    chosen
}

/// What the model is asked, after the passages and before the question.
pub const INSTRUCTION: &str =
    "Using only the passages above, answer in one sentence and cite the passage number like [1].";

/// The conversation asking `question` about `sources` (numbered from 1 in order): one user
/// message, passages first, then the instruction and the question. Of the layouts tried with
/// SmolLM2-135M on the sample Datanet (instructions as a system message, passages in the system
/// message, this one), this one answered most questions from the right passage.
pub fn messages(question: &str, sources: &[Source]) -> Vec<ChatMessage> {
    let numbered: Vec<(usize, &Source)> = sources.iter().enumerate().map(|(i, s)| (i + 1, s)).collect();
    numbered_messages(question, &numbered)
}

/// [`messages`] with explicit passage numbers (a passage left out keeps its number free).
pub fn numbered_messages(question: &str, sources: &[(usize, &Source)]) -> Vec<ChatMessage> {
    // Markdown heading marks invite the model to answer in markdown: the words are enough.
    let clean = |t: &str| t.split_whitespace().filter(|w| !w.chars().all(|c| c == '#')).collect::<Vec<_>>().join(" ");
    let mut prompt = String::from("Passages:\n");
    for (n, source) in sources {
        prompt.push_str(&format!("[{n}] {}\n\n", clean(&source.text)));
    }
    prompt.push_str(&format!("{INSTRUCTION}\nQuestion: {}", question.trim()));
    vec![ChatMessage::user(prompt)]
}

/// What the answer says when no passage is relevant.
pub const NOT_FOUND: &str = "I could not find an answer to that in the Datanet.";

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

/// Lower-cased content words (numbers kept, stopwords and one/two-letter words dropped), with
/// a crude plural strip so "rivers" meets "river".
fn content_words(text: &str) -> HashSet<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(|w| w.to_lowercase())
        .filter(|w| w.chars().all(|c| c.is_numeric()) || (w.chars().count() > 2 && !STOPWORDS.contains(&w.as_str())))
        .map(|w| if w.len() > 4 && w.ends_with('s') && !w.ends_with("ss") { w[..w.len() - 1].to_string() } else { w })
        .collect()
}

/// Share of `sentence`'s content words found in `passage`.
fn support(sentence: &HashSet<String>, passage: &HashSet<String>) -> f32 {
    if sentence.is_empty() {
        return 0.0;
    }
    sentence.iter().filter(|w| passage.contains(*w)).count() as f32 / sentence.len() as f32
}

/// Splits `text` into sentences, each with the marker numbers found in it. Markers written
/// after a sentence's full stop ("... river. [2]") belong to that sentence.
fn split_sentences(text: &str) -> Vec<(String, Vec<usize>)> {
    fn close(sentences: &mut Vec<(String, Vec<usize>)>, current: &mut String, markers: &mut Vec<usize>) {
        // Removing a marker can leave "Alps ." behind: no space before closing punctuation.
        let mut sentence = current.split_whitespace().collect::<Vec<_>>().join(" ");
        for p in [" .", " ,", " !", " ?", " ;", " :"] {
            sentence = sentence.replace(p, &p[1..]);
        }
        if !sentence.is_empty() {
            sentences.push((sentence, std::mem::take(markers)));
        } else if let Some(last) = sentences.last_mut() {
            last.1.append(markers);
        }
        current.clear();
    }
    let mut sentences: Vec<(String, Vec<usize>)> = Vec::new();
    let mut current = String::new();
    let mut markers = Vec::new();
    let mut rest = text;
    while let Some(c) = rest.chars().next() {
        if c == '['
            && let Some(close_at) = rest.find(']')
        {
            let numbers: Option<Vec<usize>> = rest[1..close_at].split(',').map(|n| n.trim().parse().ok()).collect();
            if let Some(numbers) = numbers.filter(|n| !n.is_empty()) {
                match sentences.last_mut() {
                    // Right after a closed sentence: the marker is its trailing citation.
                    Some((_, last)) if current.trim().is_empty() => last.extend(numbers),
                    _ => markers.extend(numbers),
                }
                rest = &rest[close_at + 1..];
                continue;
            }
        }
        current.push(c);
        rest = &rest[c.len_utf8()..];
        let next = rest.chars().next();
        if c == '\n' || (matches!(c, '.' | '!' | '?') && next.is_none_or(|n| n.is_whitespace() || n == '[')) {
            close(&mut sentences, &mut current, &mut markers);
        }
    }
    close(&mut sentences, &mut current, &mut markers);
    sentences
}

/// Checks the model's markers in `text` against `sources` and attributes what is left.
///
/// Support is measured on what a sentence adds to the `question`: words the question already
/// holds prove nothing ("The longest tributary in North America is the Amazon" shares four
/// words with a passage about the Missouri, and none of what it claims).
pub fn attribute(
    text: &str,
    question: &str,
    sources: &[Source],
    policy: &CitationPolicy,
) -> (Vec<CitedSentence>, CitationStats) {
    let passage_words: Vec<HashSet<String>> = sources.iter().map(|s| content_words(&s.text)).collect();
    let asked = content_words(question);
    let mut stats = CitationStats::default();
    let mut out = Vec::new();
    for (sentence, markers) in split_sentences(text) {
        let words: HashSet<String> = content_words(&sentence).difference(&asked).cloned().collect();
        let mut cited: Vec<usize> = Vec::new();
        for n in markers {
            if n == 0 || n > sources.len() {
                stats.dropped_out_of_range += 1;
            } else if support(&words, &passage_words[n - 1]) < policy.marker_support {
                stats.dropped_unsupported += 1;
            } else if !cited.contains(&n) {
                cited.push(n);
            }
        }
        let kind = if !cited.is_empty() {
            stats.marker += 1;
            Some(CitationKind::Marker)
        } else {
            let scores: Vec<f32> = passage_words.iter().map(|p| support(&words, p)).collect();
            let best = scores.iter().cloned().fold(0.0f32, f32::max);
            // Nothing beyond the question ("Yes.") or not supported: no credit.
            if !words.is_empty() && best >= policy.post_hoc_support {
                cited = (1..=sources.len()).filter(|&n| scores[n - 1] >= best - 0.05).collect();
                stats.post_hoc += 1;
                Some(CitationKind::PostHoc)
            } else {
                stats.unsupported += 1;
                None
            }
        };
        stats.sentences += 1;
        out.push(CitedSentence { text: sentence, citations: cited, kind });
    }
    (out, stats)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(text: &str) -> Source {
        Source {
            chunk_id: format!("id-{}", text.len()),
            text: text.into(),
            document: "doc".into(),
            contributor: "0x0".into(),
            datanet: "d".into(),
            start: 0,
            end: text.len(),
            relevance: 0.5,
            score: 1.0,
        }
    }

    #[test]
    fn markers_attach_to_their_sentence_even_after_the_stop() {
        let s = split_sentences("The Rhine rises in the Alps [1]. It flows north. [2][3] Done");
        assert_eq!(s[0], ("The Rhine rises in the Alps.".into(), vec![1]));
        assert_eq!(s[1], ("It flows north.".into(), vec![2, 3]));
        assert_eq!(s[2], ("Done".into(), vec![]));
        let s = split_sentences("Both [1, 2]. Brackets [like this] stay.");
        assert_eq!(s[0].1, vec![1, 2]);
        assert_eq!(s[1].0, "Brackets [like this] stay.");
    }

    #[test]
    fn invalid_and_unsupported_markers_are_dropped_and_counted() {
        let sources = vec![
            source("The Rhine rises in the Swiss Alps and flows to the North Sea."),
            source("Bread needs flour, water, salt and yeast."),
        ];
        let text = "The Rhine rises in the Swiss Alps [1][7]. Bread needs flour and yeast [1]. Cats purr loudly [2].";
        let (sentences, stats) = attribute(text, "Where does the Rhine rise?", &sources, &CitationPolicy::default());
        assert_eq!(sentences[0].citations, vec![1]);
        assert_eq!(sentences[0].kind, Some(CitationKind::Marker));
        // [1] does not support the bread sentence: dropped, then attributed to passage 2 post hoc.
        assert_eq!(sentences[1].citations, vec![2]);
        assert_eq!(sentences[1].kind, Some(CitationKind::PostHoc));
        // Nothing supports the cat sentence: no credit.
        assert!(sentences[2].citations.is_empty());
        assert_eq!(sentences[2].kind, None);
        assert_eq!(
            stats,
            CitationStats {
                sentences: 3,
                marker: 1,
                post_hoc: 1,
                unsupported: 1,
                dropped_out_of_range: 1,
                dropped_unsupported: 2
            }
        );
    }

    #[test]
    fn restating_the_question_is_not_support() {
        let sources = vec![source("The Missouri River is the longest tributary in North America.")];
        let question = "Which river is the longest tributary in North America?";
        let (wrong, stats) = attribute(
            "The longest tributary in North America is the Amazon.",
            question,
            &sources,
            &CitationPolicy::default(),
        );
        assert!(wrong[0].citations.is_empty(), "{wrong:?}");
        assert_eq!(stats.unsupported, 1);
        let (right, _) = attribute(
            "The Missouri River is the longest tributary in North America.",
            question,
            &sources,
            &CitationPolicy::default(),
        );
        assert_eq!(right[0].citations, vec![1]);
        assert_eq!(right[0].kind, Some(CitationKind::PostHoc));
    }

    #[test]
    fn budget_drops_the_lowest_ranked_and_irrelevant_passages() {
        let mut low = source("irrelevant");
        low.relevance = 0.05;
        let mut weak = source("ranked far below the best");
        weak.score = 0.3;
        let sources = vec![source("first passage here"), low, source("second one"), weak, source("third passage text")];
        let words = |t: &str| t.split_whitespace().count();
        let chosen = select_sources(&sources, &CitationPolicy::default(), 23, &words);
        let texts: Vec<&str> = chosen.iter().map(|s| s.text.as_str()).collect();
        assert_eq!(texts, ["first passage here", "second one"]);
        let prompt = messages("Why?", &chosen);
        assert_eq!(prompt.len(), 1);
        assert!(prompt[0].content.contains("[2] second one") && prompt[0].content.ends_with("Question: Why?"));
    }
}
