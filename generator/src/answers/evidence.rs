//! Which part of the passages answers the question. A fact can be in a cited passage and still
//! be the wrong answer: asked how long a river is, a small model may give the altitude of its
//! source from the same sentence. The passages are cut into clauses (at `;`, `:` and the
//! conjunctions that join statements; not at commas, which also set off appositions: "the
//! master, Capt. Harald Stenberg"). Each fact of a clause is scored by the question's words:
//! the names it states, held by the fact's passage and sentence (which document); its other
//! content words held by the clause, and half as much by the rest of its sentence, weighted by
//! how rare they are among the clauses (IDF; which part); and,
//! for "how many X" questions, X right after the number ("1,900 type specimens"). A sentence
//! that answers the question with a fact of the kind asked (a number for "how many", a date
//! for "when", a name for "who") must take a fact that scores at least as well as every other
//! fact of that kind in the passages, within a margin.

use std::collections::{HashMap, HashSet};

use crate::answers::facts::{Class, Fact, Holdings, facts};
use crate::answers::sentences::sentences;
use crate::answers::words::content_words;

/// The kind of fact a question asks for, from its opening words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Asked {
    Number,
    /// A span of time: "how long does it take", "how many years".
    Duration,
    Date,
    Name,
    /// Any fact the question does not state itself.
    Any,
}

pub(crate) fn asked(question: &str) -> Asked {
    let q = question.trim().to_lowercase();
    // By its opening words only: "Who was the master when she was wrecked?" asks for a name.
    let starts = |prefixes: &[&str]| prefixes.iter().any(|p| q.starts_with(p));
    if starts(&[
        "when",
        "what year",
        "which year",
        "what date",
        "in what year",
        "on what date",
        "what day",
        "in which year",
    ]) {
        Asked::Date
    } else if asks_duration(&q) {
        Asked::Duration
    } else if starts(&[
        "how many",
        "how much",
        "how long",
        "how high",
        "how tall",
        "how deep",
        "how wide",
        "how far",
        "how heavy",
        "how old",
        "how big",
        "how large",
        "how fast",
        "what percentage",
        "what proportion",
        "what share",
        "what fraction",
    ]) {
        Asked::Number
    } else if starts(&["who", "whom", "whose"]) {
        Asked::Name
    } else if starts(&["what", "which"]) && content_words(&q).iter().any(|w| MEASURES.contains(&w.as_str())) {
        Asked::Number
    } else {
        Asked::Any
    }
}

/// "How long does it take / did it last ...", "how many minutes / years ...": a span of time,
/// not a length ("how long is the river" stays a number of any unit).
fn asks_duration(question: &str) -> bool {
    const SPANS: &[&str] = &[
        "second", "seconds", "minute", "minutes", "hour", "hours", "day", "days", "week", "weeks", "month", "months",
        "year", "years",
    ];
    const TAKING: &[&str] = &["take", "takes", "took", "taking", "taken", "last", "lasts", "lasted", "lasting"];
    let words: Vec<&str> = question.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()).collect();
    match words.as_slice() {
        ["how", "long", rest @ ..] => rest.iter().any(|w| TAKING.contains(w)),
        ["how", "many", unit, ..] => SPANS.contains(unit),
        _ => false,
    }
}

/// Nouns that make "what is the ..." ask for a number.
const MEASURES: &[&str] = &[
    "tonnage",
    "length",
    "height",
    "depth",
    "width",
    "area",
    "distance",
    "speed",
    "weight",
    "cost",
    "price",
    "fee",
    "budget",
    "population",
    "capacity",
    "temperature",
    "percentage",
    "proportion",
    "share",
    "rate",
    "salary",
    "value",
    "total",
    "altitude",
    "elevation",
    "span",
    "discharge",
    "output",
    "attendance",
];

