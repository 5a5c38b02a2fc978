//! OpenAI compatibility: `GET /v1/models` and `POST /v1/chat/completions`, so that OpenAI SDKs
//! work unchanged.
//!
//! Models are `base` (the generator without adapters) and `base:<adapter>` for each registered
//! adapter, either bound to the Datanets it answers from with `@<datanet>[+<datanet>...]`
//! (`base@rivers`: SDKs that only set `model` work as is). Otherwise the Datanets are named in
//! the extension field `datanets` (the Python client sends it with
//! `extra_body={"datanets": [...]}`). The question is the last user message. Citations and the
//! receipt come back in the extension field `tributary` (on the final chunk when streaming).

use std::convert::Infallible;
use std::sync::Arc;

use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::{Stream, StreamExt};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::answers::{AnswerSpec, Progress, Run, finish, generation_params, passages_k, start};
use super::auth::Caller;
use super::datanets::readable_all;
use super::error::{ApiError, ApiResult, Errors};
use super::extract::Json;
use super::state::AppState;
use super::wire;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list_models)).routes(routes!(chat_completions))
}

const BASE_MODEL: &str = "base";

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Model {
    pub id: String,
    /// Always `model`.
    pub object: String,
    pub created: u64,
    pub owned_by: String,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ModelList {
    /// Always `list`.
    pub object: String,
    pub data: Vec<Model>,
}

/// `base`, `base:<adapter>` for every registered adapter, and `base@<datanet>` for every
/// Datanet the caller may read (a model bound to the Datanet it answers from).
#[utoipa::path(get, path = "/v1/models", tag = "openai", responses((status = 200, body = ModelList), Errors))]
async fn list_models(State(state): State<AppState>, caller: Caller) -> ApiResult<Json<ModelList>> {
    let model = |id: String, created: u64| Model { id, object: "model".into(), created, owned_by: "tributary".into() };
    let mut data = vec![model(BASE_MODEL.into(), 0)];
    for entry in state.app().adapters()?.list()? {
        data.push(model(format!("{BASE_MODEL}:{}", entry.id), entry.added_at));
    }
    for datanet in readable_all(&state, &caller).await? {
        data.push(model(format!("{BASE_MODEL}@{}", datanet.name), (datanet.created_at_ms / 1000).max(0) as u64));
    }
    Ok(Json(ModelList { object: "list".into(), data }))
}

/// A message's content: text, or parts of which the `text` ones are read.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum Content {
    Text(String),
    Parts(Vec<ContentPart>),
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct ContentPart {
    /// `text` parts are read; others (images) are ignored.
    #[serde(rename = "type")]
    pub kind: String,
    pub text: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct ChatMessage {
    /// system, user, assistant (others are ignored).
    pub role: String,
    /// Absent or null for assistant messages that only call tools.
    pub content: Option<Content>,
}

/// One stop sequence, or several.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum Stop {
    One(String),
    Many(Vec<String>),
}

/// A chat completion request; fields OpenAI defines and Tributary does not use are accepted
/// and ignored.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(example = json!({
    "model": "base",
    "messages": [{"role": "user", "content": "What is the longest river in North America?"}],
    "max_tokens": 32,
    "datanets": ["rivers"]
}))]
pub struct ChatCompletionRequest {
    /// `base` or `base:<adapter>`, optionally bound to Datanets: `base@rivers`,
    /// `base:hydrology@rivers+deltas`.
    pub model: String,
    pub messages: Vec<ChatMessage>,
    #[serde(default)]
    pub stream: bool,
    /// 1 to 2048 (default 256).
    #[serde(default, deserialize_with = "super::extract::integer::option")]
    #[schema(minimum = 1, maximum = 2048)]
    pub max_tokens: Option<usize>,
    /// Preferred over `max_tokens` when both are given.
    #[serde(default, deserialize_with = "super::extract::integer::option")]
    #[schema(minimum = 1, maximum = 2048)]
    pub max_completion_tokens: Option<usize>,
    #[schema(minimum = 0, maximum = 2)]
    pub temperature: Option<f64>,
    #[schema(exclusive_minimum = 0, maximum = 1)]
    pub top_p: Option<f64>,
    #[serde(default, deserialize_with = "super::extract::integer::option")]
    #[schema(minimum = 0, maximum = 9223372036854775807_i64)]
    pub seed: Option<i64>,
    pub stop: Option<Stop>,
    /// Extension: the Datanets to answer from (up to 16).
    #[serde(default)]
    #[schema(max_items = 16)]
    pub datanets: Vec<String>,
    /// Extension: passages retrieved, 1 to 20 (default 3).
    #[serde(default, deserialize_with = "super::extract::integer::option")]
    #[schema(minimum = 1, maximum = 20)]
    pub k: Option<usize>,
    /// Extension: keep only the question's hash in the receipt.
    #[serde(default)]
    pub private_question: bool,
    /// Choices, 1 to 4: each is an answer of its own, charged and receipted (sampled with
    /// `seed + i` for choice i).
    #[serde(default, deserialize_with = "super::extract::integer::option")]
    #[schema(minimum = 1, maximum = 4)]
    pub n: Option<usize>,
    pub stream_options: Option<StreamOptions>,
}

