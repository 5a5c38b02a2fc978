//! A remote OpenAI-compatible engine (vLLM, LoRAX, llama.cpp's server, any
//! `/v1/chat/completions` with server-sent events) behind the same [`Generator`] trait, so a
//! cluster of GPU nodes can serve generation.
//!
//! LoRA adapters: vLLM and LoRAX serve each adapter under its own model name, so a request's
//! single adapter becomes the `model` field. Weighted combinations stay local-only.
//!
//! Several engines (`base_url` a comma-separated list, all serving the same base model): a
//! request with an adapter goes to an engine whose `GET /models` lists it (an engine without
//! that route is taken to serve every adapter), a base request to any engine (servers such as
//! llama.cpp's list their file name, not the name asked for), round-robin among those;
//! the lists are refreshed every [`REFRESH`]. An engine that cannot be reached or answers 5xx
//! before streaming anything is marked down until its next check and the request goes to the
//! next one; once tokens have streamed a failure ends the answer (they cannot be taken back).

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use eventsource_stream::Eventsource;
use futures_util::StreamExt;
use tokio::sync::mpsc;

use crate::error::{Error, Result};
use crate::serving::backend::{ChatRequest, Generator, StreamEvent};
use crate::serving::engine::{Completion, FinishReason};

/// How often an engine's model list (and health) is checked again.
pub const REFRESH: Duration = Duration::from_secs(10);

/// Where the engine is and what it serves.
#[derive(Debug, Clone)]
pub struct RemoteConfig {
    /// Base URL including the API prefix, e.g. `http://gpu-1:8000/v1`; several engines
    /// separated by commas.
    pub base_url: String,
    /// The served base model's name.
    pub model: String,
    /// Sent as a bearer token when set.
    pub api_key: Option<String>,
    /// The served model's context length (the API does not report it).
    pub context_length: usize,
}

/// One engine and what it was last seen to serve.
struct Engine {
    url: String,
    state: Mutex<EngineState>,
}

#[derive(Default)]
struct EngineState {
    checked: Option<Instant>,
    up: bool,
    /// The model names it lists; `None` when it lists none (no `/models` route).
    serves: Option<HashSet<String>>,
}

/// The client.
pub struct RemoteGenerator {
    config: RemoteConfig,
    http: reqwest::Client,
    engines: Arc<Vec<Engine>>,
    next: Arc<AtomicUsize>,
}

impl RemoteGenerator {
    pub fn new(config: RemoteConfig) -> Result<Self> {
        let mut engines = Vec::new();
        for url in config.base_url.split(',').map(str::trim).filter(|u| !u.is_empty()) {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(Error::InvalidRequest(format!("remote engine URL {url:?} is not http(s)")));
            }
            engines.push(Engine { url: url.trim_end_matches('/').to_string(), state: Mutex::default() });
        }
        if engines.is_empty() {
            return Err(Error::InvalidRequest("no remote engine URL".into()));
        }
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            // A stream that stops mid-answer (an engine that hung) ends instead of waiting forever.
            .read_timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| Error::Remote(e.to_string()))?;
        Ok(RemoteGenerator { config, http, engines: Arc::new(engines), next: Arc::default() })
    }

    fn model_of(&self, request: &ChatRequest) -> Result<String> {
        Ok(match request.adapters.as_slice() {
            [] => self.config.model.clone(),
            [(id, weight)] if *weight == 1.0 => id.clone(),
            _ => {
                return Err(Error::InvalidRequest(
                    "a remote engine serves one adapter at weight 1 per request; combinations are local-only".into(),
                ));
            }
        })
    }

    fn body(request: &ChatRequest, model: &str) -> serde_json::Value {
        let p = &request.params;
        let mut body = serde_json::json!({
            "model": model,
            "messages": request.messages,
            "max_tokens": p.max_tokens,
            "temperature": p.sampling.temperature,
            "seed": p.sampling.seed,
            "stream": true,
            "stream_options": {"include_usage": true},
        });
        if let Some(top_p) = p.sampling.top_p {
            body["top_p"] = top_p.into();
        }
        if !p.stop.is_empty() {
            body["stop"] = p.stop.clone().into();
        }
        body
    }
}

