//! Cited answers: numbered passages in, sentences with citations out.
//!
//! The model is asked to cite with `[n]`. Its markers are checked: a number that names no
//! given passage is dropped and counted, and so is a marker to a passage that shares no content
//! with the sentence (small models cite by habit). A sentence left without a valid marker is
//! attributed post hoc to the passages whose content words cover enough of it, and marked so.
//! Then the facts: every number, date, quantity and proper name of a sentence must occur in a
//! passage it cites ([`crate::answers::facts`]); a sentence stating one that none of them holds
//! is unsupported whatever its words share. A sentence nothing supports credits no one. So every
//! credited source was used and holds what the sentence says, and a used source is credited.

use std::collections::HashSet;

use crate::answers::evidence::{Evidence, Span};
use crate::answers::facts::{Holdings, facts};
use crate::answers::sentences::split_answer;
use crate::answers::words::content_words;
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
    /// The sentence is the passage's own words, quoted in place of a generated sentence that
    /// failed the checks.
    Quote,
}

/// Where a sentence of the final answer came from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Origin {
    /// As the model wrote it.
    #[default]
    Generated,
    /// Written again by the model, once, from the passage sentence that supports it, after the
    /// first version failed the fact check.
    Repaired,
    /// Quoted from a passage.
    Quoted,
}

impl Origin {
    fn is_generated(&self) -> bool {
        *self == Origin::Generated
    }
}

/// One sentence of the answer and the passages (1-based numbers) it cites.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CitedSentence {
    /// The sentence without its markers.
    pub text: String,
    pub citations: Vec<usize>,
    pub kind: Option<CitationKind>,
    /// Numbers, dates and names the sentence states that none of the passages that would
    /// support it holds: the reason an otherwise supported sentence is not.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unsupported_facts: Vec<String>,
    #[serde(default, skip_serializing_if = "Origin::is_generated")]
    pub origin: Origin,
}

impl CitedSentence {
    /// A sentence that credits no one.
    pub fn uncited(text: impl Into<String>) -> CitedSentence {
        CitedSentence {
            text: text.into(),
            citations: Vec::new(),
            kind: None,
            unsupported_facts: Vec::new(),
            origin: Origin::Generated,
        }
    }
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
    /// Sentences whose words a passage supports but which state a number, date or name that
    /// no such passage holds.
    #[serde(default)]
    pub fact_failures: usize,
    /// Failed sentences the model wrote again and that then passed.
    #[serde(default)]
    pub repaired: usize,
    /// Failed or unsupported sentences replaced by a quote of the passage sentence that answers.
    #[serde(default)]
    pub quoted: usize,
    /// Failed sentences left out of the answer.
    #[serde(default)]
    pub dropped: usize,
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
    let texts: Vec<(usize, &str)> = sources.iter().map(|(n, s)| (*n, s.text.as_str())).collect();
    numbered_texts(question, &texts)
}

/// [`numbered_messages`] over passages' texts.
pub fn numbered_texts(question: &str, passages: &[(usize, &str)]) -> Vec<ChatMessage> {
    // Markdown heading marks invite the model to answer in markdown: the words are enough.
    let clean = |t: &str| t.split_whitespace().filter(|w| !w.chars().all(|c| c == '#')).collect::<Vec<_>>().join(" ");
    let mut prompt = String::from("Passages:\n");
    for (n, text) in passages {
        prompt.push_str(&format!("[{n}] {}\n\n", clean(text)));
    }
    prompt.push_str(&format!("{INSTRUCTION}\nQuestion: {}", question.trim()));
    vec![ChatMessage::user(prompt)]
}

/// What the answer says when no passage is relevant.
pub const NOT_FOUND: &str = "I could not find an answer to that in the Datanet.";

/// Share of `sentence`'s content words found in `passage`.
fn support(sentence: &HashSet<String>, passage: &HashSet<String>) -> f32 {
    if sentence.is_empty() {
        return 0.0;
    }
    sentence.iter().filter(|w| passage.contains(*w)).count() as f32 / sentence.len() as f32
}

/// Checks the model's markers in `text` against `sources` and attributes what is left.
///
/// Support is measured on what a sentence adds to the `question` and the instruction: words
/// the prompt already holds prove nothing ("The longest tributary in North America is the
/// Amazon" shares four words with a passage about the Missouri, and none of what it claims).
pub fn attribute(
    text: &str,
    question: &str,
    sources: &[Source],
    policy: &CitationPolicy,
) -> (Vec<CitedSentence>, CitationStats) {
    let checker = Checker::new(question, sources, policy);
    let mut stats = CitationStats::default();
    let mut out = Vec::new();
    for (i, (sentence, markers)) in split_answer(text).into_iter().enumerate() {
        out.push(checker.check(&sentence, &markers, i == 0, &mut stats));
    }
    (out, stats)
}

