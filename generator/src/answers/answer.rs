//! Cited answers: passages in, the model's streamed tokens out, then sentences with checked
//! citations and, when asked, each cited passage's influence.

use std::sync::Arc;

use tokio::sync::mpsc;

use crate::answers::cite::{
    self, Checker, CitationKind, CitationPolicy, CitationStats, CitedSentence, NOT_FOUND, Origin, Source, messages,
    select_sources,
};
use crate::answers::evidence::Span;
use crate::answers::sentences::split_answer;
use crate::answers::words::content_words;
use crate::error::{Error, Result};
use crate::runtime::chat::ChatMessage;
use crate::serving::backend::{ChatRequest, Generator, StreamEvent};
use crate::serving::engine::{FinishReason, GenerationParams};

/// A question to answer from passages.
#[derive(Debug, Clone)]
pub struct AnswerRequest {
    pub question: String,
    /// Retrieved passages, best first.
    pub sources: Vec<Source>,
    pub params: GenerationParams,
    pub adapters: Vec<(String, f32)>,
    pub policy: CitationPolicy,
    /// Also measure each cited passage's influence: the drop in the answer's log-likelihood
    /// when that passage is left out of the prompt (one batched scoring pass, no generation).
    pub influence: bool,
    /// Earlier turns of the conversation, oldest first (system, user and assistant messages):
    /// they go before the passages and the question, the oldest left out first when they
    /// would take more than a quarter of the context.
    pub history: Vec<ChatMessage>,
}

/// The turns of `history` that fit in `budget` tokens, the most recent kept.
fn recent_turns(history: &[ChatMessage], budget: usize, count: &dyn Fn(&str) -> usize) -> Vec<ChatMessage> {
    let mut kept = Vec::new();
    let mut used = 0;
    for message in history.iter().rev() {
        // A few tokens of template around each turn.
        used += count(&message.content) + 8;
        if used > budget {
            break;
        }
        kept.push(message.clone());
    }
    kept.reverse();
    kept
}

/// How much the answer depends on one cited passage.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Influence {
    pub n: usize,
    /// log p(answer | all passages) - log p(answer | all but this one), in nats.
    pub log_likelihood_drop: f64,
}

/// A cited passage in a finished answer.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Citation {
    /// The number the prompt gave it.
    pub n: usize,
    pub chunk_id: String,
    pub document: String,
    pub contributor: String,
    pub datanet: String,
    pub start: usize,
    pub end: usize,
}

/// A finished answer.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Answer {
    /// The answer's text, markers included: the model's, or, when the checks changed it
    /// ([`Answer::draft`]), its checked sentences.
    pub answer: String,
    /// The model's text as it was streamed, when sentences that failed the fact check were
    /// repaired, quoted or dropped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub draft: Option<String>,
    pub sentences: Vec<CitedSentence>,
    /// Every passage at least one sentence cites, by number.
    pub citations: Vec<Citation>,
    /// Passages offered to the model, by number (cited or not).
    pub sources_offered: usize,
    pub model: String,
    pub adapter: Option<String>,
    /// False when no relevant passage was found, or nothing in the answer is supported.
    pub grounded: bool,
    pub stats: CitationStats,
    pub finish_reason: FinishReason,
    pub prompt_tokens: usize,
    pub completion_tokens: usize,
    /// Per cited passage, when the request asked for it and the backend could measure it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub influence: Vec<Influence>,
    /// Why influence was asked for but not measured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub influence_error: Option<String>,
    /// The conversation the model was given (earlier turns, then the passages and the
    /// question); empty when the model was not called. What training-data attribution
    /// scores the model's text under; not part of the answer's JSON.
    #[serde(skip)]
    pub prompt: Vec<ChatMessage>,
}

impl Answer {
    /// The model's own text: the draft when the checks changed it, else the answer.
    pub fn model_text(&self) -> &str {
        self.draft.as_deref().unwrap_or(&self.answer)
    }
}

/// What [`answer`] streams.
#[derive(Debug, Clone, PartialEq)]
pub enum AnswerEvent {
    Token(String),
    Done(Box<Answer>),
}

/// Room kept for the instructions and the chat template around the passages.
const PROMPT_OVERHEAD_TOKENS: usize = 160;

/// Answers `request.question` from its passages: streams the model's tokens, then the
/// checked, cited answer. With no relevant passage the model is not called.
pub fn answer(generator: Arc<dyn Generator>, request: AnswerRequest) -> mpsc::Receiver<Result<AnswerEvent>> {
    let (tx, rx) = mpsc::channel(64);
    tokio::spawn(async move {
        let result = run_answer(generator, request, &tx).await;
        let _ = tx.send(result.map(|a| AnswerEvent::Done(Box::new(a)))).await;
    });
    rx
}

