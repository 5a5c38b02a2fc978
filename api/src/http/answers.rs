//! `/v1/answers`: retrieve, generate, cite, record the receipt; JSON or server-sent events.
//! The same run serves `/v1/chat/completions` (`openai.rs`).

use std::collections::VecDeque;
use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::{Stream, StreamExt};
use tokio::sync::mpsc;
use tributary_attribution::{MAX_ADAPTERS, MAX_DATANETS};
use tributary_generator::{GenerationParams, SamplingParams};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::Caller;
use super::datanets::readable;
use super::error::{ApiError, ApiResult, Errors};
use super::extract::Json;
use super::state::AppState;
use super::wire;
use crate::app::answers::{Cancelled, Question, TimedOut, generate, prepare, record};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(create_answer))
}

/// A checked question, ready to run.
#[derive(Clone)]
pub(crate) struct AnswerSpec {
    pub question: String,
    pub datanets: Vec<String>,
    pub contributors: Vec<String>,
    pub adapters: Vec<(String, f32)>,
    pub k: usize,
    pub params: GenerationParams,
    pub private_question: bool,
    /// Earlier turns of a conversation (the OpenAI endpoint's messages before the question).
    pub history: Vec<tributary_generator::ChatMessage>,
}

impl AnswerSpec {
    pub fn from_request(body: wire::AnswerRequest) -> ApiResult<Self> {
        let k = passages_k(body.k)?;
        let params = generation_params(body.max_tokens, body.temperature, body.top_p, body.seed, body.stop)?;
        let mut params = params;
        if let Some(penalty) = body.repeat_penalty {
            if !(penalty.is_finite() && (0.1..=10.0).contains(&penalty)) {
                return Err(ApiError::bad_request("repeat_penalty must be between 0.1 and 10"));
            }
            params.repeat_penalty = penalty;
        }
        if body.adapters.len() > MAX_ADAPTERS {
            return Err(ApiError::bad_request(format!("at most {MAX_ADAPTERS} adapters")));
        }
        let mut adapters = Vec::new();
        for choice in body.adapters {
            tributary_generator::validate_adapter_id(&choice.id)?;
            let weight = choice.weight.unwrap_or(1.0);
            if !weight.is_finite() {
                return Err(ApiError::invalid("adapter weights must be finite"));
            }
            adapters.push((choice.id, weight));
        }
        Ok(AnswerSpec {
            question: body.question,
            datanets: body.datanets,
            contributors: body.contributors,
            adapters,
            k,
            params,
            private_question: body.private_question,
            history: Vec::new(),
        })
    }
}

/// Passages to retrieve for an answer, as both answer endpoints take it: 1 to 20, default 3.
pub(crate) fn passages_k(k: Option<usize>) -> ApiResult<usize> {
    let k = k.unwrap_or(3);
    if !(1..=20).contains(&k) {
        return Err(ApiError::bad_request("k must be between 1 and 20"));
    }
    Ok(k)
}

/// Sampling settings as both answer endpoints take them.
pub(crate) fn generation_params(
    max_tokens: Option<usize>,
    temperature: Option<f64>,
    top_p: Option<f64>,
    seed: Option<i64>,
    stop: Vec<String>,
) -> ApiResult<GenerationParams> {
    let max_tokens = max_tokens.unwrap_or(256);
    if !(1..=2048).contains(&max_tokens) {
        return Err(ApiError::bad_request("max_tokens must be between 1 and 2048"));
    }
    let temperature = temperature.unwrap_or(0.0);
    if !(temperature.is_finite() && (0.0..=2.0).contains(&temperature)) {
        return Err(ApiError::bad_request("temperature must be between 0 and 2"));
    }
    if let Some(p) = top_p
        && !(p.is_finite() && p > 0.0 && p <= 1.0)
    {
        return Err(ApiError::bad_request("top_p must be in (0, 1]"));
    }
    if stop.len() > 8 {
        return Err(ApiError::bad_request("at most 8 stop sequences"));
    }
    if stop.iter().any(|s| s.is_empty() || s.len() > 64) {
        return Err(ApiError::invalid("stop sequences are 1 to 64 bytes"));
    }
    Ok(GenerationParams {
        max_tokens,
        sampling: SamplingParams { temperature, top_p, seed: seed.unwrap_or(0).max(0) as u64 },
        stop,
        ..Default::default()
    })
}

