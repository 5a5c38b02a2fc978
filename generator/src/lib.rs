//! The generator: cited answers from a LoRA-adapted local model (candle; CUDA with the `cuda`
//! feature) or a remote OpenAI-compatible engine, streamed token by token.
//!
//! Not built yet: issue #4 builds it on top of `tributary-retriever`'s passages. The crate
//! exists so the workspace's shape, and ARCHITECTURE.md's map, are fixed from the start.
