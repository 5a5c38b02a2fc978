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
}

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

/// Tributary's additions to a completion.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
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

fn spec_of(body: ChatCompletionRequest) -> ApiResult<(AnswerSpec, String, bool)> {
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
    let question = body
        .messages
        .iter()
        .rev()
        .find(|m| m.role == "user")
        .map(|m| text_of(m.content.as_ref()))
        .filter(|q| !q.trim().is_empty())
        .ok_or_else(|| ApiError::invalid("the messages hold no user question"))?;
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
    };
    Ok((spec, body.model, body.stream))
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
    let (spec, model, stream) = spec_of(body)?;
    let rx = start(&state, &caller, spec).await?;
    let created = now_secs();
    if stream {
        return Ok(Sse::new(chunks(rx, model, created)).keep_alive(KeepAlive::default()).into_response());
    }
    let (answer, receipt) = finish(rx).await?;
    let completion = ChatCompletion {
        id: format!("chatcmpl-{}", receipt.id),
        object: "chat.completion".into(),
        created,
        model,
        choices: vec![Choice {
            index: 0,
            message: AssistantMessage { role: "assistant".into(), content: answer.answer.clone() },
            finish_reason: finish_reason(&answer),
        }],
        usage: Usage {
            prompt_tokens: answer.prompt_tokens,
            completion_tokens: answer.completion_tokens,
            total_tokens: answer.prompt_tokens + answer.completion_tokens,
            cost: receipt.fee.clone(),
            paid_by: receipt.payment.as_ref().map(|p| p.paid_by),
        },
        tributary: attribution(answer, receipt),
    };
    Ok(Json(completion).into_response())
}

fn chunk(id: &str, model: &str, created: u64, delta: serde_json::Value, finish: Option<String>) -> serde_json::Value {
    serde_json::json!({
        "id": id, "object": "chat.completion.chunk", "created": created, "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    })
}

fn data(value: &serde_json::Value) -> Event {
    Event::default().data(value.to_string())
}

/// The OpenAI streaming protocol: a role chunk, content chunks, a final chunk with the finish
/// reason (and `tributary`), then `[DONE]`. A failure mid-stream ends with an `error` object.
fn chunks(rx: Run, model: String, created: u64) -> impl Stream<Item = Result<Event, Infallible>> {
    // The receipt id is known only at the end; chunks share an id made up front.
    let mut random = [0u8; 12];
    let _ = getrandom::fill(&mut random);
    let id = format!("chatcmpl-{}", hex::encode(random));
    let first = data(&chunk(&id, &model, created, serde_json::json!({"role": "assistant", "content": ""}), None));
    let rest = futures_util::stream::unfold(Some(rx), move |rx| {
        let (id, model) = (id.clone(), model.clone());
        async move {
            let mut rx = rx?;
            let events = match rx.recv().await? {
                Progress::Token(text) => {
                    let event = data(&chunk(&id, &model, created, serde_json::json!({"content": text}), None));
                    return Some((vec![event], Some(rx)));
                }
                Progress::Finished { answer, receipt } => {
                    let reason = finish_reason(&answer);
                    let mut last = chunk(&id, &model, created, serde_json::json!({}), Some(reason));
                    last["tributary"] = serde_json::to_value(attribution(*answer, *receipt)).unwrap_or_default();
                    vec![data(&last), Event::default().data("[DONE]")]
                }
                Progress::Failed(e) => {
                    let problem = e.problem();
                    vec![data(&serde_json::json!({"error": {"message": problem.detail, "type": problem.code, "code": problem.code}}))]
                }
            };
            Some((events, None))
        }
    })
    .flat_map(futures_util::stream::iter);
    futures_util::stream::once(async move { first }).chain(rest).map(Ok)
}