/// What a running answer reports: its sources first, then tokens, then the end.
pub(crate) enum Progress {
    Sources(Vec<wire::Passage>),
    Token(String),
    Finished { answer: Box<wire::Answer>, receipt: Box<wire::Receipt>, passages: Vec<wire::Passage> },
    Failed(ApiError),
}

/// A running answer's progress, its first reports already read.
pub(crate) struct Run {
    read: VecDeque<Progress>,
    rx: mpsc::UnboundedReceiver<Progress>,
}

impl Run {
    pub(crate) async fn recv(&mut self) -> Option<Progress> {
        match self.read.pop_front() {
            Some(progress) => Some(progress),
            None => self.rx.recv().await,
        }
    }
}

/// Checks access, takes a generation slot (503 at once when none is free), starts the answer in
/// the background and waits for its first report: a failure before anything was generated (no
/// room for the answer in the model's memory, a bad adapter, a timeout) is the response's
/// status, not an event in a stream already answered 200. The run then reports its tokens, the
/// answer and its receipt.
pub(crate) async fn start(state: &AppState, caller: &Caller, spec: AnswerSpec) -> ApiResult<Run> {
    let mut rx = launch(state, caller, spec).await?;
    let mut read = VecDeque::new();
    loop {
        match rx.recv().await {
            Some(Progress::Failed(e)) => return Err(e),
            // The sources come before the model runs: what decides the status is what follows.
            Some(sources @ Progress::Sources(_)) => read.push_back(sources),
            Some(first) => {
                read.push_back(first);
                return Ok(Run { read, rx });
            }
            None => return Err(ApiError::internal("the answer task ended without a result")),
        }
    }
}

async fn launch(
    state: &AppState,
    caller: &Caller,
    mut spec: AnswerSpec,
) -> ApiResult<mpsc::UnboundedReceiver<Progress>> {
    spec.params.max_tokens = spec.params.max_tokens.min(state.config().max_answer_tokens.max(1));
    if spec.question.trim().is_empty() {
        return Err(ApiError::invalid("the question is empty"));
    }
    if spec.datanets.is_empty() {
        return Err(ApiError::invalid("name at least one Datanet"));
    }
    if spec.datanets.len() > MAX_DATANETS {
        return Err(ApiError::bad_request(format!("at most {MAX_DATANETS} Datanets")));
    }
    tributary_retriever::check_bounds(&spec.question, spec.datanets.len(), spec.contributors.len())
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    for name in &spec.datanets {
        readable(state, caller, name).await?;
    }
    for c in &spec.contributors {
        super::datanets::parse_address(c)?;
    }
    let permit = state.generation_slot()?;
    let generator = state.generator().await?;
    // Priced and paid for before anything is generated: a short balance is a 402 now, not an
    // error event after the stream began.
    let question = Question {
        text: &spec.question,
        datanets: &spec.datanets,
        contributors: &spec.contributors,
        k: spec.k,
        params: spec.params.clone(),
        adapters: spec.adapters.clone(),
        payer: caller.address().copied(),
        unpaid: state.config().unpaid_answers,
        scope: &caller.cache_scope(),
        history: spec.history.clone(),
    };
    let prepared = prepare(state.app(), question).await?;
    // A stream's body outlives the timeout layer (which only waits for the headers): its
    // generation keeps the request's deadline itself.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(state.config().request_timeout_secs.max(1));
    let (tx, rx) = mpsc::unbounded_channel();
    let task_state = state.clone();
    tokio::spawn(async move {
        let slot = permit;
        let app = task_state.app().clone();
        let token_tx = tx.clone();
        let sources_tx = tx.clone();
        let mut on_sources = |passages: &[tributary_retriever::Passage]| {
            if let Ok(passages) = passages.iter().map(wire::view).collect::<ApiResult<Vec<wire::Passage>>>() {
                let _ = sources_tx.send(Progress::Sources(passages));
            }
        };
        let mut tokens = 0u64;
        let mut on_token = |piece: &str| {
            tokens += 1;
            // Unbounded, but never more than max_tokens pieces; a closed channel means the
            // client went away: stop generating.
            token_tx.send(Progress::Token(piece.to_string())).is_ok()
        };
        let outcome = async {
            let answered = generate(&app, generator, prepared, Some(deadline), &mut on_sources, &mut on_token).await?;
            let receipt = record(&app, &spec.question, &answered, spec.private_question).await?;
            Ok::<_, anyhow::Error>((answered, receipt))
        }
        .await;
        let metrics = task_state.metrics();
        metrics.answer_tokens.inc_by(tokens);
        let message = match outcome {
            Ok((answered, receipt)) => {
                metrics.answers.inc();
                metrics.receipts.inc();
                let passages = answered.passages.iter().map(wire::view).collect::<ApiResult<Vec<_>>>();
                match (wire::view(&answered.answer), wire::view(&receipt), passages) {
                    (Ok(answer), Ok(receipt), Ok(passages)) => {
                        Progress::Finished { answer: Box::new(answer), receipt: Box::new(receipt), passages }
                    }
                    (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => Progress::Failed(e),
                }
            }
            Err(e) if e.is::<Cancelled>() => {
                tracing::debug!("answer cancelled: the client went away");
                return;
            }
            Err(e) if e.is::<TimedOut>() => {
                Progress::Failed(ApiError::new("timeout", "the answer took longer than the request timeout"))
            }
            Err(e) => Progress::Failed(ApiError::from(e)),
        };
        // Free the slot before the result goes out: a client that sends its next question as
        // soon as this one is answered must find the slot free, not race this task's exit.
        drop(slot);
        let _ = tx.send(message);
    });
    Ok(rx)
}

/// Drains a run to its end.
pub(crate) async fn finish(mut rx: Run) -> ApiResult<(wire::Answer, wire::Receipt, Vec<wire::Passage>)> {
    while let Some(progress) = rx.recv().await {
        match progress {
            Progress::Sources(_) | Progress::Token(_) => {}
            Progress::Finished { answer, receipt, passages } => return Ok((*answer, *receipt, passages)),
            Progress::Failed(e) => return Err(e),
        }
    }
    Err(ApiError::internal("the answer task ended without a result"))
}

pub(crate) fn wants_stream(headers: &HeaderMap) -> bool {
    headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).is_some_and(|accept| accept.contains("text/event-stream"))
}

