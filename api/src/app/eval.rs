//! Answer quality on questions with known answers (`tributary eval`): each question is
//! answered as `ask` answers it (unpaid, nothing recorded), then scored against its gold
//! answer, its document and its distractors (wrong values of the same kind that its document
//! also holds).
//!
//! A sentence states a value when it holds every number, date, quantity and name of it as the
//! fact check compares them (`212 km` states "212 kilometres"). Citation quality is scored
//! ALCE-style per sentence, with the gold document standing in for ALCE's NLI judge (no NLI
//! model runs here): a sentence stating the answer is supported when one of its citations is a
//! passage of the question's document that holds the answer (recall); a citation is needed
//! when it points into the question's document (precision).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use tributary_generator::{Answer, GenerationParams, Generator, states_facts, unheld_facts};
use tributary_retriever::Passage;

use crate::app::App;
use crate::app::answers::{Question, Unpaid, answer};
use crate::app::search::CLI_SCOPE;

/// One question of a set: `questions.jsonl`, one object per line.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct GoldQuestion {
    pub id: String,
    pub question: String,
    /// The answer as its document writes it.
    pub answer: String,
    /// Other acceptable forms.
    #[serde(default)]
    pub alternatives: Vec<String>,
    /// number, date, quantity, name, money, percent or duration.
    #[serde(default)]
    pub kind: String,
    /// The file name of the document that answers it.
    pub document: String,
    /// Wrong values of the same kind that the document holds.
    #[serde(default)]
    pub distractors: Vec<String>,
}

pub fn read_questions(path: &Path) -> Result<Vec<GoldQuestion>> {
    crate::app::read_jsonl(path)
}

/// How one answer fared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// A cited sentence states the answer and cites a passage of its document that holds it.
    RightAndCited,
    /// A sentence states the answer, but no citation of it points to where it is written.
    RightUncited,
    /// A cited sentence states a distractor and not the answer: a wrong fact marked grounded.
    WrongGrounded,
    /// Cited sentences, none stating the answer or a distractor.
    GroundedWithoutAnswer,
    /// Nothing cited.
    Ungrounded,
    /// No passage was relevant enough to offer.
    NotFound,
}

/// One question's result.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Scored {
    pub id: String,
    pub kind: String,
    pub question: String,
    pub expected: String,
    pub outcome: Outcome,
    pub answer: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub draft: Option<String>,
    /// Documents of the passages cited.
    pub cited_documents: Vec<String>,
    pub sentences: usize,
    pub cited_sentences: usize,
    /// Sentences stating the answer, and those of them whose citations hold it.
    pub answer_sentences: usize,
    pub answer_sentences_supported: usize,
    /// (sentence, passage) citations, and those into the question's document.
    pub citations: usize,
    pub citations_in_document: usize,
    pub fact_failures: usize,
    pub repaired: usize,
    pub quoted: usize,
    pub dropped: usize,
    /// What the model wrote, before the checks revised it, states the answer; states a
    /// distractor and not the answer.
    pub draft_right: bool,
    pub draft_wrong: bool,
}

fn file_name(document: &str) -> &str {
    Path::new(document).file_name().and_then(|n| n.to_str()).unwrap_or(document)
}

/// Whether `text` states `value`: every fact of it, compared normalized; a value with no fact
/// to compare (a lower-case phrase) by case-insensitive containment.
pub fn states(text: &str, value: &str) -> bool {
    if states_facts(value) {
        unheld_facts(value, text).is_empty()
    } else {
        text.to_lowercase().contains(&value.to_lowercase())
    }
}

/// Scores `answer` to `q`; `passages` are those retrieved for it (the cited chunks' texts).
pub fn score(q: &GoldQuestion, answer: &Answer, passages: &[Passage]) -> Scored {
    let forms: Vec<&str> =
        std::iter::once(q.answer.as_str()).chain(q.alternatives.iter().map(String::as_str)).collect();
    let right = |text: &str| forms.iter().any(|f| states(text, f));
    let in_document =
        |n: &usize| answer.citations.iter().find(|c| c.n == *n).filter(|c| file_name(&c.document) == q.document);
    let holds_answer = |n: &usize| {
        in_document(n).is_some_and(|c| {
            passages.iter().find(|p| p.chunk_id == c.chunk_id && p.datanet == c.datanet).is_some_and(|p| right(&p.text))
        })
    };
    let drafted = answer.draft.as_deref().unwrap_or(&answer.answer);
    let draft_right = right(drafted);
    let mut scored = Scored {
        id: q.id.clone(),
        kind: q.kind.clone(),
        question: q.question.clone(),
        expected: q.answer.clone(),
        outcome: Outcome::Ungrounded,
        answer: answer.answer.clone(),
        draft: answer.draft.clone(),
        cited_documents: answer.citations.iter().map(|c| file_name(&c.document).to_string()).collect(),
        sentences: answer.sentences.len(),
        cited_sentences: 0,
        answer_sentences: 0,
        answer_sentences_supported: 0,
        citations: 0,
        citations_in_document: 0,
        fact_failures: answer.stats.fact_failures,
        repaired: answer.stats.repaired,
        quoted: answer.stats.quoted,
        dropped: answer.stats.dropped,
        draft_right,
        draft_wrong: !draft_right && q.distractors.iter().any(|d| states(drafted, d)),
    };
    scored.cited_documents.dedup();
    let (mut right_cited, mut right_any, mut wrong, mut grounded) = (false, false, false, false);
    for sentence in &answer.sentences {
        let cited = !sentence.citations.is_empty();
        let states_answer = right(&sentence.text);
        let states_distractor = q.distractors.iter().any(|d| states(&sentence.text, d));
        scored.cited_sentences += usize::from(cited);
        scored.citations += sentence.citations.len();
        scored.citations_in_document += sentence.citations.iter().filter(|n| in_document(n).is_some()).count();
        if states_answer {
            scored.answer_sentences += 1;
            right_any = true;
            if sentence.citations.iter().any(holds_answer) {
                scored.answer_sentences_supported += 1;
                right_cited = true;
            }
        } else if cited && states_distractor {
            wrong = true;
        }
        grounded |= cited;
    }
    scored.outcome = match () {
        _ if answer.sources_offered == 0 => Outcome::NotFound,
        _ if right_cited => Outcome::RightAndCited,
        _ if wrong => Outcome::WrongGrounded,
        _ if right_any => Outcome::RightUncited,
        _ if grounded => Outcome::GroundedWithoutAnswer,
        _ => Outcome::Ungrounded,
    };
    scored
}

