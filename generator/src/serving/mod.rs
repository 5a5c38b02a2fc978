//! Serving generation: a model with its tokenizer and one request's decoding state, the
//! scheduler that batches requests step by step, the backend trait, and the local and remote
//! backends.

pub(crate) mod backend;
pub(crate) mod engine;
pub(crate) mod local;
pub(crate) mod remote;
pub(crate) mod scheduler;