fn json_event(name: &str, value: &impl serde::Serialize) -> Event {
    Event::default().event(name).json_data(value).unwrap_or_else(|_| Event::default().event(name))
}

/// `sources` (`{"passages": [Passage]}`), `token` events (`{"text": ...}`), then `answer` (an
/// `Answer`), then `receipt` (a `Receipt`); or `error` (a `Problem`).
fn answer_events(rx: Run) -> impl Stream<Item = Result<Event, Infallible>> {
    futures_util::stream::unfold(Some(rx), |rx| async move {
        let mut rx = rx?;
        let events = match rx.recv().await? {
            Progress::Sources(passages) => {
                return Some((vec![json_event("sources", &serde_json::json!({ "passages": passages }))], Some(rx)));
            }
            Progress::Token(text) => {
                return Some((vec![json_event("token", &serde_json::json!({ "text": text }))], Some(rx)));
            }
            Progress::Finished { answer, receipt, .. } => {
                vec![json_event("answer", &answer), json_event("receipt", &receipt)]
            }
            Progress::Failed(e) => vec![json_event("error", &e.problem())],
        };
        Some((events, None))
    })
    .flat_map(|events| futures_util::stream::iter(events.into_iter().map(Ok)))
}

/// Answers a question from Datanets the caller may read, citing the passages used, and records
/// the receipt that pays their contributors. With `Accept: text/event-stream` the answer
/// streams as server-sent events: `sources` (`{"passages"}`, the passages offered, numbered
/// from 1) before the model starts, `token` (`{"text"}`) as generated, then `answer`, then
/// `receipt`; a failure after the stream began is an `error` event holding a `Problem`. When
/// the fact check repaired, quoted or left out a sentence, the `answer` event's text replaces
/// the tokens streamed (they are its `draft`).
#[utoipa::path(
    post, path = "/v1/answers", tag = "answers", request_body = wire::AnswerRequest,
    responses(
        (status = 200, description = "The answer and its receipt", content(
            (wire::AnswerResponse = "application/json"),
            (wire::SseEvent = "text/event-stream")
        )),
        Errors
    )
)]
async fn create_answer(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Json(body): Json<wire::AnswerRequest>,
) -> ApiResult<Response> {
    let spec = AnswerSpec::from_request(body)?;
    let rx = start(&state, &caller, spec).await?;
    if wants_stream(&headers) {
        return Ok(Sse::new(answer_events(rx)).keep_alive(KeepAlive::default()).into_response());
    }
    let (answer, receipt, passages) = finish(rx).await?;
    Ok(Json(wire::AnswerResponse { answer, passages, receipt }).into_response())
}