async fn run_answer(
    generator: Arc<dyn Generator>,
    request: AnswerRequest,
    tx: &mpsc::Sender<Result<AnswerEvent>>,
) -> Result<Answer> {
    if request.question.trim().is_empty() {
        return Err(Error::InvalidRequest("the question is empty".into()));
    }
    let adapter = (!request.adapters.is_empty())
        .then(|| request.adapters.iter().map(|(id, _)| id.as_str()).collect::<Vec<_>>().join("+"));
    let count = |t: &str| generator.count_tokens(t);
    let history = recent_turns(&request.history, generator.context_length() / 4, &count);
    let history_tokens: usize = history.iter().map(|m| count(&m.content) + 8).sum();
    let budget = generator.context_length().saturating_sub(
        request.params.max_tokens + PROMPT_OVERHEAD_TOKENS + generator.count_tokens(&request.question) + history_tokens,
    );
    let sources = select_sources(&request.sources, &request.policy, budget, &count);
    if sources.is_empty() {
        let _ = tx.send(Ok(AnswerEvent::Token(NOT_FOUND.to_string()))).await;
        return Ok(Answer {
            answer: NOT_FOUND.to_string(),
            draft: None,
            sentences: vec![CitedSentence::uncited(NOT_FOUND)],
            citations: Vec::new(),
            sources_offered: 0,
            model: generator.model_name().to_string(),
            adapter,
            grounded: false,
            stats: CitationStats::default(),
            finish_reason: FinishReason::Stop,
            prompt_tokens: 0,
            completion_tokens: 0,
            influence: Vec::new(),
            influence_error: None,
            prompt: Vec::new(),
        });
    }
    let chat = ChatRequest {
        messages: history.iter().cloned().chain(messages(&request.question, &sources)).collect(),
        params: request.params.clone(),
        adapters: request.adapters.clone(),
    };
    let prompt = chat.messages.clone();
    let mut events = generator.stream(chat);
    let mut completion = None;
    while let Some(event) = events.recv().await {
        match event? {
            StreamEvent::Token(piece) => {
                if tx.send(Ok(AnswerEvent::Token(piece))).await.is_err() {
                    // The caller went away: dropping `events` stops generation.
                    return Err(Error::InvalidRequest("cancelled".into()));
                }
            }
            StreamEvent::Done(done) => completion = Some(done),
        }
    }
    let completion = completion.ok_or_else(|| Error::Model("generation ended without a result".into()))?;
    let checker = Checker::new(&request.question, &sources, &request.policy);
    let mut stats = CitationStats::default();
    let drafted: Vec<CitedSentence> = split_answer(&completion.text)
        .iter()
        .enumerate()
        .map(|(i, (text, markers))| checker.check(text, markers, i == 0, &mut stats))
        .collect();
    let sentences = revise(&generator, &request, &checker, drafted.clone(), &mut stats).await?;
    let (text, draft) =
        if sentences == drafted { (completion.text, None) } else { (render(&sentences), Some(completion.text)) };
    let mut cited: Vec<usize> = sentences.iter().flat_map(|s| s.citations.iter().copied()).collect();
    cited.sort_unstable();
    cited.dedup();
    let citations = cited
        .iter()
        .map(|&n| {
            let s = &sources[n - 1];
            Citation {
                n,
                chunk_id: s.chunk_id.clone(),
                document: s.document.clone(),
                contributor: s.contributor.clone(),
                datanet: s.datanet.clone(),
                start: s.start,
                end: s.end,
            }
        })
        .collect::<Vec<_>>();
    let (influence, influence_error) = if request.influence && !cited.is_empty() {
        match measure_influence(generator.clone(), &request, &history, &sources, &cited, &text).await {
            Ok(influence) => (influence, None),
            Err(e) => (Vec::new(), Some(e.to_string())),
        }
    } else {
        (Vec::new(), None)
    };
    Ok(Answer {
        influence,
        influence_error,
        answer: text,
        draft,
        grounded: !citations.is_empty(),
        sentences,
        citations,
        sources_offered: sources.len(),
        model: generator.model_name().to_string(),
        adapter,
        stats,
        finish_reason: completion.finish_reason,
        prompt_tokens: completion.prompt_tokens,
        completion_tokens: completion.completion_tokens,
        prompt,
    })
}

