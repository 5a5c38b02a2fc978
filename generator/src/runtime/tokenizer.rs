//! Tokenizers: a Hugging Face `tokenizer.json` when the model directory has one, otherwise
//! built from the vocabulary a GGUF file carries in its metadata.
//!
//! GGUF files written by llama.cpp's converter keep a byte-level BPE ("gpt2" model) as
//! `tokenizer.ggml.tokens` (the vocabulary, ids in order), `tokenizer.ggml.merges` ("a b"
//! pairs, by rank) and `tokenizer.ggml.token_type` (3 = control tokens such as `<|im_end|>`);
//! `tokenizer.ggml.pre` names the pre-tokenizer regex. We assemble the same pipeline with the
//! `tokenizers` crate; a test checks it against transformers' own conversion of the SmolLM2 file.

use candle_core::quantized::gguf_file;
use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::{BPE, Vocab};
use tokenizers::normalizers::unicode::NFC;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::{AddedToken, PreTokenizerWrapper, SplitDelimiterBehavior, Tokenizer};

use crate::error::{Error, Result};

/// Split patterns of the Qwen2 and Llama 3 vocabularies (then ByteLevel without its own regex).
const QWEN2_PATTERN: &str =
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const LLAMA3_PATTERN: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// Control-token type in `tokenizer.ggml.token_type`.
const CONTROL: i32 = 3;

fn strings(content: &gguf_file::Content, key: &str) -> Result<Vec<String>> {
    let values = content.metadata.get(key).ok_or_else(|| Error::Tokenizer(format!("GGUF metadata has no {key}")))?;
    values.to_vec()?.iter().map(|v| Ok(v.to_string()?.clone())).collect()
}

/// Builds the tokenizer a GGUF file describes (byte-level BPE vocabularies only).
pub fn tokenizer_from_gguf(content: &gguf_file::Content) -> Result<Tokenizer> {
    let model = content.metadata.get("tokenizer.ggml.model").and_then(|v| v.to_string().ok()).cloned();
    if model.as_deref() != Some("gpt2") {
        return Err(Error::Tokenizer(format!(
            "GGUF tokenizer model {model:?} is not a byte-level BPE; put the model's tokenizer.json beside it"
        )));
    }
    let tokens = strings(content, "tokenizer.ggml.tokens")?;
    let merges = strings(content, "tokenizer.ggml.merges")?;
    let types: Vec<i32> = match content.metadata.get("tokenizer.ggml.token_type") {
        Some(v) => v.to_vec()?.iter().map(|t| t.to_i32()).collect::<std::result::Result<_, _>>()?,
        None => vec![1; tokens.len()],
    };
    let vocab: Vocab = tokens.iter().enumerate().map(|(i, t)| (t.clone(), i as u32)).collect();
    let merges = merges
        .iter()
        .map(|m| {
            m.split_once(' ')
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .ok_or_else(|| Error::Tokenizer(format!("malformed merge {m:?}")))
        })
        .collect::<Result<Vec<_>>>()?;
    let bpe = BPE::builder()
        .vocab_and_merges(vocab, merges)
        .build()
        .map_err(|e| Error::Tokenizer(format!("building BPE: {e}")))?;
    let mut tokenizer = Tokenizer::new(bpe);
    let pre = content.metadata.get("tokenizer.ggml.pre").and_then(|v| v.to_string().ok()).cloned().unwrap_or_default();
    let split = |pattern: &str| -> Result<PreTokenizerWrapper> {
        let split = Split::new(SplitPattern::Regex(pattern.to_string()), SplitDelimiterBehavior::Isolated, false)
            .map_err(|e| Error::Tokenizer(format!("pre-tokenizer regex: {e}")))?;
        Ok(split.into())
    };
    let pre_tokenizer: PreTokenizerWrapper = match pre.as_str() {
        // SmolLM: every digit alone, then GPT-2's regex.
        "smollm" => Sequence::new(vec![Digits::new(true).into(), ByteLevel::new(false, true, true).into()]).into(),
        "gpt2" | "default" | "" => ByteLevel::new(false, true, true).into(),
        "qwen2" => Sequence::new(vec![split(QWEN2_PATTERN)?, ByteLevel::new(false, false, false).into()]).into(),
        "llama-bpe" | "llama3" => {
            Sequence::new(vec![split(LLAMA3_PATTERN)?, ByteLevel::new(false, false, false).into()]).into()
        }
        other => {
            return Err(Error::Tokenizer(format!(
                "GGUF pre-tokenizer {other:?} is not supported; put the model's tokenizer.json beside it"
            )));
        }
    };
    if pre == "qwen2" {
        // transformers' Qwen2 converter normalizes to NFC first: a decomposed "é" (e + U+0301)
        // becomes the tokens of the composed one, as the model was trained.
        tokenizer.with_normalizer(Some(NFC)).map_err(|e| Error::Tokenizer(format!("normalizer: {e}")))?;
    }
    tokenizer.with_pre_tokenizer(Some(pre_tokenizer));
    tokenizer.with_decoder(Some(ByteLevelDecoder::default()));
    let specials: Vec<AddedToken> = tokens
        .iter()
        .zip(&types)
        .filter(|(_, t)| **t == CONTROL)
        .map(|(token, _)| AddedToken::from(token.clone(), true))
        .collect();
    tokenizer.add_special_tokens(specials).map_err(|e| Error::Tokenizer(format!("special tokens: {e}")))?;
    Ok(tokenizer)
}