impl Asked {
    fn wants(&self, fact: &Fact) -> bool {
        let class = fact.class();
        match self {
            Asked::Number => matches!(class, Class::Number | Class::Year),
            Asked::Duration => fact.is_duration(),
            Asked::Date => matches!(class, Class::Date | Class::Year),
            Asked::Name => class == Class::Name,
            Asked::Any => true,
        }
    }
}

struct Clause {
    /// The passage's number (1-based) and the sentence the clause is part of.
    n: usize,
    sentence: usize,
    words: HashSet<String>,
    /// The content words of its whole sentence.
    sentence_words: HashSet<String>,
    /// Its facts that the question does not state.
    facts: Vec<ClauseFact>,
}

struct ClauseFact {
    fact: Fact,
    /// What the fact alone holds: whether a sentence's fact is this one, written another way.
    holds: Holdings,
    /// The content words of the (up to three) words written right after it.
    after: HashSet<String>,
}

/// A sentence of a passage.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Span {
    pub n: usize,
    pub text: String,
}

/// The offered passages in clauses, scored against one question.
pub(crate) struct Evidence {
    asked: Asked,
    /// The question's content words besides its names, and those of its names.
    question_words: HashSet<String>,
    name_words: HashSet<String>,
    /// What "how many" or "how much" asks to count.
    counted: HashSet<String>,
    question_facts: Holdings,
    /// Per passage, the share of the question's names it holds.
    named: Vec<f32>,
    clauses: Vec<Clause>,
    sentences: Vec<Span>,
    idf: HashMap<String, f32>,
}

/// Words that open a new statement inside a sentence.
const JOINS: &[&str] = &[" and ", " but ", " while ", " whereas ", " which ", " who ", " whose ", " where "];
/// Weight of a passage holding all of the question's names, against IDF-weighted words.
const NAMED: f32 = 4.0;
/// Weight of a number followed by all of what "how many" counts.
const COUNTED: f32 = 4.0;
/// How much better another fact must score for the one stated to be misplaced: about one
/// rare word of the question.
const MARGIN: f32 = 1.0;

fn clauses_of(sentence: &str) -> Vec<&str> {
    let mut cuts = vec![0];
    for (at, c) in sentence.char_indices() {
        if c == ';' || c == ':' || c == '—' {
            cuts.push(at + c.len_utf8());
        }
    }
    for join in JOINS {
        cuts.extend(sentence.match_indices(join).map(|(at, _)| at + 1));
    }
    cuts.sort_unstable();
    cuts.dedup();
    cuts.push(sentence.len());
    cuts.windows(2).map(|w| sentence[w[0]..w[1]].trim()).filter(|c| !c.is_empty()).collect()
}

/// The words after "how many" or "how much" up to the verb: what the question counts.
fn counted(question: &str) -> HashSet<String> {
    let lower = question.to_lowercase();
    let Some(at) = ["how many ", "how much "].iter().find_map(|p| lower.find(p).map(|at| at + p.len())) else {
        return HashSet::new();
    };
    const VERBS: &[&str] =
        &["did", "does", "do", "is", "are", "was", "were", "can", "could", "has", "have", "had", "will", "would"];
    let phrase: Vec<&str> = lower[at..].split_whitespace().take_while(|w| !VERBS.contains(w)).collect();
    content_words(&phrase.join(" "))
}

/// Content words of the (up to) three words after `written` in `clause`.
fn words_after(clause: &str, written: &str) -> HashSet<String> {
    match clause.find(written) {
        Some(at) => {
            let rest: Vec<&str> = clause[at + written.len()..].split_whitespace().take(3).collect();
            content_words(&rest.join(" "))
        }
        None => HashSet::new(),
    }
}