/// The passages and the prompt's words, prepared once per answer.
pub(crate) struct Checker<'a> {
    policy: &'a CitationPolicy,
    words: Vec<HashSet<String>>,
    holdings: Vec<Holdings>,
    asked: HashSet<String>,
    evidence: Evidence,
}

impl<'a> Checker<'a> {
    pub(crate) fn new(question: &str, sources: &[Source], policy: &'a CitationPolicy) -> Checker<'a> {
        let mut asked = content_words(question);
        asked.extend(content_words(INSTRUCTION));
        Checker {
            policy,
            words: sources.iter().map(|s| content_words(&s.text)).collect(),
            holdings: sources.iter().map(|s| Holdings::of(&s.text)).collect(),
            asked,
            evidence: Evidence::new(question, &sources.iter().map(|s| s.text.as_str()).collect::<Vec<_>>()),
        }
    }

    /// Whether the sentence states a fact of the kind asked ([`Evidence::gives_asked`]).
    pub(crate) fn gives_asked(&self, sentence: &str) -> bool {
        self.evidence.gives_asked(sentence)
    }

    /// Whether the sentence presents itself as the answer ([`Evidence::answers`]).
    pub(crate) fn answers(&self, sentence: &str, first: bool) -> bool {
        self.evidence.answers(sentence, first)
    }

    /// The passage sentence that best answers the question ([`Evidence::best_sentence`]).
    pub(crate) fn best_sentence(&self, claim: Option<&str>) -> Option<Span> {
        self.evidence.best_sentence(claim)
    }

    /// What `sentence` adds to the prompt.
    fn new_words(&self, sentence: &str) -> HashSet<String> {
        content_words(sentence).difference(&self.asked).cloned().collect()
    }

    /// One sentence with the markers the model gave it, checked; `stats` counted. `first`: it
    /// opens the answer (where an answer to the question is expected).
    pub(crate) fn check(
        &self,
        sentence: &str,
        markers: &[usize],
        first: bool,
        stats: &mut CitationStats,
    ) -> CitedSentence {
        let mut checked = self.check_support(sentence, markers, stats);
        // Supported, and answering: with the fact the question points to?
        if checked.kind.is_some() && self.evidence.answers(sentence, first) {
            let misplaced = self.evidence.misplaced(sentence, &checked.citations);
            if !misplaced.is_empty() {
                checked = CitedSentence { unsupported_facts: misplaced, ..CitedSentence::uncited(sentence) };
            }
        }
        stats.sentences += 1;
        match checked.kind {
            Some(CitationKind::Marker) => stats.marker += 1,
            Some(CitationKind::PostHoc) => stats.post_hoc += 1,
            Some(CitationKind::Quote) => {}
            None => {
                stats.unsupported += 1;
                stats.fact_failures += usize::from(!checked.unsupported_facts.is_empty());
            }
        }
        checked
    }

    /// [`Checker::check`] without the question's part: the words and facts of the sentence
    /// against the passages it cites or that support it. Counts the markers it drops.
    fn check_support(&self, sentence: &str, markers: &[usize], stats: &mut CitationStats) -> CitedSentence {
        let words = self.new_words(sentence);
        let stated = facts(sentence);
        let unheld = |cited: &[usize]| -> Vec<String> {
            stated
                .iter()
                .filter(|f| !cited.iter().any(|&n| self.holdings[n - 1].holds(f)))
                .map(|f| f.written.clone())
                .collect()
        };
        let mut cited: Vec<usize> = Vec::new();
        for &n in markers {
            if n == 0 || n > self.words.len() {
                stats.dropped_out_of_range += 1;
            } else if support(&words, &self.words[n - 1]) < self.policy.marker_support {
                stats.dropped_unsupported += 1;
            } else if !cited.contains(&n) {
                cited.push(n);
            }
        }
        let mut considered = cited.clone();
        if !cited.is_empty() {
            if unheld(&cited).is_empty() {
                return CitedSentence {
                    citations: cited,
                    kind: Some(CitationKind::Marker),
                    ..CitedSentence::uncited(sentence)
                };
            }
            // Cited where the fact is not: the post-hoc search below may find where it is.
            stats.dropped_unsupported += cited.len();
        }
        // Nothing beyond the prompt ("Yes.") is no support.
        let scores: Vec<f32> = self.words.iter().map(|p| support(&words, p)).collect();
        let best = scores.iter().cloned().fold(0.0f32, f32::max);
        if !words.is_empty() && best >= self.policy.post_hoc_support {
            let mut chosen: Vec<usize> = (1..=scores.len()).filter(|&n| scores[n - 1] >= best - 0.05).collect();
            // A fact the best passages lack may be in another that also supports the sentence.
            let mut others: Vec<usize> = (1..=scores.len())
                .filter(|&n| !chosen.contains(&n) && scores[n - 1] >= self.policy.post_hoc_support)
                .collect();
            others.sort_by(|a, b| scores[b - 1].total_cmp(&scores[a - 1]));
            for n in others {
                let missing = unheld(&chosen);
                if missing.is_empty() {
                    break;
                }
                if stated.iter().any(|f| missing.contains(&f.written) && self.holdings[n - 1].holds(f)) {
                    chosen.push(n);
                }
            }
            chosen.sort_unstable();
            if unheld(&chosen).is_empty() {
                return CitedSentence {
                    citations: chosen,
                    kind: Some(CitationKind::PostHoc),
                    ..CitedSentence::uncited(sentence)
                };
            }
            considered.extend(chosen);
        }
        // What it states that the passages it might cite lack; with none, that no passage holds.
        if considered.is_empty() {
            considered = (1..=self.words.len()).collect();
        }
        CitedSentence { unsupported_facts: unheld(&considered), ..CitedSentence::uncited(sentence) }
    }
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
                dropped_unsupported: 2,
                ..CitationStats::default()
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
    fn a_fact_no_cited_passage_holds_makes_the_sentence_unsupported() {
        let sources = vec![
            source("The Varne rises at 1,840 metres on Mount Osric and flows 212 kilometres to the sea."),
            source("The Lesk ferry crossing takes 35 minutes; in winter the return takes 50 minutes."),
        ];
        let policy = CitationPolicy::default();
        let question = "How long is the Varne?";
        // The example: words from the passage, numbers it does not hold.
        let (s, stats) = attribute(
            "The Varne is approximately 1,840 metres in height and flows an average of 71.69 kilometres [1].",
            question,
            &sources,
            &policy,
        );
        assert!(s[0].citations.is_empty(), "{s:?}");
        assert_eq!(s[0].unsupported_facts, ["71.69 kilometres"]);
        assert_eq!((stats.unsupported, stats.fact_failures, stats.marker), (1, 1, 0));
        // The right figure in other units of writing passes, by marker or post hoc.
        let (s, _) = attribute("The Varne flows 212 km to the sea [1].", question, &sources, &policy);
        assert_eq!((s[0].citations.as_slice(), s[0].kind), (&[1][..], Some(CitationKind::Marker)));
        let (s, _) = attribute("The Varne flows 212 km to the sea.", question, &sources, &policy);
        assert_eq!((s[0].citations.as_slice(), s[0].kind), (&[1][..], Some(CitationKind::PostHoc)));
        // A digit dropped from the neighbouring clause's number.
        let (s, _) =
            attribute("The Lesk ferry crossing takes 3 minutes [2].", "How long is the crossing?", &sources, &policy);
        assert!(s[0].citations.is_empty());
        assert_eq!(s[0].unsupported_facts, ["3 minutes"]);
        // A name the passage does not hold.
        let (s, _) = attribute("The Varne rises on Mount Olympus [1].", question, &sources, &policy);
        assert_eq!(s[0].unsupported_facts, ["Olympus"]);
        // A marker to the wrong passage: the fact is found where it is.
        let (s, _) = attribute(
            "The ferry crossing of the Lesk takes 35 minutes [1].",
            "How long is the crossing?",
            &sources,
            &policy,
        );
        assert_eq!((s[0].citations.as_slice(), s[0].kind), (&[2][..], Some(CitationKind::PostHoc)));
    }

    #[test]
    fn echoes_of_the_prompt_neither_cite_nor_dilute() {
        let sources =
            vec![source("The Varne rises at 1,840 metres on Mount Osric and flows 212 kilometres to the sea.")];
        let policy = CitationPolicy::default();
        // "and the passage number is 1" is a marker, not words or a number to check.
        let (s, stats) = attribute(
            "The Varne flows 212 kilometres to the sea, and the passage number is 1.",
            "How long is the Varne?",
            &sources,
            &policy,
        );
        assert_eq!(s[0].text, "The Varne flows 212 kilometres to the sea.");
        assert_eq!((s[0].citations.as_slice(), s[0].kind), (&[1][..], Some(CitationKind::Marker)));
        assert_eq!(stats.unsupported, 0);
        // Restating the question supports nothing.
        let (s, _) = attribute("Question: How long is the Varne?", "How long is the Varne?", &sources, &policy);
        assert_eq!(s[0].kind, None);
        assert!(s[0].unsupported_facts.is_empty());
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