/// One `data:` payload of the event stream.
#[derive(serde::Deserialize)]
struct Chunk {
    #[serde(default)]
    choices: Vec<Choice>,
    usage: Option<Usage>,
}

#[derive(serde::Deserialize)]
struct Choice {
    #[serde(default)]
    delta: Delta,
    finish_reason: Option<String>,
}

#[derive(serde::Deserialize, Default)]
struct Delta {
    content: Option<String>,
}

#[derive(serde::Deserialize)]
struct Usage {
    prompt_tokens: usize,
    completion_tokens: usize,
}

/// Why an attempt on one engine failed: before anything streamed (another engine may serve
/// the request: `retry`), or after.
struct Failed {
    error: Error,
    retry: bool,
}

impl From<Error> for Failed {
    fn from(error: Error) -> Self {
        Failed { error, retry: false }
    }
}

async fn run(
    http: reqwest::Client,
    url: String,
    api_key: Option<String>,
    body: serde_json::Value,
    tx: &mpsc::Sender<Result<StreamEvent>>,
) -> std::result::Result<Completion, Failed> {
    let mut call = http.post(&url).json(&body);
    if let Some(key) = api_key {
        call = call.bearer_auth(key);
    }
    let response =
        call.send().await.map_err(|e| Failed { error: Error::Remote(format!("{url}: {e}")), retry: true })?;
    let status = response.status();
    if !status.is_success() {
        let text = response.text().await.unwrap_or_default();
        let error = Error::Remote(format!("{url}: HTTP {status}: {}", text.chars().take(500).collect::<String>()));
        // A client error (a model it does not serve, a bad request) would fail anywhere.
        return Err(Failed { error, retry: status.is_server_error() });
    }
    let mut completion =
        Completion { text: String::new(), prompt_tokens: 0, completion_tokens: 0, finish_reason: FinishReason::Length };
    let mut pieces = 0;
    // A maintained SSE parser: events split anywhere across reads (a character's bytes
    // included), any of the three line endings the format allows.
    let mut events = response.bytes_stream().eventsource();
    while let Some(event) = events.next().await {
        let event = event.map_err(|e| Error::Remote(format!("{url}: {e}")))?;
        let data = event.data.trim();
        if data.is_empty() {
            continue;
        }
        if data == "[DONE]" {
            if completion.completion_tokens == 0 {
                completion.completion_tokens = pieces;
            }
            return Ok(completion);
        }
        let chunk: Chunk =
            serde_json::from_str(data).map_err(|e| Error::Remote(format!("{url}: bad event {data:?}: {e}")))?;
        if let Some(usage) = chunk.usage {
            completion.prompt_tokens = usage.prompt_tokens;
            completion.completion_tokens = usage.completion_tokens;
        }
        for choice in chunk.choices {
            if let Some(piece) = choice.delta.content.filter(|p| !p.is_empty()) {
                pieces += 1;
                completion.text.push_str(&piece);
                if tx.send(Ok(StreamEvent::Token(piece))).await.is_err() {
                    completion.finish_reason = FinishReason::Cancelled;
                    return Ok(completion);
                }
            }
            match choice.finish_reason.as_deref() {
                Some("stop") => completion.finish_reason = FinishReason::Stop,
                Some("length") => completion.finish_reason = FinishReason::Length,
                _ => {}
            }
        }
    }
    Err(Error::Remote(format!("{url}: the stream ended without [DONE]")).into())
}