impl Evidence {
    pub(crate) fn new(question: &str, passages: &[&str]) -> Evidence {
        let question_facts = Holdings::of(question);
        let mut clauses = Vec::new();
        let mut spans = Vec::new();
        for (i, passage) in passages.iter().enumerate() {
            // A heading states no fact; its words are in the sentences below it.
            for sentence in sentences(passage).into_iter().filter(|s| !s.starts_with('#')) {
                let text = sentence.split_whitespace().collect::<Vec<_>>().join(" ");
                let sentence_words = content_words(&text);
                for clause in clauses_of(&text) {
                    let facts = facts(clause)
                        .into_iter()
                        .filter(|f| !question_facts.holds(f))
                        .map(|fact| ClauseFact {
                            holds: Holdings::of(&fact.written),
                            after: words_after(clause, &fact.written),
                            fact,
                        })
                        .collect();
                    clauses.push(Clause {
                        n: i + 1,
                        sentence: spans.len(),
                        words: content_words(clause),
                        sentence_words: sentence_words.clone(),
                        facts,
                    });
                }
                spans.push(Span { n: i + 1, text });
            }
        }
        let mut df: HashMap<&str, usize> = HashMap::new();
        for clause in &clauses {
            for w in &clause.words {
                *df.entry(w.as_str()).or_default() += 1;
            }
        }
        let total = clauses.len().max(1) as f32;
        let idf = df.into_iter().map(|(w, n)| (w.to_string(), (1.0 + total / n as f32).ln())).collect();
        // The names a question states say which document; the other words say which part of it.
        let names: Vec<String> =
            facts(question).into_iter().filter(|f| f.class() == Class::Name).map(|f| f.written).collect();
        let name_words = content_words(&names.join(" "));
        let named = passages
            .iter()
            .map(|p| {
                let words = content_words(p);
                let held = name_words.iter().filter(|w| words.contains(*w)).count();
                if name_words.is_empty() { 0.0 } else { held as f32 / name_words.len() as f32 }
            })
            .collect();
        Evidence {
            asked: asked(question),
            question_words: content_words(question).difference(&name_words).cloned().collect(),
            name_words,
            counted: counted(question),
            question_facts,
            named,
            clauses,
            sentences: spans,
            idf,
        }
    }

    /// How well the question points to one fact of a clause: its words in the clause, half
    /// as much in the rest of the sentence (a clause cut at "and" may lose its subject), the
    /// question's names in the sentence and in the passage, and what "how many" counts.
    fn score(&self, clause: &Clause, after: &HashSet<String>) -> f32 {
        let idf = |words: &HashSet<String>| -> f32 {
            self.question_words.intersection(words).map(|w| self.idf.get(w).copied().unwrap_or(0.0)).sum()
        };
        let words = idf(&clause.words) + 0.5 * idf(&clause.sentence_words);
        let names = self.name_words.intersection(&clause.sentence_words).count() as f32;
        let counted = if self.counted.is_empty() {
            0.0
        } else {
            self.counted.intersection(after).count() as f32 / self.counted.len() as f32
        };
        NAMED * self.named[clause.n - 1] + names + words + COUNTED * counted
    }

    /// Whether `sentence` states a fact of the kind the question asks for (any fact, when it
    /// asks for no kind) besides those the question states.
    pub(crate) fn gives_asked(&self, sentence: &str) -> bool {
        facts(sentence).iter().any(|f| !self.question_facts.holds(f) && self.asked.wants(f)) || self.asked == Asked::Any
    }

    /// Whether `sentence` presents itself as the answer: it restates at least half of the
    /// question's content words (names aside), or it comes first.
    pub(crate) fn answers(&self, sentence: &str, first: bool) -> bool {
        let words = content_words(sentence);
        first || 2 * self.question_words.intersection(&words).count() >= self.question_words.len().max(1)
    }