/// Options of a streamed completion.
#[derive(Debug, Deserialize, ToSchema)]
pub struct StreamOptions {
    /// A last chunk before `[DONE]` with `usage` and no choices.
    #[serde(default)]
    pub include_usage: bool,
}

/// At most this many choices a request.
const MAX_CHOICES: usize = 4;

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AssistantMessage {
    pub role: String,
    pub content: String,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Choice {
    pub index: u32,
    pub message: AssistantMessage,
    pub finish_reason: String,
    /// This choice's citations and receipt (the completion's `tributary` is the first's).
    pub tributary: Attribution,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Usage {
    pub prompt_tokens: usize,
    pub completion_tokens: usize,
    pub total_tokens: usize,
    /// What the answer cost its payer, in the token's smallest unit ("0" when unpaid).
    #[schema(pattern = "^[0-9]+$")]
    pub cost: String,
    /// Who paid: `payer`, `sponsor` or `unpaid`.
    pub paid_by: Option<wire::PaidBy>,
}

impl Default for Usage {
    fn default() -> Self {
        Usage { prompt_tokens: 0, completion_tokens: 0, total_tokens: 0, cost: "0".into(), paid_by: None }
    }
}

impl Usage {
    /// Counts one choice's answer and what its receipt charged (exactly: a fee that is not an
    /// amount, or a total past the range, is an error, not a zero).
    fn add(&mut self, answer: &wire::Answer, receipt: &wire::Receipt) -> ApiResult<()> {
        let amount = |text: &str| text.parse::<u128>().map_err(|_| ApiError::internal(format!("fee {text:?}")));
        let cost = amount(&self.cost)?
            .checked_add(amount(&receipt.fee)?)
            .ok_or_else(|| ApiError::internal("the choices' fees overflow"))?;
        self.cost = cost.to_string();
        self.prompt_tokens += answer.prompt_tokens;
        self.completion_tokens += answer.completion_tokens;
        self.total_tokens = self.prompt_tokens + self.completion_tokens;
        self.paid_by = self.paid_by.or(receipt.payment.as_ref().map(|p| p.paid_by));
        Ok(())
    }
}

/// Tributary's additions to a completion.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Attribution {
    pub receipt_id: String,
    #[schema(pattern = "^[0-9]+$")]
    pub fee: String,
    pub grounded: bool,
    pub sentences: Vec<wire::CitedSentence>,
    pub citations: Vec<wire::Citation>,
    pub credits: Vec<wire::Credit>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ChatCompletion {
    pub id: String,
    /// Always `chat.completion`.
    pub object: String,
    pub created: u64,
    pub model: String,
    pub choices: Vec<Choice>,
    pub usage: Usage,
    pub tributary: Attribution,
}

fn now_secs() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

fn text_of(content: Option<&Content>) -> String {
    match content {
        Some(Content::Text(text)) => text.clone(),
        Some(Content::Parts(parts)) => {
            parts.iter().filter(|p| p.kind == "text").filter_map(|p| p.text.as_deref()).collect::<Vec<_>>().join("\n")
        }
        None => String::new(),
    }
}

fn spec_of(body: ChatCompletionRequest) -> ApiResult<(AnswerSpec, Options)> {
    // `base[:adapter][@datanet+datanet...]`: the Datanets may be bound to the model name.
    let (model, bound) = match body.model.split_once('@') {
        Some((model, datanets)) => (model, datanets.split('+').map(str::to_string).collect::<Vec<_>>()),
        None => (body.model.as_str(), Vec::new()),
    };
    let adapters = match model.split_once(':') {
        None if model == BASE_MODEL => Vec::new(),
        Some((BASE_MODEL, adapter)) if !adapter.is_empty() => {
            tributary_generator::validate_adapter_id(adapter)?;
            vec![(adapter.to_string(), 1.0)]
        }
        _ => {
            return Err(ApiError::new(
                "adapter_not_found",
                format!("model {:?}: use `base`, `base:<adapter>` or either `@<datanet>` (GET /v1/models)", body.model),
            ));
        }
    };
    if !bound.is_empty() && !body.datanets.is_empty() && bound != body.datanets {
        return Err(ApiError::invalid("the model is bound to other Datanets than `datanets` names"));
    }
    let datanets = if bound.is_empty() { body.datanets } else { bound };
    // The last user message is the question; the turns before it are the conversation.
    let last_user = body
        .messages
        .iter()
        .rposition(|m| m.role == "user")
        .ok_or_else(|| ApiError::invalid("the messages hold no user question"))?;
    let question = text_of(body.messages[last_user].content.as_ref());
    if question.trim().is_empty() {
        return Err(ApiError::invalid("the messages hold no user question"));
    }
    let history: Vec<tributary_generator::ChatMessage> = body.messages[..last_user]
        .iter()
        .filter(|m| matches!(m.role.as_str(), "system" | "developer" | "user" | "assistant"))
        .map(|m| {
            let role = if m.role == "developer" { "system" } else { m.role.as_str() };
            tributary_generator::ChatMessage { role: role.to_string(), content: text_of(m.content.as_ref()) }
        })
        .filter(|m| !m.content.trim().is_empty())
        .collect();
    let choices = body.n.unwrap_or(1);
    if !(1..=MAX_CHOICES).contains(&choices) {
        return Err(ApiError::bad_request(format!("n must be 1 to {MAX_CHOICES}")));
    }
    if datanets.is_empty() {
        return Err(ApiError::invalid(
            "name the Datanets to answer from: a model bound to them (`base@<datanet>`) or the `datanets` \
             extension field (extra_body in OpenAI clients)",
        ));
    }
    let stop = match body.stop {
        None => Vec::new(),
        Some(Stop::One(s)) => vec![s],
        Some(Stop::Many(items)) => items,
    };
    let k = passages_k(body.k)?;
    let params = generation_params(
        body.max_completion_tokens.or(body.max_tokens),
        body.temperature,
        body.top_p,
        body.seed,
        stop,
    )?;
    let spec = AnswerSpec {
        question,
        datanets,
        contributors: Vec::new(),
        adapters,
        k,
        params,
        private_question: body.private_question,
        history,
    };
    let include_usage = body.stream_options.is_some_and(|o| o.include_usage);
    Ok((spec, Options { model: body.model, stream: body.stream, choices, include_usage }))
}

/// How a completion is answered.
struct Options {
    model: String,
    stream: bool,
    choices: usize,
    include_usage: bool,
}

fn finish_reason(answer: &wire::Answer) -> String {
    match answer.finish_reason {
        wire::FinishReason::Length => "length".into(),
        wire::FinishReason::Stop | wire::FinishReason::Cancelled => "stop".into(),
    }
}

fn attribution(answer: wire::Answer, receipt: wire::Receipt) -> Attribution {
    Attribution {
        receipt_id: receipt.id,
        fee: receipt.fee,
        grounded: answer.grounded,
        sentences: answer.sentences,
        citations: answer.citations,
        credits: receipt.credits,
    }
}

/// An OpenAI chat completion answered from Datanets, cited and paid for. With `stream: true`
/// the reply is `chat.completion.chunk` server-sent events ending with `data: [DONE]`; the last
/// chunk before it carries `tributary` (citations and receipt).
#[utoipa::path(
    post, path = "/v1/chat/completions", tag = "openai", request_body = ChatCompletionRequest,
    responses(
        (status = 200, description = "The completion", content(
            (ChatCompletion = "application/json"),
            (wire::SseEvent = "text/event-stream")
        )),
        Errors
    )
)]
async fn chat_completions(
    State(state): State<AppState>,
    caller: Caller,
    Json(body): Json<ChatCompletionRequest>,
) -> ApiResult<Response> {
    let (spec, options) = spec_of(body)?;
    // One answer per choice, run together (the scheduler batches them); choice i samples with
    // seed + i.
    let mut runs = Vec::with_capacity(options.choices);
    for i in 0..options.choices {
        let mut spec = spec.clone();
        spec.params.sampling.seed = spec.params.sampling.seed.wrapping_add(i as u64);
        runs.push(start(&state, &caller, spec));
    }
    let runs = futures_util::future::join_all(runs).await.into_iter().collect::<ApiResult<Vec<Run>>>()?;
    let created = now_secs();
    if options.stream {
        let stream = chunks(runs, options.model, created, options.include_usage);
        return Ok(Sse::new(stream).keep_alive(KeepAlive::default()).into_response());
    }
    let mut answered = Vec::with_capacity(runs.len());
    for run in runs {
        answered.push(finish(run).await?);
    }
    let mut usage = Usage::default();
    let mut choices = Vec::with_capacity(answered.len());
    for (index, (answer, receipt, _)) in answered.into_iter().enumerate() {
        usage.add(&answer, &receipt)?;
        choices.push(Choice {
            index: index as u32,
            message: AssistantMessage { role: "assistant".into(), content: answer.answer.clone() },
            finish_reason: finish_reason(&answer),
            tributary: attribution(answer, receipt),
        });
    }
    let tributary = choices.first().map(|c| c.tributary.clone()).ok_or_else(|| ApiError::internal("no choice"))?;
    let completion = ChatCompletion {
        id: format!("chatcmpl-{}", tributary.receipt_id),
        object: "chat.completion".into(),
        created,
        model: options.model,
        choices,
        usage,
        tributary,
    };
    Ok(Json(completion).into_response())
}