/// Replaces what failed the checks. A sentence stating a fact its passages do not hold is
/// written again once, from the passage sentence that supports it and nothing else; if that
/// fails too, the passage sentence is quoted; with none, the sentence is left out. An answer
/// with no supported sentence at all (a restated question, a vague reply) gets the passage
/// sentence that answers the question, quoted, in place of what only restates it.
async fn revise(
    generator: &Arc<dyn Generator>,
    request: &AnswerRequest,
    checker: &Checker<'_>,
    drafted: Vec<CitedSentence>,
    stats: &mut CitationStats,
) -> Result<Vec<CitedSentence>> {
    let mut out = Vec::with_capacity(drafted.len());
    for sentence in drafted {
        if sentence.unsupported_facts.is_empty() {
            out.push(sentence);
            continue;
        }
        let Some(span) = checker.best_sentence(Some(&sentence.text)) else {
            stats.dropped += 1;
            continue;
        };
        let repaired = repair(generator, request, &span).await?;
        // Counted apart: a repair's check does not add to the draft's figures.
        let mut scratch = CitationStats::default();
        let checked = split_answer(&repaired)
            .first()
            .map(|(text, markers)| checker.check(text, markers, true, &mut scratch))
            .filter(|s| s.kind.is_some());
        match checked {
            Some(checked) => {
                stats.repaired += 1;
                out.push(CitedSentence { origin: Origin::Repaired, ..checked });
            }
            // Quoted once, however many sentences it stands for.
            None if out.iter().any(|s| s.text == span.text) => stats.dropped += 1,
            None => {
                stats.quoted += 1;
                out.push(quote(span));
            }
        }
    }
    // No supported sentence, or none stating what the question asks for (a date for "when"):
    // the answer did not answer.
    let answered = out.iter().any(|s| s.kind.is_some() && checker.gives_asked(&s.text));
    if !answered && let Some(span) = checker.best_sentence(None) {
        // Sentences that only restate the question, or present themselves as the answer without
        // it, go; other unsupported ones stay, uncited.
        let asked = content_words(&request.question);
        let mut first = true;
        out.retain(|s| {
            let restates = content_words(&s.text).is_subset(&asked);
            let keep = !restates && (!checker.answers(&s.text, first) || checker.gives_asked(&s.text));
            first = false;
            keep
        });
        if !out.iter().any(|s| s.text == span.text) {
            out.insert(0, quote(span));
            stats.quoted += 1;
        }
    }
    Ok(out)
}

fn quote(span: Span) -> CitedSentence {
    CitedSentence {
        citations: vec![span.n],
        kind: Some(CitationKind::Quote),
        origin: Origin::Quoted,
        ..CitedSentence::uncited(span.text)
    }
}

/// The model's second chance at a sentence: the one passage sentence that supports it, under
/// the passage's own number, and the question; greedy, one sentence.
async fn repair(generator: &Arc<dyn Generator>, request: &AnswerRequest, span: &Span) -> Result<String> {
    let mut params = request.params.clone();
    params.max_tokens = params.max_tokens.min(64);
    params.sampling = Default::default();
    let chat = ChatRequest {
        messages: cite::numbered_texts(&request.question, &[(span.n, span.text.as_str())]),
        params,
        adapters: request.adapters.clone(),
    };
    let mut events = generator.stream(chat);
    while let Some(event) = events.recv().await {
        if let StreamEvent::Done(done) = event? {
            return Ok(done.text);
        }
    }
    Err(Error::Model("generation ended without a result".into()))
}

/// Checked sentences as text, each with its markers before its closing punctuation.
fn render(sentences: &[CitedSentence]) -> String {
    let mut out = Vec::with_capacity(sentences.len());
    for sentence in sentences {
        let markers: String = sentence.citations.iter().map(|n| format!("[{n}]")).collect();
        let text = sentence.text.trim();
        let body = text.trim_end_matches(['.', '!', '?']);
        let end = &text[body.len()..];
        out.push(if markers.is_empty() { text.to_string() } else { format!("{body} {markers}{end}") });
    }
    out.join(" ")
}

/// ContextCite-style ablation: the reply's log-likelihood with every offered passage, and with
/// each cited passage left out (the others keep their numbers, so markers still read the same).
async fn measure_influence(
    generator: Arc<dyn Generator>,
    request: &AnswerRequest,
    history: &[ChatMessage],
    sources: &[Source],
    cited: &[usize],
    reply: &str,
) -> Result<Vec<Influence>> {
    let numbered: Vec<(usize, &Source)> = sources.iter().enumerate().map(|(i, s)| (i + 1, s)).collect();
    let with_history = |sources: &[(usize, &Source)]| {
        history.iter().cloned().chain(cite::numbered_messages(&request.question, sources)).collect()
    };
    let mut prompts: Vec<Vec<ChatMessage>> = vec![with_history(&numbered)];
    for &n in cited {
        let without: Vec<(usize, &Source)> = numbered.iter().copied().filter(|(m, _)| *m != n).collect();
        prompts.push(with_history(&without));
    }
    let (reply, adapters) = (reply.to_string(), request.adapters.clone());
    let scores = tokio::task::spawn_blocking(move || generator.reply_log_likelihoods(&prompts, &reply, &adapters))
        .await
        .map_err(|e| Error::Model(format!("scoring task failed: {e}")))??;
    let full = scores.first().copied().ok_or_else(|| Error::Model("no scores".into()))?;
    Ok(cited
        .iter()
        .zip(&scores[1..])
        .map(|(&n, without)| Influence { n, log_likelihood_drop: full - without })
        .collect())
}