    /// The facts of an answering sentence, of the kind asked, that the question points to less
    /// than to another fact of that kind in the passages: the sentence answers with a
    /// neighbour of the answer. Only facts held by a clause of the `cited` passages are judged.
    pub(crate) fn misplaced(&self, sentence: &str, cited: &[usize]) -> Vec<String> {
        let mut out = Vec::new();
        for fact in facts(sentence) {
            if self.question_facts.holds(&fact) || !self.asked.wants(&fact) {
                continue;
            }
            // Asked for a span of time, only spans of time compete (not the lengths beside it).
            let rivals = |c: &&ClauseFact| {
                c.fact.class().compatible(fact.class()) && (self.asked != Asked::Duration || c.fact.is_duration())
            };
            let mut own = f32::NEG_INFINITY;
            let mut rival = f32::NEG_INFINITY;
            for clause in &self.clauses {
                for other in clause.facts.iter().filter(rivals) {
                    let score = self.score(clause, &other.after);
                    if other.holds.holds(&fact) {
                        if cited.contains(&clause.n) {
                            own = own.max(score);
                        }
                    } else {
                        rival = rival.max(score);
                    }
                }
            }
            // Not found as one fact of a clause (the fact check judged it whole): no comparison.
            if own > f32::NEG_INFINITY && rival > own + MARGIN {
                out.push(fact.written.clone());
            }
        }
        out
    }

    /// The passage sentence holding the fact (of the kind asked) that the question points to
    /// most; `claim` breaks ties by the content words its clause shares. None when the
    /// question's words point to no clause at all.
    pub(crate) fn best_sentence(&self, claim: Option<&str>) -> Option<Span> {
        let claimed = claim.map(content_words).unwrap_or_default();
        let mut best: Option<(f32, usize, &Clause)> = None;
        for clause in &self.clauses {
            for other in clause.facts.iter().filter(|c| self.asked.wants(&c.fact)) {
                let score = self.score(clause, &other.after);
                let shared = claimed.intersection(&clause.words).count();
                if score > 0.0 && best.as_ref().is_none_or(|(s, c, _)| (score, shared) > (*s, *c)) {
                    best = Some((score, shared, clause));
                }
            }
        }
        best.map(|(_, _, clause)| self.sentences[clause.sentence].clone())
    }
}

