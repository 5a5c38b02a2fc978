//! Training examples: a question, the answer to learn, and the Datanet passages it rests on,
//! laid out exactly as the generator asks its questions (the passages numbered, the
//! instruction, the question), so an adapter learns the task it will serve.

use tributary_generator::{LocalModel, numbered_texts};

use crate::error::{Error, Result};

/// A passage an example rests on: a chunk of a Datanet.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Passage {
    pub chunk_id: String,
    pub text: String,
}

/// One question/answer pair with its passages.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Example {
    pub question: String,
    pub answer: String,
    pub passages: Vec<Passage>,
}

impl Example {
    /// The example's identity in the training log: blake3 over its question, answer and
    /// chunk ids (the chunks' texts are identified by their ids, which are their hashes).
    pub fn hash(&self) -> String {
        let mut h = blake3::Hasher::new();
        h.update(b"tributary/training-example/v1");
        for part in [self.question.as_str(), self.answer.as_str()] {
            h.update(&(part.len() as u64).to_le_bytes());
            h.update(part.as_bytes());
        }
        for p in &self.passages {
            h.update(&(p.chunk_id.len() as u64).to_le_bytes());
            h.update(p.chunk_id.as_bytes());
        }
        h.finalize().to_hex().to_string()
    }

    /// What the model is taught to reply: the answer, citing every passage (`[1]`, `[1][2]`)
    /// as the generator's instruction asks, unless the answer already cites.
    pub fn reply(&self) -> String {
        let answer = self.answer.trim();
        let cites = answer.contains('[') && answer.contains(']');
        if cites || self.passages.is_empty() {
            return answer.to_string();
        }
        let markers: String = (1..=self.passages.len()).map(|n| format!("[{n}]")).collect();
        match answer.strip_suffix('.') {
            Some(body) => format!("{body} {markers}."),
            None => format!("{answer} {markers}"),
        }
    }
}

/// An example as token ids, with what the log records of it.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenizedExample {
    pub tokens: Vec<u32>,
    /// Where the reply starts: the tokens before it are the prompt.
    pub target_start: usize,
    pub hash: String,
    pub chunk_ids: Vec<String>,
}

/// Each example through `model`'s chat template and tokenizer; an example longer than
/// `max_tokens` (or the model's context) is refused with its index.
pub fn tokenize(model: &LocalModel, examples: &[Example], max_tokens: usize) -> Result<Vec<TokenizedExample>> {
    let limit = max_tokens.min(model.context_length());
    examples
        .iter()
        .enumerate()
        .map(|(index, example)| {
            if example.question.trim().is_empty() || example.answer.trim().is_empty() {
                return Err(Error::Example { index, reason: "question and answer must not be empty".into() });
            }
            let texts: Vec<(usize, &str)> =
                example.passages.iter().enumerate().map(|(i, p)| (i + 1, p.text.as_str())).collect();
            let messages = numbered_texts(&example.question, &texts);
            let (tokens, target_start) = model
                .training_tokens(&messages, &example.reply())
                .map_err(|e| Error::Example { index, reason: e.to_string() })?;
            if tokens.len() > limit {
                return Err(Error::Example {
                    index,
                    reason: format!("{} tokens, more than the {limit} a training row may hold", tokens.len()),
                });
            }
            Ok(TokenizedExample {
                tokens,
                target_start,
                hash: example.hash(),
                chunk_ids: example.passages.iter().map(|p| p.chunk_id.clone()).collect(),
            })
        })
        .collect()
}