/// Checks an engine again when its last check is older than [`REFRESH`]: up or down, and the
/// model names it lists.
async fn refresh(http: &reqwest::Client, api_key: Option<&str>, engine: &Engine) {
    let stale = engine.state.lock().map(|s| s.checked.is_none_or(|at| at.elapsed() >= REFRESH)).unwrap_or(true);
    if !stale {
        return;
    }
    let mut call = http.get(format!("{}/models", engine.url)).timeout(Duration::from_secs(5));
    if let Some(key) = api_key {
        call = call.bearer_auth(key);
    }
    let (up, serves) = match call.send().await {
        Ok(r) if r.status().is_success() => match r.json::<serde_json::Value>().await {
            Ok(list) => {
                let names: HashSet<String> = list["data"]
                    .as_array()
                    .map(|items| items.iter().filter_map(|m| m["id"].as_str().map(String::from)).collect())
                    .unwrap_or_default();
                (true, (!names.is_empty()).then_some(names))
            }
            Err(_) => (true, None),
        },
        // Up, without a model list to route by.
        Ok(r) if r.status().is_client_error() => (true, None),
        Ok(_) | Err(_) => (false, None),
    };
    if let Ok(mut state) = engine.state.lock() {
        *state = EngineState { checked: Some(Instant::now()), up, serves };
    }
}

/// Runs the request on an engine that serves `model`, moving on while attempts fail before
/// anything streamed.
async fn route(
    http: &reqwest::Client,
    key: Option<String>,
    engines: &[Engine],
    start: usize,
    (model, adapter): (&str, bool),
    body: serde_json::Value,
    tx: &mpsc::Sender<Result<StreamEvent>>,
) -> Result<Completion> {
    for engine in engines {
        refresh(http, key.as_deref(), engine).await;
    }
    let order = candidates(engines, adapter.then_some(model), start);
    if order.is_empty() {
        return Err(Error::Remote(format!("no remote engine serves {model:?}")));
    }
    let mut last = None;
    for i in order {
        let url = format!("{}/chat/completions", engines[i].url);
        match run(http.clone(), url, key.clone(), body.clone(), tx).await {
            Ok(done) => return Ok(done),
            Err(Failed { error, retry: true }) => {
                tracing::warn!(engine = %engines[i].url, %error, "remote engine failed before answering; trying the next");
                mark_down(&engines[i]);
                last = Some(error);
            }
            Err(Failed { error, .. }) => return Err(error),
        }
    }
    Err(last.unwrap_or_else(|| Error::Remote(format!("no remote engine answered for {model:?}"))))
}

fn mark_down(engine: &Engine) {
    if let Ok(mut state) = engine.state.lock() {
        state.up = false;
        state.checked = Some(Instant::now());
    }
}

/// The engines to try, up ones first, round-robin from `start`; for an adapter, none that
/// lists models without it.
fn candidates(engines: &[Engine], adapter: Option<&str>, start: usize) -> Vec<usize> {
    let n = engines.len();
    let mut up = Vec::new();
    let mut down = Vec::new();
    for i in (0..n).map(|k| (start + k) % n) {
        let Ok(state) = engines[i].state.lock() else { continue };
        if let Some(adapter) = adapter
            && state.serves.as_ref().is_some_and(|names| !names.contains(adapter))
        {
            continue;
        }
        if state.up { up.push(i) } else { down.push(i) }
    }
    // An engine marked down is still tried last: better a clear error than none.
    up.extend(down);
    up
}

impl Generator for RemoteGenerator {
    fn model_name(&self) -> &str {
        &self.config.model
    }

    fn context_length(&self) -> usize {
        self.config.context_length
    }

    /// An estimate (4 bytes a token): the remote tokenizer is not at hand, and the estimate
    /// only sizes the passage budget.
    fn count_tokens(&self, text: &str) -> usize {
        text.len().div_ceil(4)
    }

    fn stream(&self, request: ChatRequest) -> mpsc::Receiver<Result<StreamEvent>> {
        let (tx, rx) = mpsc::channel(64);
        let adapter = !request.adapters.is_empty();
        let body = self.model_of(&request).map(|model| {
            let body = Self::body(&request, &model);
            (model, body)
        });
        let (http, key) = (self.http.clone(), self.config.api_key.clone());
        let engines = self.engines.clone();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        tokio::spawn(async move {
            let result = match body {
                Ok((model, body)) => route(&http, key, &engines, start, (&model, adapter), body, &tx).await,
                Err(e) => Err(e),
            };
            let _ = tx.send(result.map(StreamEvent::Done)).await;
        });
        rx
    }
}
