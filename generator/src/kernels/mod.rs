//! The CPU kernels: quantized dot products on GGUF blocks, low-rank LoRA terms, attention.

pub(crate) mod attend;
pub(crate) mod lowrank;
pub(crate) mod qdot;
