//! The model runtime: the KV cache, linear layers, the fused CPU step, the forward pass, the
//! tokenizer built from GGUF and chat templates.

pub(crate) mod chat;
pub(crate) mod decode;
pub(crate) mod kv;
pub(crate) mod linear;
pub(crate) mod model;
pub(crate) mod tokenizer;
