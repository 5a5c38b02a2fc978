//! A remote OpenAI-compatible engine (vLLM, LoRAX, llama.cpp's server, any
//! `/v1/chat/completions` with server-sent events) behind the same [`Generator`] trait, so a
//! cluster of GPU nodes can serve generation.
//!
//! LoRA adapters: vLLM and LoRAX serve each adapter under its own model name, so a request's
//! single adapter becomes the `model` field. Weighted combinations stay local-only.

use eventsource_stream::Eventsource;
use futures_util::StreamExt;
use tokio::sync::mpsc;

use crate::error::{Error, Result};
use crate::serving::backend::{ChatRequest, Generator, StreamEvent};
use crate::serving::engine::{Completion, FinishReason};

/// Where the engine is and what it serves.
#[derive(Debug, Clone)]
pub struct RemoteConfig {
    /// Base URL including the API prefix, e.g. `http://gpu-1:8000/v1`.
    pub base_url: String,
    /// The served base model's name.
    pub model: String,
    /// Sent as a bearer token when set.
    pub api_key: Option<String>,
    /// The served model's context length (the API does not report it).
    pub context_length: usize,
}

/// The client.
pub struct RemoteGenerator {
    config: RemoteConfig,
    http: reqwest::Client,
}

impl RemoteGenerator {
    pub fn new(config: RemoteConfig) -> Result<Self> {
        if !(config.base_url.starts_with("http://") || config.base_url.starts_with("https://")) {
            return Err(Error::InvalidRequest(format!("remote engine URL {:?} is not http(s)", config.base_url)));
        }
        let http = reqwest::Client::builder()
            .connect_timeout(std::time::Duration::from_secs(10))
            .build()
            .map_err(|e| Error::Remote(e.to_string()))?;
        Ok(RemoteGenerator { config, http })
    }

    fn body(&self, request: &ChatRequest) -> Result<serde_json::Value> {
        let model = match request.adapters.as_slice() {
            [] => self.config.model.clone(),
            [(id, weight)] if *weight == 1.0 => id.clone(),
            _ => {
                return Err(Error::InvalidRequest(
                    "a remote engine serves one adapter at weight 1 per request; combinations are local-only".into(),
                ));
            }
        };
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
        Ok(body)
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

async fn run(
    http: reqwest::Client,
    url: String,
    api_key: Option<String>,
    body: serde_json::Value,
    tx: &mpsc::Sender<Result<StreamEvent>>,
) -> Result<Completion> {
    let mut call = http.post(&url).json(&body);
    if let Some(key) = api_key {
        call = call.bearer_auth(key);
    }
    let response = call.send().await.map_err(|e| Error::Remote(format!("{url}: {e}")))?;
    let status = response.status();
    if !status.is_success() {
        let text = response.text().await.unwrap_or_default();
        return Err(Error::Remote(format!("{url}: HTTP {status}: {}", text.chars().take(500).collect::<String>())));
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
    Err(Error::Remote(format!("{url}: the stream ended without [DONE]")))
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
        let body = self.body(&request);
        let url = format!("{}/chat/completions", self.config.base_url.trim_end_matches('/'));
        let (http, key) = (self.http.clone(), self.config.api_key.clone());
        tokio::spawn(async move {
            let result = match body {
                Ok(body) => run(http, url, key, body, &tx).await,
                Err(e) => Err(e),
            };
            let _ = tx.send(result.map(StreamEvent::Done)).await;
        });
        rx
    }
}
