//! Integration tests of the generator: one binary (it links once).

mod facts;
mod fused;
mod gguf;
mod layers;
mod lora;
mod remote;
mod scheduler;
mod tiny;

use std::path::PathBuf;

/// The real SmolLM2 GGUF, installed by scripts/setup.sh.
pub fn smollm2() -> PathBuf {
    let path = std::env::var_os("TRIBUTARY_LLM").map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models").join(tributary_generator::DEFAULT_MODEL_FILE)
    });
    assert!(path.exists(), "model missing at {}: run scripts/setup.sh", path.display());
    path
}

/// The finished answer to `request` from `generator`, its streamed tokens read and dropped.
pub async fn answered(
    generator: std::sync::Arc<dyn tributary_generator::Generator>,
    request: tributary_generator::AnswerRequest,
) -> tributary_generator::Answer {
    let mut events = tributary_generator::answer(generator, request);
    while let Some(event) = events.recv().await {
        if let tributary_generator::AnswerEvent::Done(answer) = event.unwrap() {
            return *answer;
        }
    }
    panic!("the answer stream ended without an answer")
}
