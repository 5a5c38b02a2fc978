//! What the API calls: the [`Generator`] trait, one chat request to a backend, and what a
//! backend streams. The local model ([`crate::LocalGenerator`]) and a remote engine
//! ([`crate::RemoteGenerator`]) implement it.

use tokio::sync::mpsc;

use crate::error::{Error, Result};
use crate::runtime::chat::ChatMessage;
use crate::serving::engine::{Completion, GenerationParams};

/// One chat request to a backend.
#[derive(Debug, Clone, Default)]
pub struct ChatRequest {
    pub messages: Vec<ChatMessage>,
    pub params: GenerationParams,
    /// Registered adapter ids with weights; empty for the base model, several for an ensemble.
    pub adapters: Vec<(String, f32)>,
}

/// What a backend streams: text pieces, then the completion.
#[derive(Debug, Clone, PartialEq)]
pub enum StreamEvent {
    Token(String),
    Done(Completion),
}

/// A generation backend: the local model, or a remote OpenAI-compatible engine.
pub trait Generator: Send + Sync {
    /// The model's name, as reported with each answer.
    fn model_name(&self) -> &str;
    /// Positions available to prompt and answer together.
    fn context_length(&self) -> usize;
    fn count_tokens(&self, text: &str) -> usize;
    /// Starts generating; events arrive on the receiver, an error ends the stream. Dropping
    /// the receiver cancels generation.
    fn stream(&self, request: ChatRequest) -> mpsc::Receiver<Result<StreamEvent>>;
    /// The log-likelihood of `reply` as the answer to each prompt, without generating
    /// (ablation-based attribution). Blocking. Backends that cannot score text (an
    /// OpenAI-compatible server) say [`Error::Unsupported`].
    fn reply_log_likelihoods(
        &self,
        prompts: &[Vec<ChatMessage>],
        reply: &str,
        adapters: &[(String, f32)],
    ) -> Result<Vec<f64>> {
        let _ = (prompts, reply, adapters);
        Err(Error::Unsupported(format!("{} cannot score text", self.model_name())))
    }
}