/// Opens the content a stream adds when the fact check changed the streamed answer.
pub(crate) const CHECKED: &str = "Checked against the passages:";

/// OpenAI's error object, as a stream's last event for a choice.
fn error_data(e: &ApiError) -> Event {
    let problem = e.problem();
    data(&serde_json::json!({"error": {"message": problem.detail, "type": problem.code, "code": problem.code}}))
}

fn data(value: &serde_json::Value) -> Event {
    Event::default().data(value.to_string())
}

/// The OpenAI streaming protocol: for each choice a role chunk, content chunks (when the fact
/// check changed the answer, one more: [`CHECKED`] and the checked answer) and a final chunk
/// with the finish reason (and `tributary`), the choices' chunks interleaved as they come; with
/// `include_usage`, a chunk with the total usage and no choices; then `[DONE]`. A failure
/// mid-stream ends its choice with an `error` object.
fn chunks(
    runs: Vec<Run>,
    model: String,
    created: u64,
    include_usage: bool,
) -> impl Stream<Item = Result<Event, Infallible>> {
    // The receipt id is known only at the end; chunks share an id made up front.
    let mut random = [0u8; 12];
    let _ = getrandom::fill(&mut random);
    let id = format!("chatcmpl-{}", hex::encode(random));
    let usage = Arc::new(std::sync::Mutex::new(Usage::default()));
    let per_choice = runs.into_iter().enumerate().map(|(index, rx)| {
        let (id, model, usage) = (id.clone(), model.clone(), usage.clone());
        let choice = move |delta: serde_json::Value, finish: Option<String>| {
            serde_json::json!({
                "id": id, "object": "chat.completion.chunk", "created": created, "model": model,
                "choices": [{"index": index, "delta": delta, "finish_reason": finish}],
            })
        };
        let first = data(&choice(serde_json::json!({"role": "assistant", "content": ""}), None));
        let rest = futures_util::stream::unfold(Some(rx), move |rx| {
            let (choice, usage) = (choice.clone(), usage.clone());
            async move {
                let mut rx = rx?;
                let events = match rx.recv().await? {
                    Progress::Sources(_) => return Some((Vec::new(), Some(rx))),
                    Progress::Token(text) => {
                        return Some((vec![data(&choice(serde_json::json!({"content": text}), None))], Some(rx)));
                    }
                    Progress::Finished { answer, receipt, .. } => {
                        let added = match usage.lock() {
                            Ok(mut usage) => usage.add(&answer, &receipt),
                            Err(_) => Err(ApiError::internal("the usage tally was poisoned")),
                        };
                        match added {
                            Ok(()) => {
                                // The tokens already sent cannot be taken back: what the checks
                                // changed follows them, said as such.
                                let correction = answer.draft.as_ref().map(|_| {
                                    let text = format!("\n\n{CHECKED} {}", answer.answer);
                                    data(&choice(serde_json::json!({"content": text}), None))
                                });
                                let mut last = choice(serde_json::json!({}), Some(finish_reason(&answer)));
                                last["tributary"] =
                                    serde_json::to_value(attribution(*answer, *receipt)).unwrap_or_default();
                                correction.into_iter().chain([data(&last)]).collect()
                            }
                            Err(e) => vec![error_data(&e)],
                        }
                    }
                    Progress::Failed(e) => vec![error_data(&e)],
                };
                Some((events, None))
            }
        })
        .flat_map(futures_util::stream::iter);
        futures_util::stream::once(async move { first }).chain(rest).boxed()
    });
    let per_choice: Vec<_> = per_choice.collect();
    let end = futures_util::stream::once(async move {
        let mut tail = Vec::new();
        if include_usage {
            let usage = usage.lock().map(|u| serde_json::to_value(&*u).unwrap_or_default()).unwrap_or_default();
            tail.push(data(&serde_json::json!({
                "id": id, "object": "chat.completion.chunk", "created": created, "model": model, "choices": [],
                "usage": usage,
            })));
        }
        tail.push(Event::default().data("[DONE]"));
        futures_util::stream::iter(tail)
    })
    .flatten();
    futures_util::stream::select_all(per_choice).chain(end).map(Ok)
}