/// The sentence of `passage` that answers `question`: the one holding the fact of the kind
/// asked that the question's words point to, else the one sharing the most content words with
/// it (the first of equals). None when no sentence shares a content word with the question.
pub fn answering_sentence(question: &str, passage: &str) -> Option<String> {
    if let Some(span) = Evidence::new(question, &[passage]).best_sentence(None) {
        return Some(span.text);
    }
    let wanted = content_words(question);
    let mut best: Option<(usize, &str)> = None;
    for sentence in sentences(passage).into_iter().filter(|s| !s.starts_with('#')) {
        let shared = content_words(sentence).intersection(&wanted).count();
        if shared > 0 && best.is_none_or(|(n, _)| shared > n) {
            best = Some((shared, sentence));
        }
    }
    best.map(|(_, s)| s.split_whitespace().collect::<Vec<_>>().join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_answering_sentence_holds_the_fact_asked() {
        let got = answering_sentence("How long is the Varne?", VARNE).unwrap();
        assert!(got.contains("212 kilometres"), "{got}");
        let got = answering_sentence("Which river is the Varne's largest tributary?", VARNE).unwrap();
        assert!(got.starts_with("Its largest tributary, the Lesk"), "{got}");
        assert_eq!(answering_sentence("What colour is the sky?", VARNE), None);
    }

    const VARNE: &str = "# The Varne\n\nThe Varne rises at 1,840 metres on the eastern slopes of Mount Osric and \
        flows 212 kilometres to the sea at Caldmouth. Its largest tributary, the Lesk, adds 48 kilometres of \
        navigable water.";
    const LIBRARY: &str = "By 1939 the library issued 186,000 loans a year; in 2023 it held 96,400 items, \
        including 11,800 e-books, and recorded 241,000 loans.";

    #[test]
    fn questions_ask_for_kinds_of_facts() {
        assert_eq!(asked("How long is the River Varne?"), Asked::Number);
        assert_eq!(asked("In what year did traffic peak?"), Asked::Date);
        assert_eq!(asked("Who was the first keeper?"), Asked::Name);
        assert_eq!(asked("Who was the master when she was wrecked?"), Asked::Name);
        assert_eq!(asked("What did the company spend on its locks?"), Asked::Any);
        assert_eq!(asked("How long does the crossing take?"), Asked::Duration);
        assert_eq!(asked("How long did the 1962 strike last?"), Asked::Duration);
        assert_eq!(asked("How many years did Mr. Fludd keep the top lock?"), Asked::Duration);
        assert_eq!(asked("How many walkers cross the bridge each year?"), Asked::Number);
    }

    #[test]
    fn asked_for_a_span_of_time_a_length_is_no_answer() {
        let pier = "The pier is 742 metres long. Walking to its end and back takes about 25 minutes.";
        let e = Evidence::new("How long does it take to walk to the end of the pier and back?", &[pier]);
        assert!(e.best_sentence(None).unwrap().text.contains("25 minutes"));
        assert!(!e.gives_asked("The pier is 742 metres long."));
        assert!(e.gives_asked("It takes about 25 minutes."));
        // A length beside it is no rival of the time.
        assert!(e.misplaced("Walking to its end and back takes about 25 minutes.", &[1]).is_empty());
    }

    #[test]
    fn a_neighbour_of_the_answer_is_misplaced() {
        let e = Evidence::new("How long is the River Varne from its source to the sea?", &[VARNE]);
        assert_eq!(e.misplaced("The River Varne is 1,840 metres long.", &[1]), ["1,840 metres"]);
        assert!(e.misplaced("The River Varne is 212 km long.", &[1]).is_empty());
        let e = Evidence::new("How many loans did the Quillon library record in 2023?", &[LIBRARY]);
        assert_eq!(e.misplaced("The library recorded 96,400 loans in 2023.", &[1]), ["96,400"]);
        assert!(e.misplaced("The library recorded 241,000 loans in 2023.", &[1]).is_empty());
        let best = e.best_sentence(None).unwrap();
        assert!(best.text.contains("241,000"), "{best:?}");
        // What "how many" counts tells two numbers of one clause apart.
        let herbarium = "The collection holds about 14,500 taxa, and the herbarium holds 310,000 pressed \
            specimens, including 1,900 type specimens.";
        let e = Evidence::new("How many type specimens does the Aldwyn herbarium hold?", &[herbarium]);
        assert_eq!(e.misplaced("The Aldwyn herbarium holds 310,000 pressed specimens.", &[1]), ["310,000"]);
        assert!(e.misplaced("The herbarium holds 1,900 type specimens.", &[1]).is_empty());
        // A name set off by commas belongs to its clause.
        let wreck = "Of her crew of 29, 22 were saved by the lifeboat, the Grace Tolland, and 7 were lost, \
            among them the master, Capt. Harald Stenberg. The second officer was Thomas Gale.";
        let e = Evidence::new("Who was the master of the SS Meridel when she was wrecked?", &[wreck]);
        assert_eq!(e.misplaced("The master was Thomas Gale.", &[1]), ["Thomas", "Gale"]);
        assert!(e.best_sentence(None).unwrap().text.contains("Stenberg"));
    }

    #[test]
    fn the_passage_that_names_the_subject_outranks_one_that_does_not() {
        let lake = "Lake Orrow is 14 kilometres long and at most 2.1 kilometres wide.";
        let e = Evidence::new("How long is the River Varne from its source to the sea?", &[VARNE, lake]);
        assert!(e.best_sentence(None).unwrap().text.contains("212 kilometres"));
        assert!(e.misplaced("The Varne is 212 km long.", &[1]).is_empty());
    }

    #[test]
    fn clauses_split_at_joins_not_at_commas() {
        assert_eq!(
            clauses_of("It held 96,400 items, including 11,800 e-books; it recorded 241,000 loans and closed"),
            ["It held 96,400 items, including 11,800 e-books;", "it recorded 241,000 loans", "and closed"]
        );
        assert_eq!(counted("How many type specimens does the herbarium hold?").len(), 2);
    }
}