/// Totals over a set.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Report {
    pub questions: usize,
    pub outcomes: BTreeMap<Outcome, usize>,
    /// Share of questions answered right and cited.
    pub right_and_cited: f64,
    /// Questions per kind, and those answered right and cited.
    pub by_kind: BTreeMap<String, (usize, usize)>,
    pub sentences: usize,
    pub cited_sentences: usize,
    /// ALCE-style, the gold document as judge: sentences stating the answer whose citations
    /// hold it, over sentences stating it.
    pub citation_recall: f64,
    /// Citations into the question's document, over all citations.
    pub citation_precision: f64,
    /// Sentences the fact check caught (a fact no supporting passage holds), and what became
    /// of them.
    pub fact_failures: usize,
    pub repaired: usize,
    pub quoted: usize,
    pub dropped: usize,
    /// Cited sentences stating a distractor and not the answer (target 0).
    pub wrong_grounded: usize,
    /// Answers whose draft (the model's text before the checks) states the answer, and those
    /// whose draft states a distractor instead: what generation alone would have said.
    pub draft_right: usize,
    pub draft_wrong: usize,
}

pub fn report(scored: &[Scored]) -> Report {
    let mut r = Report { questions: scored.len(), ..Report::default() };
    let (mut answer_sentences, mut supported, mut citations, mut in_document) = (0, 0, 0, 0);
    for s in scored {
        *r.outcomes.entry(s.outcome).or_default() += 1;
        let kind = r.by_kind.entry(s.kind.clone()).or_default();
        kind.0 += 1;
        kind.1 += usize::from(s.outcome == Outcome::RightAndCited);
        r.sentences += s.sentences;
        r.cited_sentences += s.cited_sentences;
        answer_sentences += s.answer_sentences;
        supported += s.answer_sentences_supported;
        citations += s.citations;
        in_document += s.citations_in_document;
        r.fact_failures += s.fact_failures;
        r.repaired += s.repaired;
        r.quoted += s.quoted;
        r.dropped += s.dropped;
        r.wrong_grounded += usize::from(s.outcome == Outcome::WrongGrounded);
        r.draft_right += usize::from(s.draft_right);
        r.draft_wrong += usize::from(s.draft_wrong);
    }
    let share = |a: usize, b: usize| if b == 0 { 0.0 } else { a as f64 / b as f64 };
    r.right_and_cited = share(r.outcomes.get(&Outcome::RightAndCited).copied().unwrap_or(0), r.questions);
    r.citation_recall = share(supported, answer_sentences);
    r.citation_precision = share(in_document, citations);
    r
}

/// How the questions are asked.
pub struct Asking<'a> {
    pub datanets: &'a [String],
    pub k: usize,
    pub params: GenerationParams,
    pub adapters: Vec<(String, f32)>,
}

/// Answers each question (unpaid, nothing recorded) and scores it; `each` sees every result.
pub async fn run(
    app: &App,
    generator: Arc<dyn Generator>,
    questions: &[GoldQuestion],
    asking: &Asking<'_>,
    each: &mut (dyn FnMut(&Scored) + Send),
) -> Result<Vec<Scored>> {
    let mut out = Vec::with_capacity(questions.len());
    for q in questions {
        let question = Question {
            text: &q.question,
            datanets: asking.datanets,
            contributors: &[],
            k: asking.k,
            params: asking.params.clone(),
            adapters: asking.adapters.clone(),
            payer: None,
            unpaid: Unpaid::Free,
            scope: CLI_SCOPE,
            history: Vec::new(),
        };
        let answered = answer(app, generator.clone(), question, &mut |_| true)
            .await
            .with_context(|| format!("question {}", q.id))?;
        let scored = score(q, &answered.answer, &answered.passages);
        each(&scored);
        out.push(scored);
    }
    Ok(out)
}
